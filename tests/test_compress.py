"""Deep Compression toolchain: pruning, weight sharing, the sparse entry code, Huffman coding,
the .net writer (byte-identical round trip of the authors' file) and the packed .sqz model."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import AUTHORS_NET, ROOT, shared_file
from golden import compress as C
from golden import sparse
from golden.formats import load_model
from golden.formats.packed import fixed_layout_bytes, index_bits, packed_bytes, write_packed
from golden.model import ModelFormatError


def digits_model():
    return load_model(ROOT / "models/digits-squeezenet.npz")


def test_authors_file_round_trips_byte_for_byte(tmp_path, authors_model):
    out = tmp_path / "again.net"
    proc = subprocess.run([sys.executable, "-m", "host.cli", "convert",
                           str(shared_file(AUTHORS_NET)), "--to", "net", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == AUTHORS_NET.read_bytes()
    assert out.stat().st_size == 675_763


def test_sparse_entries_bridge_long_zero_runs():
    idx = np.zeros(60, np.uint8)
    idx[[3, 40, 41, 59]] = [7, 1, 2, 9]
    codes, gaps = sparse.encode(idx)
    # 3 zeros, then 36 zeros (two fillers of 16 + a gap of 4), then 0, then 17 (one filler + 1)
    assert codes.tolist() == [7, 0, 0, 1, 2, 0, 9]
    assert gaps.tolist() == [3, 15, 15, 4, 0, 15, 1]
    assert np.array_equal(sparse.decode(codes, gaps, 60), idx)
    with pytest.raises(ValueError, match="lands at position 60 of 60"):
        sparse.decode(codes, gaps + np.array([0, 0, 0, 0, 0, 0, 1], np.uint8), 60)


def test_huffman_round_trip_and_length_limit():
    rng = np.random.default_rng(0)
    # Geometric frequencies would give codes far longer than 16 bits without the limit.
    counts = (2.0 ** np.arange(40)[::-1]).astype(np.int64)
    lengths = C.huffman_lengths(counts)
    assert lengths.max() <= C.MAX_CODE_BITS and (lengths > 0).all()
    assert sum(2.0 ** -lengths.astype(float)) <= 1.0          # a prefix code (Kraft)
    symbols = rng.choice(40, 5000, p=counts / counts.sum())
    lengths = C.huffman_lengths(np.bincount(symbols, minlength=40))
    data, nbits = C.huffman_encode(symbols, lengths)
    assert nbits == int(lengths[symbols].astype(int).sum())
    assert np.array_equal(C.huffman_decode(data, nbits, len(symbols), lengths), symbols)


def test_prune_and_share_follow_their_targets():
    model = digits_model()
    pruned = C.prune(model, 0.3)
    for spec in pruned.network.convs():
        w = pruned.layers[spec.name].weights
        assert np.count_nonzero(w) <= round(0.3 * w.size)
        kept = w != 0
        original = model.layers[spec.name].weights
        # the largest magnitudes survive
        if kept.any() and (~kept).any():
            assert np.abs(original[kept]).min() >= np.abs(original[~kept]).max()
    for bits in (8, 6, 4):
        shared = C.share_weights(pruned, bits)
        for spec in shared.network.convs():
            lw = shared.layers[spec.name]
            assert len(lw.codebook) == 1 << bits and lw.codebook[0] == 0.0
            assert np.array_equal(lw.weights != 0, pruned.layers[spec.name].weights != 0)


@pytest.mark.parametrize("huffman", [False, True])
def test_packed_model_round_trip_and_sizes(tmp_path, huffman):
    model = C.share_weights(C.prune(digits_model(), 0.5), 6)
    path = tmp_path / "m.sqz"
    per_layer = write_packed(model, path, huffman)
    back = load_model(path)
    for name, lw in model.layers.items():
        assert np.array_equal(back.layers[name].indices, lw.indices)
        assert np.array_equal(back.layers[name].codebook, lw.codebook)
        assert np.array_equal(back.layers[name].bias, lw.bias)
    header = path.stat().st_size - sum(p["bytes"] for p in per_layer)
    assert 0 < header < 2000                        # magic, version, network description


def test_corrupt_packed_files_are_named(tmp_path):
    model = C.share_weights(digits_model(), 6)
    data, _ = packed_bytes(model, huffman=True)
    for name, blob, match in (("short.sqz", data[:len(data) // 2], "truncated"),
                              ("long.sqz", data + b"\0\0", "after the last layer"),
                              ("other.sqz", b"GIF89a" + data[6:], "not an .sqz")):
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ModelFormatError, match=match):
            load_model(path)


def test_sqz_compress_report(tmp_path):
    out, report = tmp_path / "d.sqz", tmp_path / "d.json"
    proc = subprocess.run([sys.executable, "-m", "host.cli", "compress",
                           str(ROOT / "models/digits-squeezenet.npz"), "--bits", "4",
                           "--density", "0.5", "--huffman", "--out", str(out),
                           "--json", str(report)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["bytes"] == out.stat().st_size and r["bits"] == 4 and r["huffman"] is True
    assert abs(r["density"] - 0.5) < 0.01
    assert {"name", "stored", "bytes"} <= set(r["layers"][0])
    assert load_model(out).network.name == load_model(ROOT / "models/digits-squeezenet.npz").network.name


def test_finetune_moves_only_the_shared_values():
    pytest.importorskip("torch", reason="the PyTorch extra (pip install -e '.[train]')")
    from golden.digits import load_digits_split
    from golden.finetune import finetune_codebooks
    teacher = digits_model()
    student = C.share_weights(C.prune(teacher, 0.5), 4)
    train_x = load_digits_split()[0]
    images = [x for x in train_x[:200]]
    losses = []
    tuned = finetune_codebooks(student, teacher, images, steps=40, batch=16, lr=3e-3,
                               progress=lambda step, loss: losses.append(loss))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    moved = 0
    for name, lw in tuned.layers.items():
        before = student.layers[name]
        assert lw.codebook[0] == 0.0 and len(lw.codebook) == 16
        assert np.array_equal(lw.indices, before.indices)        # mask and codes kept
        assert np.array_equal(lw.bias, before.bias)
        moved += int(np.count_nonzero(lw.codebook != before.codebook))
    assert moved > 0


def test_finetune_never_ends_worse_on_its_validation_images():
    pytest.importorskip("torch", reason="the PyTorch extra (pip install -e '.[train]')")
    import torch

    from golden.digits import load_digits_split
    from golden.finetune import centre_crops, finetune_codebooks
    from golden.torch_net import torch_module
    teacher = digits_model()
    student = C.share_weights(C.prune(teacher, 0.5), 4)
    train_x = load_digits_split()[0]
    images, held = list(train_x[:160]), list(train_x[160:200])

    def held_kl(model):
        x = torch.from_numpy(centre_crops(held, teacher.network.input))
        with torch.no_grad():
            t = torch.log_softmax(torch_module(teacher.network, weights=teacher.float_weights())(x), 1)
            s = torch.log_softmax(torch_module(model.network, weights=model.float_weights())(x), 1)
        return float(torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean"))

    for lr, improves in ((3e-3, True), (3.0, False)):     # a sane rate, and one that diverges
        report = {}
        tuned = finetune_codebooks(student, teacher, images, steps=30, batch=16, lr=lr,
                                   validation=held, check_every=10, report=report)
        assert [s for s, _ in report["history"]] == [0, 10, 20, 30]
        assert abs(report["start_kl"] - held_kl(student)) < 1e-4
        assert abs(held_kl(tuned) - report["best_kl"]) < 1e-4
        assert report["best_kl"] <= report["start_kl"]
        assert (report["best_kl"] < report["start_kl"]) == improves
        if not improves:           # every check was worse: the start's values come back
            assert report["best_step"] == 0
            for n, lw in tuned.layers.items():
                assert np.array_equal(lw.codebook[1:], student.layers[n].codebook[1:])


def test_straight_through_activations_round_forward_and_clip_backward():
    torch = pytest.importorskip("torch", reason="the PyTorch extra (pip install -e '.[train]')")
    from golden import numerics as nx
    from golden.finetune import _straight_through
    quantise = _straight_through(torch, {"a": 2.0})
    x = torch.tensor([-1.0, 0.1, 0.2037, 1.999, 5.0], requires_grad=True)
    y = quantise("a", x)
    step = 2.0 / nx.ACT_MAX
    want = np.minimum(np.round(np.clip(x.detach().numpy(), 0, 2.0) / step), nx.ACT_MAX) * step
    assert np.allclose(y.detach().numpy(), want, atol=1e-6)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert quantise("b", x) is x                      # an uncalibrated tensor passes


def test_finetune_through_the_integer_activations():
    torch = pytest.importorskip("torch", reason="the PyTorch extra (pip install -e '.[train]')")
    from golden.digits import calibration_set, load_digits_split
    from golden.finetune import _straight_through, centre_crops, finetune_codebooks
    from golden.quantize import calibrate
    from golden.torch_net import torch_module
    teacher = digits_model()
    student = C.share_weights(C.prune(teacher, 0.5), 4)
    train_x = load_digits_split()[0]
    images, held = list(train_x[:160]), list(train_x[160:200])
    clips = calibrate(student, calibration_set(10))
    plain, through = {}, {}
    finetune_codebooks(student, teacher, images, steps=20, lr=3e-3, validation=held,
                       check_every=10, report=plain)
    tuned = finetune_codebooks(student, teacher, images, steps=20, lr=3e-3, validation=held,
                               check_every=10, report=through, clips=clips)
    # the student is measured through its 8-bit activations: another start, never worse
    x = torch.from_numpy(centre_crops(held, teacher.network.input))
    with torch.no_grad():
        t = torch.log_softmax(torch_module(teacher.network, weights=teacher.float_weights())(x), 1)
        q = torch_module(student.network, weights=student.float_weights(),
                         activation=_straight_through(torch, clips))(x)
        start = float(torch.nn.functional.kl_div(torch.log_softmax(q, 1), t, log_target=True,
                                                 reduction="batchmean"))
    assert through["start_kl"] == pytest.approx(start, abs=1e-5)
    assert through["start_kl"] != plain["start_kl"]
    assert through["best_kl"] <= through["start_kl"]
    for n, lw in tuned.layers.items():
        assert np.array_equal(lw.indices, student.layers[n].indices)


def test_sqz_compress_fine_tunes_through_the_integer_activations(tmp_path):
    pytest.importorskip("torch", reason="the PyTorch extra (pip install -e '.[train]')")
    from PIL import Image

    from golden.digits import load_digits_split
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, x in enumerate(load_digits_split()[0][:10]):
        Image.fromarray(x[0]).save(photos / f"d{i}.png")
    out, report = tmp_path / "d.sqz", tmp_path / "d.json"
    proc = subprocess.run([sys.executable, "-m", "host.cli", "compress",
                           str(ROOT / "models/digits-squeezenet.npz"), "--bits", "4",
                           "--density", "0.5", "--finetune", str(photos), "--finetune-steps", "3",
                           "--straight-through", "--calib-count", "4", "--out", str(out),
                           "--json", str(report)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ft = json.loads(report.read_text())["finetune"]
    assert ft["straight_through"] is True and ft["validation_images"] == 2
    assert ft["best_kl"] <= ft["start_kl"]


def test_share_weights_reclusters_a_trained_codebook_as_the_quantiser_does():
    from golden.model import LayerWeights, Model
    from golden.quantize import reduce_codebook
    base = digits_model()
    rng = np.random.default_rng(2)
    layers = {}
    for spec in base.network.convs():        # a trained-looking 256-entry codebook per layer
        cb = np.concatenate([[0.0], np.sort(rng.normal(0, 0.2, 255))]).astype(np.float32)
        idx = rng.integers(0, 256, spec.weight_shape).astype(np.uint8)
        layers[spec.name] = LayerWeights(cb, idx, base.layers[spec.name].bias, shared=True)
    trained = Model(base.network, layers, "trained").check()
    eight = C.share_weights(trained, 8)            # it fits: kept as it is
    for n, lw in trained.layers.items():
        assert np.array_equal(eight.layers[n].codebook, lw.codebook)
        assert np.array_equal(eight.layers[n].indices, lw.indices)
    six = C.share_weights(trained, 6)
    for n, lw in trained.layers.items():
        want = reduce_codebook(lw, 6)
        assert np.array_equal(six.layers[n].codebook, want.codebook)
        assert np.array_equal(six.layers[n].indices, want.indices)


def test_fixed_layout_what_if_matches_the_real_file_at_4_bits():
    model = C.share_weights(C.prune(digits_model(), 0.4), 6)
    data, _ = packed_bytes(model)
    assert fixed_layout_bytes(model, 4) == len(data)
    bits = index_bits(model)

    def entries(flat, gap_bits):        # a plain count: one per non-zero, one per filler
        n, run = 0, 0
        for v in flat:
            if v:
                n, run = n + 1 + run // (1 << gap_bits), 0
            else:
                run += 1
        return n

    for g in (1, 2, 3, 5, 8):
        extra = 0
        for lw in model.layers.values():
            n, n4 = entries(lw.indices.ravel(), g), entries(lw.indices.ravel(), 4)
            extra += (-(-n * bits // 8) - -(-n4 * bits // 8)) + (-(-n * g // 8) - -(-n4 * 4 // 8))
        assert fixed_layout_bytes(model, g) == len(data) + extra, g
