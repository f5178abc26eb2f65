"""The convolution engine in Amaranth's simulator against the golden reference, bit for bit."""

import numpy as np
import pytest

from golden import reference_int
from hw.config import AcceleratorConfig
from hw.timing import engine_cycles

from hw_harness import run_layer
from sim.cases import random_conv


def check(cfg, qc, x, where):
    got, load = run_layer(cfg, qc, x)
    want = reference_int.conv(x, qc)
    if not np.array_equal(got["out"], want):
        o, y, xx = np.argwhere(got["out"] != want)[0]
        pytest.fail(f"{where}: channel {o}, row {y}, column {xx}: hardware {got['out'][o, y, xx]}, "
                    f"golden {want[o, y, xx]}")
    assert got["cycles"] == engine_cycles(load.descriptor, cfg)


@pytest.mark.parametrize("mac_units", [16, 64])
@pytest.mark.parametrize("shape", [(8, 16, 5, 1, 1, 0), (6, 20, 6, 3, 1, 1), (3, 16, 9, 3, 2, 0)])
def test_engine_matches_golden(mac_units, shape):
    cin, cout, size, k, stride, pad = shape
    cfg = AcceleratorConfig(mac_units=mac_units, fm_depth=2048, weight_depth=256, bias_depth=8)
    rng = np.random.default_rng([mac_units, *shape])      # a fixed seed per case
    qc = random_conv(rng, cin, cout, k, stride, pad, cfg.value_bits, 8)
    x = rng.integers(0, 256, (cin, size, size)).astype(np.uint8)
    check(cfg, qc, x, f"{mac_units} MACs, {shape}")


def test_layer_that_does_not_fit_is_refused():
    from sim.loads import layer_load
    cfg = AcceleratorConfig(mac_units=16, fm_depth=512)
    rng = np.random.default_rng(1)
    qc = random_conv(rng, 6, 20, 3, 1, 1, cfg.value_bits, 8)
    x = rng.integers(0, 256, (6, 6, 6)).astype(np.uint8)
    with pytest.raises(ValueError, match="output feature map needs 1152 words per bank"):
        layer_load(qc, x, cfg)
