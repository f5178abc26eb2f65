"""The memory plan (host/memory_plan.py): its bands cover every row, its bytes are at least the
maps it moves, fusion removes the pooled maps' round trip, and it refuses tiles too small."""

import pytest

from golden.network import digits_net, squeezenet_v1_0
from host.memory_plan import plan_network, report
from hw.config import AcceleratorConfig
from hw.layout import describe, groups
from hw.timing import engine_cycles

CFG = AcceleratorConfig(mac_units=64)


def test_bands_cover_the_map_and_cost_at_least_the_whole_layer():
    net = squeezenet_v1_0()
    plans = {p.name: p for p in plan_network(net, CFG, 48 * 1024, fusion=False)}
    shapes = net.shapes()
    conv1 = plans["conv1"]
    assert conv1.band_rows * (conv1.bands - 1) < shapes["conv1"][1] <= conv1.band_rows * conv1.bands
    whole = engine_cycles(describe(net.nodes[0].convs()[0], 227, 227), CFG)
    assert whole < conv1.compute_cycles < whole * 1.01
    # Every byte of the input is read at least once, halos more; the output written once.
    c, h, w = shapes["input"]
    assert conv1.read_bytes >= groups(c, CFG.pc) * CFG.pc * h * w
    oc, oh, ow = shapes["conv1"]
    assert conv1.write_bytes == groups(oc, CFG.pc) * CFG.pc * oh * ow
    assert all(p.cycles >= max(p.compute_cycles, 1) for p in plans.values())


def test_fusion_writes_only_the_pooled_maps():
    net = squeezenet_v1_0()
    fused = report(plan_network(net, CFG, 48 * 1024, True), CFG, 100, 48 * 1024, True)
    plain = report(plan_network(net, CFG, 48 * 1024, False), CFG, 100, 48 * 1024, False)
    names = [p["name"] for p in fused["layers"]]
    assert "conv1+pool1" in names and "pool1" not in names
    assert fused["total"]["sdram_bytes"] < 0.7 * plain["total"]["sdram_bytes"]
    assert fused["total"]["wait_cycles"] < plain["total"]["wait_cycles"]


def test_tiles_too_small_for_one_row_are_refused():
    with pytest.raises(ValueError, match="not even one output row fits"):
        plan_network(digits_net(), CFG, 16)
