"""The zero-skipping weight format (hw.layout.skip_words / skip_tensor) and the performance
report built on it (tools/perf_report.py)."""

import numpy as np
import pytest

from hw.config import AcceleratorConfig, board_config
from hw.layout import SKIP_ROWS, FieldRangeError, groups, skip_entry_layout, skip_tensor, skip_words


def _round_trip(idx, cfg):
    oc, ic, kh, kw = idx.shape
    w = skip_words(idx, idx != 0, cfg)
    back = skip_tensor(w, groups(oc, cfg.po), groups(ic, cfg.pc), kh, cfg, kw)
    assert (back[:oc, :ic] == idx).all()
    assert not back[oc:].any() and not back[:, ic:].any()
    return w


def _lane_counts(idx, cfg):
    """Non-zeros of each (step, output lane) over every row and input lane, counted directly."""
    oc, ic, kh, kw = idx.shape
    po, pc = cfg.po, cfg.pc
    rows, cg = groups(oc, po), groups(ic, pc)
    full = np.zeros((rows * po, cg * pc, kh, kw), bool)
    full[:oc, :ic] = idx != 0
    counts = np.zeros((cg, kh, kw, po), int)
    for o in range(rows * po):
        for c in range(cg * pc):
            for i in range(kh):
                for j in range(kw):
                    counts[c // pc, i, j, o % po] += full[o, c, i, j]
    return counts.reshape(-1, po)


@pytest.mark.parametrize("index_bits", [4, 6, 8])
def test_random_sparse_layers_round_trip_with_the_fewest_words(index_bits):
    cfg = AcceleratorConfig(index_bits=index_bits)
    rng = np.random.default_rng(index_bits)
    for oc, ic, kh, kw, density in [(64, 16, 3, 3, 0.33), (200, 36, 1, 1, 0.2),
                                    (96, 3, 7, 7, 1.0), (48, 10, 3, 1, 0.5)]:
        idx = rng.integers(1, 1 << index_bits, (oc, ic, kh, kw)) * (
            rng.random((oc, ic, kh, kw)) < density)
        w = _round_trip(idx, cfg)
        want = np.maximum(1, -(-_lane_counts(idx, cfg).max(1) // cfg.pc))
        assert (w.step_words == want).all()
        assert w.words == want.sum() and w.last.sum() == len(want)


def test_empty_steps_take_one_word_of_padding():
    cfg = board_config()
    idx = np.zeros((32, 8, 3, 3), np.int64)
    idx[5, 6, 1, 2] = 9              # one weight in one step; every other step is empty
    w = _round_trip(idx, cfg)
    assert w.words == 2 * 9 and (w.step_words == 1).all()
    assert np.count_nonzero(w.index) == 1
    word, mult = map(int, np.argwhere(w.index)[0])
    # step (cg 1, i 1, j 2) is step 9 + 5; output 5 is row 0, lane 5; input 6 is lane 2
    assert word == 14 and mult == 5 * cfg.pc + 0
    assert w.act[word, mult] == 2 and w.row[word, mult] == 0


def test_all_non_zeros_in_one_lane_set_the_step_length():
    cfg = board_config()
    idx = np.zeros((SKIP_ROWS * cfg.po, cfg.pc, 1, 1), np.int64)
    idx[3::cfg.po, :, 0, 0] = 7      # lane 3 of every row, every input: 64 non-zeros
    w = _round_trip(idx, cfg)
    assert w.words == SKIP_ROWS * cfg.pc // cfg.pc
    assert (w.index[:, 3 * cfg.pc:4 * cfg.pc] == 7).all()
    assert not np.delete(w.index, np.s_[3 * cfg.pc:4 * cfg.pc], axis=1).any()


def test_a_partial_last_output_group_pads_its_lanes():
    cfg = board_config()
    rng = np.random.default_rng(3)
    idx = rng.integers(1, 256, (1000 - 15 * 64, 64, 1, 1))     # conv_final's last chunk
    w = _round_trip(idx, cfg)
    # 40 outputs: rows 0-1 full, row 2 lanes 0-7; a dense step packs PC of them a word
    assert (w.step_words == 3).all()


def test_a_chunk_larger_than_the_rows_is_refused_by_name():
    cfg = board_config()
    with pytest.raises(FieldRangeError, match="at most 16 output groups"):
        skip_words(np.ones((SKIP_ROWS * cfg.po + 1, 4, 1, 1), np.int64),
                   np.ones((SKIP_ROWS * cfg.po + 1, 4, 1, 1), bool), cfg, "conv_final")
    with pytest.raises(FieldRangeError, match="index bits"):
        skip_words(np.full((16, 4, 1, 1), 300), np.ones((16, 4, 1, 1), bool), cfg)


def test_the_entry_layout_names_every_field_the_format_uses():
    cfg = board_config()
    layout = skip_entry_layout(cfg)
    assert layout.size == cfg.index_bits + (cfg.pc - 1).bit_length() + (SKIP_ROWS - 1).bit_length()


def test_perf_report_on_a_small_network(tmp_path):
    from golden.digits import calibration_set
    from golden.formats import load_model
    from golden.quantize import quantize
    from tools.perf_report import analyse, markdown, pruned_to
    cfg = board_config()
    model = load_model("models/digits-squeezenet.npz")
    dense = analyse("digits", quantize(model, calibration_set()[:2], 8), cfg)
    sparse = analyse("digits, 30%", quantize(pruned_to(model, 0.3), calibration_set()[:2], 8), cfg)
    # the program's END and its last waits are beyond the nodes' ops
    assert dense["cycles"] > sum(n["cycles"] for n in dense["nodes"])
    convs = {n["name"]: n for n in sparse["nodes"] if "skip_engine_ratio" in n}
    # skipping never slows a layer; it pays where a pixel's words outlast its drain (conv1:
    # nine steps of two rows), not in fire2's one-row 1x1s, whose drain sets the pixel time
    assert all(n["skip_engine_ratio"] >= 1 for n in convs.values())
    assert convs["conv1"]["skip_engine_ratio"] > 1.5
    assert convs["fire2"]["skip_engine_ratio"] == 1
    assert all(n["skip_engine_ratio"] == 1
               for n in dense["nodes"] if "skip_engine_ratio" in n and n["density"] == 1)
    assert all(0 < n["density"] <= 0.31 for n in convs.values())
    assert all(n["bound"] in ("compute", "memory") for n in dense["nodes"])
    assert sparse["skip_cycles_bound"] <= dense["skip_cycles_bound"]
    c1 = convs["conv1"]
    assert c1["skip_compute"] < c1["compute"]
    assert c1["skip_cycles_bound"] == max(c1["skip_compute"], round(c1["sdram_bytes"] / 2))
    text = markdown([dense, sparse], cfg)
    assert "| conv1 |" in text and "projected" in text
