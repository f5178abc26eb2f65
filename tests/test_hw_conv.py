"""The convolution engine in Amaranth's simulator against the golden reference, bit for bit."""

import numpy as np
import pytest

from golden import reference_int
from hw.config import AcceleratorConfig
from hw.timing import engine_cycles

from hw_harness import check_layer as check
from sim.cases import random_conv


@pytest.mark.parametrize("mac_units", [16, 64])
@pytest.mark.parametrize("shape", [(8, 16, 5, 1, 1, 0), (6, 20, 6, 3, 1, 1), (3, 16, 9, 3, 2, 0)])
def test_engine_matches_golden(mac_units, shape):
    cin, cout, size, k, stride, pad = shape
    cfg = AcceleratorConfig(mac_units=mac_units, fm_depth=2048, weight_depth=256, bias_depth=8)
    rng = np.random.default_rng([mac_units, *shape])      # a fixed seed per case
    qc = random_conv(rng, cin, cout, k, stride, pad, cfg.value_bits, 8)
    x = rng.integers(0, 256, (cin, size, size)).astype(np.uint8)
    check(cfg, qc, x, f"{mac_units} MACs, {shape}")


@pytest.mark.parametrize("mac_units", [16, 64])
@pytest.mark.parametrize("shape", [(8, 16, 7, 3, 1, 1, 1, 0), (8, 16, 7, 1, 3, 1, 0, 1),
                                   (3, 16, 9, 2, 2, 1, 1, 1), (5, 8, 9, 1, 5, 2, 1, 2)])
def test_engine_computes_kh_by_kw_kernels(mac_units, shape):
    """SqueezeNext's 3x1 (pad 1 on the rows) and 1x3 (on the columns), the CIFAR-10 variants'
    2x2 with padding 1, and a strided 1x5 with unequal padding."""
    cin, cout, size, kh, kw, stride, ph, pw = shape
    cfg = AcceleratorConfig(mac_units=mac_units, fm_depth=2048, weight_depth=256, bias_depth=8)
    rng = np.random.default_rng([mac_units, *shape])
    qc = random_conv(rng, cin, cout, kh, stride, ph, cfg.value_bits, 8, kernel_w=kw, pad_w=pw)
    x = rng.integers(0, 256, (cin, size, size + 2)).astype(np.uint8)
    check(cfg, qc, x, f"{mac_units} MACs, {kh}x{kw}/{stride} pad ({ph}, {pw})")


@pytest.mark.parametrize("mac_units, output_lanes", [(64, 16), (128, 32)])
@pytest.mark.parametrize("shape", [(8, 40, 5, 1, 1, 0), (3, 40, 9, 3, 2, 0), (6, 20, 6, 3, 1, 1)])
def test_weight_words_of_values_match_golden(mac_units, output_lanes, shape):
    """No codebook tables: the weight words hold the signed values (the board's dense device
    at 128 MAC units, hw.config.board_config), at 16 and 32 output lanes; 40 and 20 output
    channels leave the last output group partly empty."""
    cin, cout, size, k, stride, pad = shape
    cfg = AcceleratorConfig(mac_units=mac_units, output_lanes=output_lanes, fm_depth=2048,
                            weight_depth=256, bias_depth=8, codebook_tables=0)
    rng = np.random.default_rng([mac_units, *shape])
    qc = random_conv(rng, cin, cout, k, stride, pad, cfg.value_bits, 8)
    assert np.asarray(qc.codebook).min() < 0        # negative values reach the multipliers
    x = rng.integers(0, 256, (cin, size, size)).astype(np.uint8)
    check(cfg, qc, x, f"{mac_units} MACs as {cfg.po} x {cfg.pc}, values, {shape}")


def test_layer_that_does_not_fit_is_refused():
    from sim.loads import layer_load
    cfg = AcceleratorConfig(mac_units=16, fm_depth=512)
    rng = np.random.default_rng(1)
    qc = random_conv(rng, 6, 20, 3, 1, 1, cfg.value_bits, 8)
    x = rng.integers(0, 256, (6, 6, 6)).astype(np.uint8)
    with pytest.raises(ValueError, match="output feature map needs 1152 words per bank"):
        layer_load(qc, x, cfg)


@pytest.mark.parametrize("shape", [(8, 16, 9, 3, 1, 1), (3, 16, 11, 7, 2, 0), (16, 16, 7, 1, 1, 1),
                                   (8, 16, 9, 3, 1, 1, 1, 0)])
def test_a_layer_computed_in_row_bands_equals_the_whole_layer(shape):
    """Each band reads a buffer holding only its input rows (the halo included); padding stays
    at the map's edges. The bands' outputs, stacked, are the layer's, each band's cycles the
    cycle model's. (The last: a 3x1, its halo rows only.)"""
    from hw_harness import run_band
    cin, cout, size, k, stride, pad, *kw_pw = shape
    cfg = AcceleratorConfig(mac_units=16, fm_depth=2048, weight_depth=256, bias_depth=8)
    rng = np.random.default_rng([7, *shape])
    kw, pw = kw_pw or (0, -1)
    qc = random_conv(rng, cin, cout, k, stride, pad, cfg.value_bits, 8, kernel_w=kw, pad_w=pw)
    x = rng.integers(0, 256, (cin, size, size)).astype(np.uint8)
    want = reference_int.conv(x, qc)
    rows = want.shape[1]
    edges = sorted({0, min(2, rows), rows // 2, rows})
    for row0, end in zip(edges, edges[1:]):
        n = end - row0
        got, load = run_band(cfg, qc, x, row0, n)
        np.testing.assert_array_equal(got["out"], want[:, row0:row0 + n],
                                      err_msg=f"band of output rows {row0}..{row0 + n - 1}")
        assert got["cycles"] == engine_cycles(load.descriptor, cfg)


def test_the_golden_device_runs_a_band_as_the_engine_does():
    """The golden device's convolution op on band descriptors (hw.layout.LayerDescriptor.band),
    from the same buffer contents as the RTL bench, against the reference's rows."""
    from host.golden_device import GoldenDevice
    from hw.layout import OpKind, decode_op, encode_op, feature_map, feature_words, weight_lanes
    cfg = AcceleratorConfig(mac_units=16, fm_depth=2048, weight_depth=256, bias_depth=8)
    rng = np.random.default_rng(3)
    qc = random_conv(rng, 8, 16, 3, 2, 1, cfg.value_bits, 8)
    x = rng.integers(0, 256, (8, 15, 13)).astype(np.uint8)
    want = reference_int.conv(x, qc)
    dev = GoldenDevice(cfg)
    dev.weights[:len(weight_lanes(qc.indices, cfg))] = weight_lanes(qc.indices, cfg)
    dev.codebook[:len(qc.codebook)] = qc.codebook
    dev.bias[:qc.spec.out_channels] = qc.bias
    from hw.layout import describe
    whole = describe(qc.spec, 15, 13, qc.mult, qc.shift)
    for row0, n in ((0, 3), (3, 2), (5, whole.out_h - 5)):
        band = whole.band(row0, n)
        first, rows = band.band_input_rows
        dev.fm[:] = 0
        words = feature_words(x[:, first:first + rows], cfg)
        dev.fm[100:100 + len(words)] = words
        dev._op(decode_op(encode_op({"kind": OpKind.CONV,
                                     "conv": band.fields(cfg, in_base=100, out_base=1000)},
                                    cfg), cfg))
        got = feature_map(dev.fm_b[1000:], (16, n, whole.out_w), cfg)   # a pass writes B
        np.testing.assert_array_equal(got, want[:, row0:row0 + n])
