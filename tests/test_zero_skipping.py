"""The zero-skipping weight format (hw.layout.skip_words / skip_tensor) and the performance
report built on it (tools/perf_report.py)."""

import numpy as np
import pytest

from hw.config import AcceleratorConfig, board_config
from hw.layout import SKIP_ROWS, FieldRangeError, groups, skip_entry_layout, skip_tensor, skip_words

from hw_harness import check_layer


def _round_trip(idx, cfg):
    oc, ic, kh, kw = idx.shape
    w = skip_words(idx, cfg)
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


@pytest.mark.parametrize("value_bits", [8, 12, 16])
def test_random_sparse_layers_round_trip_with_the_fewest_words(value_bits):
    cfg = AcceleratorConfig(value_bits=value_bits)
    rng = np.random.default_rng(value_bits)
    top = 1 << (value_bits - 1)
    for oc, ic, kh, kw, density in [(64, 16, 3, 3, 0.33), (200, 36, 1, 1, 0.2),
                                    (96, 3, 7, 7, 1.0), (48, 10, 3, 1, 0.5)]:
        idx = rng.choice(np.r_[-top:0, 1:top], (oc, ic, kh, kw)) * (
            rng.random((oc, ic, kh, kw)) < density)
        w = _round_trip(idx, cfg)
        counts = _lane_counts(idx, cfg)
        own = np.maximum(1, -(-counts.max(1) // cfg.pc))   # each step in its own words
        assert w.last.sum() == len(own) and (w.step_words >= 1).all()
        # never more than each step alone; never fewer than the fullest lane's weights need
        assert max(len(own), -(-counts.sum(0).max() // cfg.pc)) <= w.words <= own.sum()
        assert (w.act[w.value != 0] < cfg.pc).all() == (w.words == own.sum() and
                                                       not (w.act >= cfg.pc).any())


def test_leaving_weights_to_the_next_step_packs_conv1s_three_channels_fully():
    """conv1 of SqueezeNet: 3 channels on PC = 4 lanes, 6 rows: 18 weights a lane a step,
    4.5 words' worth. Each step in its own words needs 5; two steps sharing, 9 for two: the
    pixel's 49 steps take the 221 words its weights fill, every multiplier busy."""
    cfg = board_config()
    rng = np.random.default_rng(4)
    idx = rng.integers(1, 2048, (96, 3, 7, 7))
    w = _round_trip(idx, cfg)
    assert w.words == -(-96 * 3 * 49 // cfg.lanes) == 221
    assert (w.act >= cfg.pc).any()


def test_empty_steps_take_one_word_of_padding():
    cfg = board_config()
    idx = np.zeros((32, 8, 3, 3), np.int64)
    idx[5, 6, 1, 2] = 9              # one weight in one step; every other step is empty
    w = _round_trip(idx, cfg)
    assert w.words == 2 * 9 and (w.step_words == 1).all()
    assert np.count_nonzero(w.value) == 1
    word, mult = map(int, np.argwhere(w.value)[0])
    # step (cg 1, i 1, j 2) is step 9 + 5; output 5 is row 0, lane 5; input 6 is lane 2
    assert word == 14 and mult == 5 * cfg.pc + 0
    assert w.act[word, mult] == 2 and w.row[word, mult] == 0


def test_all_non_zeros_in_one_lane_set_the_step_length():
    cfg = board_config()
    idx = np.zeros((SKIP_ROWS * cfg.po, cfg.pc, 1, 1), np.int64)
    idx[3::cfg.po, :, 0, 0] = 7      # lane 3 of every row, every input: 64 non-zeros
    w = _round_trip(idx, cfg)
    assert w.words == SKIP_ROWS * cfg.pc // cfg.pc
    assert (w.value[:, 3 * cfg.pc:4 * cfg.pc] == 7).all()
    assert not np.delete(w.value, np.s_[3 * cfg.pc:4 * cfg.pc], axis=1).any()


def test_a_partial_last_output_group_pads_its_lanes():
    cfg = board_config()
    rng = np.random.default_rng(3)
    idx = rng.integers(1, 256, (1000 - 15 * 64, 64, 1, 1)) * rng.choice([-1, 1], (40, 64, 1, 1))
    w = _round_trip(idx, cfg)
    # 40 outputs: rows 0-1 full, row 2 lanes 0-7; a dense step packs PC of them a word
    assert (w.step_words == 3).all()


def test_a_chunk_larger_than_the_rows_is_refused_by_name():
    cfg = board_config()
    with pytest.raises(FieldRangeError, match="at most 16 output groups"):
        skip_words(np.ones((SKIP_ROWS * cfg.po + 1, 4, 1, 1), np.int64), cfg, "conv_final")
    with pytest.raises(FieldRangeError, match="12-bit values"):
        skip_words(np.full((16, 4, 1, 1), -2049), cfg)


def test_the_entry_layout_names_every_field_the_format_uses():
    cfg = board_config()
    layout = skip_entry_layout(cfg)
    assert layout.size == cfg.value_bits + (2 * cfg.pc - 1).bit_length() + (SKIP_ROWS - 1).bit_length()


def test_units_round_trip_signed_values_and_the_last_bits():
    from hw.layout import skip_units, skip_word_values, skip_words_of_units
    cfg = board_config()
    rng = np.random.default_rng(9)
    w = skip_words(rng.integers(-2048, 2048, (40, 12, 3, 3)) * (rng.random((40, 12, 3, 3)) < .3),
                   cfg)
    back = skip_words_of_units(skip_units(w, cfg), cfg)
    for f in ("value", "act", "row", "last", "step_words"):
        assert (getattr(back, f) == getattr(w, f)).all(), f
    assert (w.value < 0).any()
    e = skip_entry_layout(cfg).size
    v = skip_word_values(w, cfg)
    assert all((v[k] >> (cfg.lanes * e)) & 1 == w.last[k] for k in range(w.words))


def test_perf_report_on_a_small_network():
    from dataclasses import replace

    from golden.digits import calibration_set
    from golden.formats import load_model
    from golden.quantize import quantize
    from tools.perf_report import analyse, markdown, pruned_to
    cfg = board_config()
    skip = replace(cfg, zero_skipping=True)
    q = quantize(pruned_to(load_model("models/digits-squeezenet.npz"), 0.3),
                 calibration_set()[:2], 8)
    d, k = analyse("digits", q, cfg), analyse("digits", q, skip)
    # the program's END and its last waits are beyond the nodes' ops
    assert d["cycles"] > sum(n["cycles"] for n in d["nodes"])
    nodes = {n["name"]: (nd, n) for nd, n in zip(d["nodes"], k["nodes"])}
    # skipping pays where a pixel's words outlast its drain (conv1: nine steps of two rows)
    nd, n = nodes["conv1"]
    assert n["compute"] < nd["compute"] / 1.5
    assert all(0 < n["density"] <= 0.31 for _, n in nodes.values() if n["density"] is not None)
    assert all(n["bound"] in ("compute", "memory") for _, n in nodes.values())
    assert all(n["macs_per_cycle"] == n["macs"] / n["cycles"] for _, n in nodes.values())
    text = markdown([(d, k)], cfg, {})
    assert "| conv1 |" in text and "skipping" in text
    # the dense device of 128 MAC units: conv1 (3 channels on 4 input lanes at 32 x 4 as at
    # 16 x 4) computes in about half the cycles
    from tools.perf_report import wide_markdown
    wide_cfg = board_config(128)
    w = analyse("digits", q, wide_cfg)
    wn = {n["name"]: n for n in w["nodes"]}
    assert wn["conv1"]["compute"] < 0.6 * nodes["conv1"][0]["compute"]
    text = wide_markdown([w], wide_cfg, {"dense": 50.0})
    assert "32 output lanes x 4 input lanes" in text and "| conv1 |" in text
    assert f"{w['cycles'] / 50.0 / 1e3:.1f}" in text



def test_perf_report_takes_fmax_only_from_make_synth_devices_routed_files(tmp_path, monkeypatch):
    import json

    import tools.perf_report as perf
    synth = tmp_path / "build" / "synth"
    synth.mkdir(parents=True)

    def write(name, mhz, units=64, skipping=False):
        (synth / name).write_text(json.dumps({
            "unit": "device", "mac_units": units, "fmax_mhz": mhz,
            "config": {"zero_skipping": skipping}}))
    monkeypatch.setattr(perf, "ROOT", tmp_path)
    assert perf._fmax(64) == {}
    write("device.json", 61.0)
    write("device-seed9.json", 99.0)           # a copy kept by hand: sorts after, never read
    write("device-skip-64.json", None, skipping=True)    # not routed: no fmax
    write("device-128.json", 55.5, units=128)
    assert perf._fmax(64) == {"dense": 61.0}
    assert perf._fmax(128) == {"dense": 55.5}
    write("device-skip-64.json", 40.25, skipping=True)
    assert perf._fmax(64) == {"dense": 61.0, "skip": 40.25}

# ---- the engine's zero-skipping datapath on the RTL (Amaranth's simulator) ----------------------

def _skip_cfg(**kw):
    return AcceleratorConfig(mac_units=64, fm_depth=2048, weight_depth=512, bias_depth=16,
                             zero_skipping=True, **kw)


def _sparse_conv(rng, cin, cout, k, stride, pad, cfg, keep, index_bits=8):
    """A random convolution whose weights are zero (a codebook entry of value 0) outside
    ``keep`` (a boolean tensor, or a density)."""
    from sim.cases import random_conv
    qc = random_conv(rng, cin, cout, k, stride, pad, cfg.value_bits, index_bits)
    if not isinstance(keep, np.ndarray):
        keep = rng.random(qc.indices.shape) < keep
    values = np.flatnonzero(qc.codebook != 0)
    qc.indices[...] = np.where(keep, rng.choice(values, qc.indices.shape),
                               np.flatnonzero(qc.codebook == 0)[0])
    return qc


@pytest.mark.parametrize("index_bits", [4, 6, 8])
def test_the_skipping_engine_matches_golden_at_each_index_width(index_bits):
    """The layer's codebook of 2**index_bits values; the words hold the values it gives."""
    cfg = _skip_cfg()
    rng = np.random.default_rng(20 + index_bits)
    qc = _sparse_conv(rng, 8, 32, 3, 1, 1, cfg, 0.33, index_bits)
    x = rng.integers(0, 256, (8, 6, 6)).astype(np.uint8)
    load = check_layer(cfg, qc, x, f"{index_bits}-bit indices")
    dense_words = 2 * 2 * 9
    assert load.descriptor.pixel_words < dense_words


def test_the_skipping_engine_runs_dense_strided_layers_and_conv1s_three_channels():
    cfg = _skip_cfg()
    rng = np.random.default_rng(5)
    qc = _sparse_conv(rng, 3, 48, 3, 2, 0, cfg, 1.0)
    x = rng.integers(0, 256, (3, 9, 9)).astype(np.uint8)
    load = check_layer(cfg, qc, x, "dense 3-channel 3x3/2")
    # 3 rows x 3 inputs of each lane's step, 9 weights on PC = 4 multipliers: steps sharing
    # their words, the pixel's 1,296 weights in ceil(1296 / 64) words, every multiplier busy
    # but the last word's (the dense format: 27 words)
    assert load.descriptor.pixel_words == -(-48 * 3 * 9 // cfg.lanes) == 21


def test_empty_steps_and_all_non_zeros_in_one_lane_on_the_rtl():
    cfg = _skip_cfg()
    rng = np.random.default_rng(6)
    keep = np.zeros((64, 8, 3, 3), bool)
    keep[7::16, :, 1, 1] = True          # lane 7 of every row, the centre tap: 4 rows x 8 inputs
    keep[0, 0, 0, 0] = True              # one more weight; every other step is empty
    qc = _sparse_conv(rng, 8, 64, 3, 1, 1, cfg, keep)
    x = rng.integers(0, 256, (8, 5, 5)).astype(np.uint8)
    load = check_layer(cfg, qc, x, "one full lane, empty steps")
    # centre tap: 16 non-zeros of lane 7 per channel group (4 words alone); 16 other steps of
    # one word each, the step after a centre tap taking some of its weights
    assert 18 <= load.descriptor.pixel_words < 2 * 4 + 16


def test_a_partial_last_output_group_and_the_full_chunk_on_the_rtl():
    cfg = _skip_cfg()
    rng = np.random.default_rng(7)
    qc = _sparse_conv(rng, 12, 40, 1, 1, 0, cfg, 0.2)     # 2.5 output groups
    x = rng.integers(0, 256, (12, 4, 5)).astype(np.uint8)
    check_layer(cfg, qc, x, "40 outputs")
    qc = _sparse_conv(rng, 16, SKIP_ROWS * 16, 1, 1, 0, cfg, 0.2)   # 16 rows: conv_final's chunk
    x = rng.integers(0, 256, (16, 3, 3)).astype(np.uint8)
    check_layer(cfg, qc, x, "a full chunk")


# ---- the device with zero-skipping weights: the golden device and the RTL board -----------------

def _skip_board_cfg():
    from dataclasses import replace
    return replace(board_config(), zero_skipping=True)


@pytest.fixture(scope="module")
def sparse_digits():
    from golden.digits import calibration_set, load_digits_split
    from golden.formats import load_model
    from golden.quantize import quantize
    from host.compiler import compile_network
    from tools.perf_report import pruned_to
    q = quantize(pruned_to(load_model("models/digits-squeezenet.npz"), 0.35),
                 calibration_set()[:4], 8)
    return q, compile_network(q, _skip_board_cfg()), load_digits_split()[2][:3]


def _run(driver, q, prog, images):
    from golden.engine import Golden
    golden = Golden(q)
    driver.load_model(prog)
    for x in images:
        driver.load_image(prog, x)
        cycles = driver.run(prog)
        got, want = driver.read_logits(prog), golden(x)
        assert np.array_equal(got, want), f"logits {got} against golden {want}"
    return cycles


def test_the_golden_device_runs_zero_skipping_programs_with_the_cycle_model(sparse_digits):
    from host.driver import Driver
    from host.golden_device import GoldenDevice
    from host.transport import GoldenTransport
    q, prog, images = sparse_digits
    cfg = prog.cfg
    convs = [op for op in prog.ops if op.kind.name == "CONV"]
    assert all(op.desc.pixel_words for op in convs)
    # the weights' SDRAM units are the skipping words' (hw.layout.skip_unit_bytes)
    driver = Driver(GoldenTransport(GoldenDevice(cfg)), reply_timeout=0.01)
    cycles = _run(driver, q, prog, images)
    per, waits, total = prog.timeline()
    assert cycles == total
    assert driver.read_counters(prog) == per and driver.read_waits(prog) == waits


def test_the_on_chip_compiler_refuses_zero_skipping_by_name(sparse_digits):
    from dataclasses import replace
    from host.compiler import compile_network
    from host.program import UnsupportedNetworkError
    from hw.config import chip_config
    q, _, _ = sparse_digits
    with pytest.raises(UnsupportedNetworkError, match="maps_in_sdram"):
        compile_network(q, replace(chip_config(), zero_skipping=True))


def test_the_simulated_board_with_zero_skipping_is_bit_exact_with_the_cycle_model(sparse_digits):
    from host.driver import Driver
    from host.transport import SerialTransport
    from sim.board.build import BoardProcess
    q, prog, images = sparse_digits
    with BoardProcess(prog.cfg, quiet=True) as b:
        driver = Driver(SerialTransport(b.url), reply_timeout=1.0)
        cycles = _run(driver, q, prog, images[:2])
        counters, waits = driver.read_counters(prog), driver.read_waits(prog)
        wrong = {op.name: (counters[op.name] - waits[op.name], prog.busy_cycles(op))
                 for op in prog.ops if counters[op.name] - waits[op.name] != prog.busy_cycles(op)}
        assert not wrong
        lo, hi = prog.cycle_bounds()["total"]
        assert lo <= cycles <= hi
        # the link's sparse weight entries are the dense format's: refused by name, not lost
        from host.driver import DeviceError
        from hw import protocol as proto
        from hw.protocol import Command, Target
        with pytest.raises(DeviceError, match="BAD_ARGUMENT"):
            driver.request(Command.WRITE, proto.args(Target.WEIGHTS, 0, 1, 8) + bytes(2))
        driver.transport.close()


def test_the_skipping_engine_at_128_mac_units():
    """PC = 8: a 16-way activation window (the step's 8 bytes and the step before's)."""
    cfg = AcceleratorConfig(mac_units=128, fm_depth=2048, weight_depth=512, bias_depth=16,
                            zero_skipping=True)
    rng = np.random.default_rng(11)
    qc = _sparse_conv(rng, 20, 40, 3, 1, 1, cfg, 0.3)
    x = rng.integers(0, 256, (20, 5, 6)).astype(np.uint8)
    load = check_layer(cfg, qc, x, "128 MACs")
    assert load.descriptor.pixel_words < 3 * 3 * 9      # dense: 3 rows x 3 groups x 9 taps


def test_the_authors_squeezenet_with_zero_skipping_on_the_golden_device():
    """The authors' Deep Compression SqueezeNet v1.0 compiled for the skipping device: every
    logit equal to golden, every counter and wait the cycle model's, and fewer cycles than the
    dense device's program (the file is 33% non-zero by weights)."""
    from conftest import SHARED
    from golden.engine import Golden
    from golden.formats import load_model
    from golden.preprocess import load_image
    from golden.quantize import quantize
    from host.compiler import compile_network
    from host.driver import Driver
    from host.golden_device import GoldenDevice
    from host.transport import GoldenTransport
    model = load_model(SHARED / "models" / "squeezenet-v1.0-deep-compression" /
                       "compressed_SqueezeNet.net")
    photos = sorted((SHARED / "imagenet-sample").glob("*.JPEG"))
    q = quantize(model, [load_image(p, model.network.input) for p in photos[::100][:3]], 8)
    skip, dense = _skip_board_cfg(), board_config()
    prog = compile_network(q, skip)
    driver = Driver(GoldenTransport(GoldenDevice(skip)), reply_timeout=0.01)
    driver.load_model(prog)
    x = load_image(photos[7], model.network.input)
    driver.load_image(prog, x)
    cycles = driver.run(prog)
    np.testing.assert_array_equal(driver.read_logits(prog), Golden(q)(x))
    per, waits, total = prog.timeline()
    assert (driver.read_counters(prog), driver.read_waits(prog), cycles) == (per, waits, total)
    assert total < compile_network(q, dense).timeline()[2] / 1.4


def test_a_skipping_program_on_a_dense_device_is_refused_by_name(sparse_digits):
    """The identity carries the weight format: a board of the other engine is named, not fed
    words it would read as something else."""
    from host.driver import Driver, LinkError
    from host.golden_device import GoldenDevice
    from host.transport import GoldenTransport
    _, prog, _ = sparse_digits
    driver = Driver(GoldenTransport(GoldenDevice(board_config())), reply_timeout=0.01)
    with pytest.raises(LinkError, match="zero_skipping 0 .expected 1."):
        driver.load_model(prog)
