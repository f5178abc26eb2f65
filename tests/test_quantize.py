import itertools

import numpy as np
import pytest

from golden.model import LayerWeights
from golden.quantize import calibrate, kmeans_1d_optimal, reduce_codebook


def brute_force_cost(v, w, k):
    order = np.argsort(v)
    v, w = v[order], w[order]
    best = np.inf
    for cuts in itertools.combinations(range(1, len(v)), k - 1):
        bounds = (0,) + cuts + (len(v),)
        cost = 0.0
        for i, j in zip(bounds, bounds[1:]):
            c = np.average(v[i:j], weights=w[i:j])
            cost += float((w[i:j] * (v[i:j] - c) ** 2).sum())
        best = min(best, cost)
    return best


def test_kmeans_1d_is_optimal():
    rng = np.random.default_rng(42)
    for _ in range(20):
        n, k = int(rng.integers(4, 10)), int(rng.integers(2, 4))
        v = rng.normal(size=n)
        w = rng.integers(1, 50, n).astype(float)
        cent, assign = kmeans_1d_optimal(v, w, k)
        cost = float((w * (v - cent[assign]) ** 2).sum())
        assert np.isclose(cost, brute_force_cost(v, w, k))
        assert np.all(np.diff(cent) > 0)


def test_reduce_codebook_keeps_pruned_positions_zero():
    rng = np.random.default_rng(1)
    cb = np.concatenate([[0.0], rng.normal(size=255)]).astype(np.float32)
    idx = rng.integers(0, 256, (8, 4, 3, 3)).astype(np.uint8)
    idx[rng.random(idx.shape) < 0.6] = 0
    small = reduce_codebook(LayerWeights(cb, idx, np.zeros(8, np.float32), 100), 6)
    assert len(small.codebook) == 64 and small.codebook[0] == 0.0
    assert np.array_equal(small.indices == 0, idx == 0)
    # Every weight moves to its nearest new value's cluster: error below the old spread.
    err = np.abs(small.weights - cb[idx]).max()
    assert err < np.ptp(cb) / 20


def _random_digits_model():
    """The digits network with seeded random float weights, and three random images."""
    from golden.model import Model
    from golden.network import digits_net
    net = digits_net()
    rng = np.random.default_rng(0)
    m = Model.from_float(net, {c.name: (rng.normal(0, 0.3, c.weight_shape).astype(np.float32),
                                        rng.normal(0, 0.1, c.out_channels).astype(np.float32))
                               for c in net.convs()})
    return m, [rng.integers(0, 256, (1, 16, 16)).astype(np.uint8) for _ in range(3)]


def _random_shared_model(seed: int, pruned: float = 0.0):
    """The digits network with random 256-entry codebooks (a fraction ``pruned`` of its
    weights index 0), and the seeded generator to draw images from."""
    from golden.model import Model
    from golden.network import digits_net
    net = digits_net()
    rng = np.random.default_rng(seed)
    layers = {}
    for c in net.convs():
        cb = np.concatenate([[0.0], rng.normal(0, np.sqrt(2 / c.fan_in), 255)]).astype(np.float32)
        idx = rng.integers(0, 256, c.weight_shape).astype(np.uint8)
        if pruned:
            idx[rng.random(c.weight_shape) < pruned] = 0
        layers[c.name] = LayerWeights(cb, idx, rng.normal(0, 0.05, c.out_channels)
                                      .astype(np.float32))
    return Model(net, layers), rng


def _logit_error(model, original, images) -> float:
    """The summed distance of ``model``'s float logits from ``original``'s on ``images``."""
    from golden.preprocess import float_input
    from golden.reference_float import forward_float
    net = original.network
    return sum(np.linalg.norm(forward_float(net, model.float_weights(), float_input(x, net.input))
                              - forward_float(net, original.float_weights(),
                                              float_input(x, net.input))) for x in images)


def test_calibration_is_deterministic():
    m, imgs = _random_digits_model()
    a, b = calibrate(m, imgs), calibrate(m, list(imgs))
    assert a == b and all(v > 0 for v in a.values())


def test_refit_reduces_output_error_against_the_original():
    """The least-squares refit must move the reduced codebooks towards the original outputs."""
    from golden.model import Model
    from golden.quantize import refit_codebooks
    original, rng = _random_shared_model(5)
    reduced = Model(original.network, {n: reduce_codebook(lw, 4)
                                       for n, lw in original.layers.items()})
    imgs = [rng.integers(0, 256, (1, 16, 16)).astype(np.uint8) for _ in range(4)]
    refit = refit_codebooks(reduced, original, imgs[:2], progress=lambda *a: None,
                            reassign=False)
    assert _logit_error(refit, original, imgs) < 0.9 * _logit_error(reduced, original, imgs)
    for n in original.layers:
        assert refit.layers[n].codebook[0] == 0.0
        assert np.array_equal(refit.layers[n].indices, reduced.layers[n].indices)


def test_assignment_by_error_beats_nearest_value_and_keeps_pruned_weights():
    """assign_by_error's indices give less output error on correlated inputs than rounding
    each weight to its nearest entry, and a pruned weight stays entry 0."""
    from golden.quantize import assign_by_error
    rng = np.random.default_rng(11)
    k, out, pixels = 40, 12, 2000
    mix = rng.normal(size=(k, k)) + 3 * np.eye(k)
    x = np.maximum(mix @ rng.normal(size=(k, pixels)), 0)    # correlated, as after a ReLU
    w = rng.normal(size=(out, k))
    w[rng.random((out, k)) < 0.4] = 0.0                 # pruned positions
    codebook = np.concatenate([[0.0], np.linspace(-2.5, 2.5, 15)])
    gram = x @ x.T
    idx = assign_by_error(w, codebook, gram)

    def error(ix):
        return np.linalg.norm((w - codebook[ix]) @ x)
    nearest = np.abs(w[..., None] - codebook).argmin(-1)
    nearest[w == 0] = 0
    assert error(idx) < 0.92 * error(nearest)
    assert np.all(idx[w == 0] == 0)
    # exact values stay as they are: nothing to compensate
    on_grid = codebook[nearest]
    assert np.array_equal(assign_by_error(on_grid, codebook, gram), nearest)


def test_refit_with_reassignment_lowers_the_error_further():
    from golden.model import Model
    from golden.quantize import refit_codebooks
    original, rng = _random_shared_model(6, pruned=0.5)
    reduced = Model(original.network, {n: reduce_codebook(lw, 4)
                                       for n, lw in original.layers.items()})
    imgs = [rng.integers(0, 256, (1, 16, 16)).astype(np.uint8) for _ in range(6)]
    values_only = refit_codebooks(reduced, original, imgs[:3], reassign=False)
    both = refit_codebooks(reduced, original, imgs[:3])
    assert _logit_error(both, original, imgs) < _logit_error(values_only, original, imgs)
    for n, lw in both.layers.items():
        assert np.all(lw.indices[original.layers[n].indices == 0] == 0)


def test_activation_refit_fits_on_the_quantised_inputs():
    """refit_codebooks(clips=...) refits every layer on its inputs as the integer path holds
    them: the first layer, which reads the exact image, comes out as without clips, the
    layers after it differently; quantize records the option."""
    from golden.quantize import quantize, refit_codebooks
    model, rng = _random_shared_model(9)
    net = model.network
    imgs = [rng.integers(0, 256, (1, 16, 16)).astype(np.uint8) for _ in range(4)]
    clips = calibrate(model, imgs)
    plain = refit_codebooks(model, model, imgs)
    through = refit_codebooks(model, model, imgs, clips=clips)
    first, *rest = [c.name for c in net.convs()]
    assert np.array_equal(plain.layers[first].codebook, through.layers[first].codebook)
    assert all(not np.array_equal(plain.layers[n].codebook, through.layers[n].codebook)
               for n in rest)
    assert quantize(model, imgs, 8, activation_refit=True).info["activation_refit"] is True


def test_kl_divergence_of_logits():
    from golden.evaluate import kl_divergence
    z = np.array([2.0, 1.0, -1.0, 0.5])
    assert kl_divergence(z, z) == pytest.approx(0, abs=1e-12)
    assert kl_divergence(z, z + 7.0) == pytest.approx(0, abs=1e-12)    # a shift changes nothing
    p = np.exp(z) / np.exp(z).sum()
    w = np.array([0.0, 3.0, 0.0, 0.0])
    q = np.exp(w) / np.exp(w).sum()
    assert kl_divergence(z, w) == pytest.approx(float((p * np.log(p / q)).sum()))
    assert kl_divergence(z, w) > 0 and kl_divergence(z, w) != kl_divergence(w, z)


def test_mse_clip_minimises_the_quantisation_error():
    from golden import numerics as nx
    from golden.quantize import mse_clip
    rng = np.random.default_rng(3)

    def error(v, clip):
        step = clip / nx.ACT_MAX
        return float(((v - np.minimum(np.rint(v / step), nx.ACT_MAX) * step) ** 2).mean())

    # A ReLU's long tail (half zeros, half exponential): clipping below the maximum pays.
    tail = np.maximum(rng.standard_normal(200_000), 0) * rng.exponential(1.0, 200_000) ** 2
    clip = mse_clip(tail)
    assert clip < tail.max()
    for other in (tail.max(), np.percentile(tail, 99.99), clip * 0.7, clip * 1.4):
        assert error(tail, clip) <= error(tail, other) * 1.001
    # Uniform values: no clip beats the maximum by much, and the rule keeps close to it.
    flat = rng.random(100_000)
    assert mse_clip(flat) > 0.97 * flat.max()
    assert mse_clip(np.zeros(10)) == 0.0


def test_calibration_rules_are_named_and_checked():
    from golden.quantize import QuantizationError
    m, imgs = _random_digits_model()
    by_mse, by_pct = calibrate(m, imgs, rule="mse"), calibrate(m, imgs, rule="percentile")
    assert by_mse.keys() == by_pct.keys() and all(v > 0 for v in by_mse.values())
    assert by_mse != by_pct
    with pytest.raises(QuantizationError, match="calibration rule must be one of"):
        calibrate(m, imgs, rule="entropy")


def test_bias_correction_takes_out_the_mean_activation_error():
    from golden import numerics as nx
    from golden.digits import calibration_set
    from golden.formats import load_model
    from golden.preprocess import float_input
    from golden.quantize import conv_inputs, quantize
    from golden.reference_float import forward_float
    from pathlib import Path
    model = load_model(Path(__file__).resolve().parents[1] / "models/digits-squeezenet.npz")
    images = calibration_set(6)
    plain = quantize(model, images, 8, bias_correction=False)
    fixed = quantize(model, images, 8, bias_correction=True)
    net = model.network
    inputs = conv_inputs(net)
    tensors = [forward_float(net, model.float_weights(), float_input(x, net.input), keep=True)
               for x in images]
    moved = 0
    for n, qc in plain.convs.items():
        fc = fixed.convs[n]
        assert np.array_equal(fc.codebook, qc.codebook) and fc.mult == qc.mult
        src = inputs[n]
        if src == "input":               # raw pixels are exact: nothing to correct
            assert np.array_equal(fc.bias, qc.bias)
            continue
        s = plain.scales[src]
        d = np.mean([((np.minimum(np.rint(t[src] / s), nx.ACT_MAX) * s - t[src]) / s)
                     .mean(axis=(1, 2)) for t in tensors], axis=0)
        want = qc.bias - np.rint(qc.weights.sum(axis=(2, 3)) @ d)
        assert np.array_equal(fc.bias, want.astype(np.int32))
        moved += int(np.count_nonzero(fc.bias != qc.bias))
    assert moved > 0


def test_next_rule_clips_change_the_readers_outputs_least():
    from golden import numerics as nx
    from golden.digits import calibration_set
    from golden.formats import load_model
    from golden.preprocess import float_input
    from golden.quantize import NEXT_FACTORS, tensor_readers
    from golden.reference_float import conv2d_float, forward_float, maxpool_float
    from pathlib import Path
    model = load_model(Path(__file__).resolve().parents[1] / "models/digits-squeezenet.npz")
    images = calibration_set(6)
    net, weights = model.network, model.float_weights()
    by_next = calibrate(model, images, rule="next")
    by_mse = calibrate(model, images, rule="mse")
    tensors = [forward_float(net, weights, float_input(x, net.input), keep=True) for x in images]
    readers = tensor_readers(net)

    def reader_error(name, clip):
        step, err = clip / nx.ACT_MAX, 0.0
        for t in tensors:
            xq = (np.minimum(np.rint(t[name] / step), nx.ACT_MAX) * step).astype(np.float32)
            for spec, pool in readers[name]:
                x = maxpool_float(xq, pool.kernel, pool.stride) if pool is not None else xq
                w, b = weights[spec.name]
                y = conv2d_float(x, spec.dense(w), b, spec.stride, (spec.ph, spec.pw), spec.relu)
                err += float(((y - t[spec.name]) ** 2).sum())
        return err

    for name, clip in by_next.items():
        if name not in readers:          # the last convolution: its mse clip
            assert clip == by_mse[name]
            continue
        top = max(float(t[name].max()) for t in tensors)
        assert any(np.isclose(clip, min(by_mse[name] * f, top)) for f in NEXT_FACTORS)
        assert reader_error(name, clip) <= reader_error(name, by_mse[name]) * (1 + 1e-9)
