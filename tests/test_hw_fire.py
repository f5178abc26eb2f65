"""The Fire unit (squeeze kept on chip, both expands, concat) in Amaranth's simulator against
golden, bit for bit, with its cycle model."""

import numpy as np
import pytest

from hw.timing import fire_cycles
from sim.loads import fire_load
from hw.config import AcceleratorConfig

from hw_harness import run_fire
from sim.cases import fire_reference, random_fire


def check(cfg, layers, x, where, **kw):
    got, load = run_fire(cfg, layers, x, **kw)
    want = fire_reference(layers, x)
    if not np.array_equal(got["out"], want):
        o, y, xx = np.argwhere(got["out"] != want)[0]
        pytest.fail(f"{where}: channel {o}, row {y}, column {xx}: hardware "
                    f"{got['out'][o, y, xx]}, golden {want[o, y, xx]}")
    assert got["cycles"] == fire_cycles(load.descriptors, cfg), where


@pytest.mark.parametrize("mac_units", [16, 64])
def test_fire_unit_matches_golden(mac_units):
    cfg = AcceleratorConfig(mac_units=mac_units, fm_depth=1024, squeeze_depth=512,
                            weight_depth=512, bias_depth=16)
    seed = 1000 + mac_units
    rng = np.random.default_rng(seed)
    for case in range(3):
        layers, x = random_fire(rng, cfg.value_bits, cfg.pc, max_channels=20, max_size=6)
        check(cfg, layers, x, f"seed {seed} case {case}", idle_between_writes=case == 1)


def test_fire_unit_refuses_a_misaligned_concat():
    cfg = AcceleratorConfig(mac_units=64)
    rng = np.random.default_rng(3)
    layers, x = random_fire(rng, cfg.value_bits, cfg.pc + 1)
    if layers[1].spec.out_channels % cfg.pc == 0:
        pytest.skip("drew an aligned expand1x1")
    with pytest.raises(ValueError, match="concat needs a multiple of 4"):
        fire_load(*layers, x, cfg)


def test_squeeze_buffer_too_small_is_named():
    cfg = AcceleratorConfig(mac_units=16, squeeze_depth=16)
    rng = np.random.default_rng(4)
    layers, x = random_fire(rng, cfg.value_bits, cfg.pc, max_size=8)
    x = np.zeros((layers[0].spec.in_channels, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="squeeze buffer needs"):
        fire_load(*layers, x, cfg)
