"""Golden against the plain reference on whole networks; mean folding; accuracy sanity."""

import numpy as np
import pytest

from golden.engine import Golden, run_reference, top_k
from golden.model import Model
from golden.network import digits_net, squeezenet_v1_0, squeezenet_v1_1
from golden.preprocess import float_input, load_image
from golden.quantize import QuantizationError, quantize
from golden.reference_float import forward_float


def assert_tensors_equal(a: dict, b: dict):
    for name in b:
        if not np.array_equal(a[name], b[name]):
            idx = tuple(np.argwhere(a[name] != b[name])[0])
            pytest.fail(f"layer {name}, (channel, row, column) {idx}: golden {a[name][idx]}, "
                        f"reference {b[name][idx]}")


def test_authors_model_bit_exact_on_real_photos(authors_quantized, sample_photos):
    g = Golden(authors_quantized)
    spec = authors_quantized.network.input
    for path in sample_photos[7:500:240]:
        x = load_image(path, spec)
        assert_tensors_equal(g(x, keep=True), run_reference(authors_quantized, x, keep=True))


def test_authors_model_8bit_agrees_with_float(authors_model, authors_quantized, sample_photos):
    g = Golden(authors_quantized)
    spec = authors_model.network.input
    w = authors_model.float_weights()
    agree = 0
    photos = sample_photos[3::50]
    for path in photos:
        x = load_image(path, spec)
        agree += top_k(g(x), 1)[0] == np.argmax(forward_float(authors_model.network, w,
                                                              float_input(x, spec)))
    assert agree >= len(photos) - 1


def random_model(net, seed):
    rng = np.random.default_rng(seed)
    w = {}
    for c in net.convs():
        std = np.sqrt(2.0 / c.fan_in)
        w[c.name] = (rng.normal(0, std, c.weight_shape).astype(np.float32),
                     rng.normal(0, 0.05, c.out_channels).astype(np.float32))
    return Model.from_float(net, w)


@pytest.mark.parametrize("make", [lambda: digits_net(bypass="simple"),
                                  lambda: digits_net(bypass="complex"),
                                  lambda: digits_net(sr=0.5, pct3x3=0.25)])
@pytest.mark.parametrize("bits", [8, 6, 4])
def test_variants_bit_exact(make, bits):
    net = make()
    m = random_model(net, bits)
    rng = np.random.default_rng(bits)
    imgs = [rng.integers(0, 256, (1, 16, 16)).astype(np.uint8) for _ in range(4)]
    q = quantize(m, imgs[:2], bits)
    g = Golden(q)
    for x in imgs:
        assert_tensors_equal(g(x, keep=True), run_reference(q, x, keep=True))


def test_v1_1_per_channel_std_folds_and_runs_exact():
    net = squeezenet_v1_1()
    m = random_model(net, 1)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (3, 224, 224)).astype(np.uint8)
    q = quantize(m, [x], 8)
    got = Golden(q)(x)
    assert np.array_equal(got, run_reference(q, x))


def test_mean_folding_is_exact():
    """conv1 on raw pixels with the folded bias equals conv1 on (pixels - mean), integer mean."""
    from golden import reference_int
    net = squeezenet_v1_0()
    m = random_model(net, 4)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (3, 227, 227)).astype(np.uint8)
    q = quantize(m, [x], 8)
    c1 = q.convs["conv1"]
    unfolded = c1.bias + np.einsum("ockl,c->o", c1.weights.astype(np.int64),
                                   np.array(net.input.mean)).astype(np.int64)
    centred = x.astype(np.int64) - np.array(net.input.mean, np.int64)[:, None, None]
    want = reference_int.conv_accumulate(centred[:, :15, :15], c1.weights, unfolded, 2, 0)
    got = reference_int.conv_accumulate(x[:, :15, :15], c1.weights, c1.bias, 2, 0)
    assert np.array_equal(want, got)


def test_accumulator_overflow_is_refused():
    """A layer whose worst case leaves 32 bits is refused at quantisation, naming the layer."""
    net = digits_net(sr=1.0)                      # fire5/expand3x3: fan-in 64 * 9 = 576
    m = random_model(net, 0)
    lw = m.layers["fire5/expand3x3"]
    signs = np.where(lw.weights >= 0, 0.5, -0.5).astype(np.float32)
    m = Model.from_float(net, {**m.float_weights(), "fire5/expand3x3": (signs, lw.bias)})
    x = np.random.default_rng(0).integers(0, 256, (1, 16, 16)).astype(np.uint8)
    with pytest.raises(QuantizationError, match="fire5/expand3x3: worst-case accumulator"):
        quantize(m, [x], 8, value_bits=16)       # 576 * 255 * 32767 > 2**31
    q = quantize(m, [x], 8, value_bits=12)       # 576 * 255 * 2047 < 2**31
    assert max(c.accumulator_bound() for c in q.convs.values()) < 2 ** 31
    with pytest.raises(QuantizationError, match="index bits"):
        quantize(m, [x], 5)


def test_top_k_orders_float_and_integer_logits():
    assert top_k(np.array([0.2, 0.9, 0.5, 0.45], np.float32), 3).tolist() == [1, 2, 3]
    assert top_k(np.array([7, 9, 9, 1], np.uint32), 3).tolist() == [1, 2, 0]   # ties: lower first
    assert top_k(np.array([4_000_000_000, 3_999_999_999], np.uint32), 1).tolist() == [0]
