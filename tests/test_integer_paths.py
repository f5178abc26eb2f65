"""The fast golden kernels equal the plain int64 reference, bit for bit."""

import numpy as np
import pytest

from golden import kernels, numerics as nx, reference_int
from golden.quantize import QAdd


from sim.cases import random_conv  # noqa: E402  (shared with the cocotb benches)


def check_conv(rng, x, qc, where):
    want = reference_int.conv(x, qc)
    got = kernels.PreparedConv(qc)(x)
    if not np.array_equal(want, got):
        o, y, xx = np.argwhere(want != got)[0]
        pytest.fail(f"{where}: channel {o}, row {y}, column {xx}: golden {got[o, y, xx]}, "
                    f"reference {want[o, y, xx]}")


def test_random_layers_bit_exact():
    """Hundreds of seeded shapes: channels, sizes, kernel, stride, padding, widths, sparsity."""
    seed = 20261122
    rng = np.random.default_rng(seed)
    for case in range(300):
        k, stride, pad = [(1, 1, 0), (3, 1, 1), (3, 2, 0), (7, 2, 0), (1, 1, 1)][case % 5]
        cin, cout = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        h, w = int(rng.integers(k, 20)), int(rng.integers(k, 20))
        vb = int(rng.integers(nx.VALUE_BITS_MIN, 14))
        ib = [8, 6, 4][case % 3]
        qc = random_conv(rng, cin, cout, k, stride, pad, vb, ib, relu=case % 7 != 0)
        x = rng.integers(0, 256, (cin, h, w)).astype(np.uint8)
        check_conv(rng, x, qc, f"seed {seed} case {case} ({cin}->{cout}, k{k}/s{stride}/p{pad})")


@pytest.mark.parametrize("weights", ["extreme", "zero", "random"])
@pytest.mark.parametrize("fill", [0, 255])
def test_edge_values(weights, fill):
    rng = np.random.default_rng(7)
    qc = random_conv(rng, 64, 16, 3, 1, 1, 12, 8, weights=weights)
    x = np.full((64, 9, 9), fill, np.uint8)
    check_conv(rng, x, qc, f"{weights} weights, input all {fill}")


def test_wide_values_need_split_products_and_stay_exact():
    """16-bit codebook values at fan-in 576 overflow float32's exact range unless split."""
    rng = np.random.default_rng(11)
    qc = random_conv(rng, 64, 8, 3, 1, 1, 16, 8, weights="extreme")
    qc.bias[:] = 0
    prepared = kernels.PreparedConv(qc)
    assert len(prepared.weight_parts) > 1
    x = np.full((64, 6, 6), 255, np.uint8)
    check_conv(rng, x, qc, "16-bit values")


def test_saturation_both_ways():
    rng = np.random.default_rng(5)
    qc = random_conv(rng, 8, 4, 1, 1, 0, 12, 8)
    qc.bias[:] = [nx.ACC_MAX // 2, -nx.ACC_MAX // 2, 0, 1]
    x = rng.integers(0, 256, (8, 5, 5)).astype(np.uint8)
    out = kernels.PreparedConv(qc)(x)
    assert (out[0] == 255).all() and (out[1] == 0).all()
    check_conv(rng, x, qc, "saturation")


def test_requantize_rounds_half_up_and_clamps():
    acc = np.array([-5, 0, 1, 2, 3, 1000, 10**9])
    # M / 2**S = 1/2: 1 -> 0.5 -> 1 (half up), 3 -> 1.5 -> 2
    got = reference_int.requantize(acc, 1 << 15, 16)
    assert got.tolist() == [0, 0, 1, 1, 2, 255, 255]


def test_pool_add_and_sum():
    rng = np.random.default_rng(9)
    for h, w in [(14, 14), (7, 7), (111, 111), (6, 9)]:
        x = rng.integers(0, 256, (5, h, w)).astype(np.uint8)
        assert np.array_equal(kernels.maxpool(x, 3, 2), reference_int.maxpool(x, 3, 2))
        a = rng.integers(0, 256, (5, h, w)).astype(np.uint8)
        qa = QAdd(int(rng.integers(1 << 14, 1 << 16)), int(rng.integers(1 << 14, 1 << 16)), 16)
        assert np.array_equal(kernels.bypass_add(a, x, qa), reference_int.bypass_add(a, x, qa))
        acc = rng.integers(-(1 << 30), 1 << 30, (5, h, w)).astype(np.int32)
        assert np.array_equal(kernels.bypass_add(a, acc, qa), reference_int.bypass_add(a, acc, qa))
        assert np.array_equal(kernels.global_sum(x), reference_int.global_sum(x))
    assert reference_int.global_sum(np.full((2, 15, 15), 255, np.uint8)).tolist() == [57375] * 2


def test_requant_params_normalised():
    for r in [1e-6, 3.7e-4, 0.01, 0.5, 0.999, 1.0, 123.0]:
        try:
            m, s = nx.requant_params(r)
        except ValueError:
            assert r > 1
            continue
        assert (1 << (nx.MULT_BITS - 1)) <= m < (1 << nx.MULT_BITS) or s == nx.SHIFT_MAX
        assert abs(m / 2 ** s - r) <= r * 2 ** -(nx.MULT_BITS - 1) or s == nx.SHIFT_MAX


@pytest.mark.parametrize("grouped", [False, True])
def test_squeezenext_golden_equals_the_reference_and_float_equals_torch(grouped):
    """SqueezeNext's kernels (3x1, 1x3, stride-2 1x1 projections, two groups) through the fast
    kernels and the plain int64 reference, bit for bit; the float reference against PyTorch's
    convolutions (grouped natively there)."""
    torch = pytest.importorskip("torch")
    from conftest import random_float_model
    from golden.engine import Golden, run_reference
    from golden.network import InputSpec, squeezenext
    from golden.preprocess import float_input
    from golden.quantize import quantize
    from golden.reference_float import forward_float
    from golden.torch_net import torch_module
    spec = InputSpec(3, 48, 48, "RGB", (0.0,), (255.0,))
    net = squeezenext(0.5, "23v5", grouped=grouped, classes=10, input_spec=spec)
    model = random_float_model(net, 3)
    rng = np.random.default_rng(5)
    x = [rng.integers(0, 256, (3, 48, 48), dtype=np.uint8) for _ in range(3)]
    t = torch_module(net, weights=model.float_weights())
    with torch.no_grad():
        want = t(torch.tensor(float_input(x[0], spec))[None]).numpy()[0]
    got = forward_float(net, model.float_weights(), float_input(x[0], spec))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    q = quantize(model, x[:2], 8)
    for img in x:
        np.testing.assert_array_equal(Golden(q)(img), run_reference(q, img))
