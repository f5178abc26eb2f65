import json

import numpy as np
import pytest

from golden.formats import load_model, save_model
from golden.formats.deep_compression import read_deep_compression
from golden.model import Model, ModelFormatError, uniform_codebook
from golden.network import digits_net

from conftest import AUTHORS_NET, shared_file

STORED = [13902, 1528, 1020, 3073, 2038, 1023, 3081, 4085, 4071, 12288, 8160, 4067, 12343,
          12161, 4602, 27558, 9205, 9132, 27564, 24388, 8190, 44919, 16371, 16303, 45038, 105973]


def test_authors_file_decodes_completely(authors_model):
    m = authors_model
    assert m.parameter_count == 1_248_424
    assert [lw.stored for lw in m.layers.values()] == STORED
    assert sum(lw.indices.size for lw in m.layers.values()) == 1_244_448
    dens = {n: lw.density for n, lw in m.layers.items()}
    # Paper Table 1: 33% in the expand 3x3 layers, 50% in a few, 20% in conv_final.
    for n in ("fire2/expand3x3", "fire5/expand3x3", "fire7/expand3x3"):
        assert 0.32 < dens[n] < 0.34
    for n in ("fire6/expand1x1", "fire7/squeeze1x1", "fire8/expand1x1", "fire9/squeeze1x1"):
        assert 0.49 < dens[n] < 0.51
    assert 0.29 < dens["fire8/expand3x3"] < 0.31 and 0.19 < dens["conv_final"] < 0.21
    assert all(lw.codebook[0] == 0.0 for lw in m.layers.values())


def test_corrupt_authors_file_is_named(tmp_path):
    data = shared_file(AUTHORS_NET).read_bytes()
    cut = tmp_path / "cut.net"
    cut.write_bytes(data[:400_000])
    with pytest.raises(ModelFormatError, match="truncated or corrupt"):
        read_deep_compression(cut)
    extra = tmp_path / "extra.net"
    extra.write_bytes(data + b"\0" * 7)
    with pytest.raises(ModelFormatError, match="7 bytes left over"):
        read_deep_compression(extra)
    tiny = tmp_path / "tiny.net"
    tiny.write_bytes(b"abc")
    with pytest.raises(ModelFormatError, match="too short"):
        read_deep_compression(tiny)


def test_npz_round_trip_and_garbage(tmp_path, authors_model):
    p = tmp_path / "m.npz"
    save_model(authors_model, p)
    back = load_model(p)
    for n, lw in authors_model.layers.items():
        assert np.array_equal(back.layers[n].weights, lw.weights)
        assert back.layers[n].stored == lw.stored
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ModelFormatError, match="cannot read as a model file"):
        load_model(bad)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.npz")


def test_float_weights_held_exactly():
    net = digits_net()
    rng = np.random.default_rng(3)
    w = {c.name: (rng.normal(0, 0.1, c.weight_shape).astype(np.float32),
                  rng.normal(0, 0.1, c.out_channels).astype(np.float32)) for c in net.convs()}
    m = Model.from_float(net, w)
    for n, (wt, b) in w.items():
        assert np.array_equal(m.layers[n].weights, wt)
        assert m.layers[n].codebook[0] == 0.0 and not m.layers[n].shared


def test_uniform_codebook_is_plain_fixed_point():
    w = np.array([-1.0, -0.5, 0.0, 0.25, 1.0], np.float32)
    cb, idx = uniform_codebook(w, 8)
    assert cb[0] == 0.0 and len(cb) == 256
    step = 1.0 / 127
    assert np.allclose(cb[idx], np.rint(w / step) * step)


def test_sqz_info_json(tmp_path):
    from host.cli import main
    out = tmp_path / "info.json"
    assert main(["info", str(shared_file(AUTHORS_NET)), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["parameters"] == 1_248_424
    assert [l["stored"] for l in r["layers"]] == STORED
    assert r["layers"][0] == {"name": "conv1", "shape": [96, 3, 7, 7], "stored": 13902,
                              "density": pytest.approx(0.985, abs=1e-3), "codebook_size": 256}
