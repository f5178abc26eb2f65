"""The SDRAM controller (hw/sdram.py) against the chip model (sim/board/sdram_model.h), both
built from hw.sdram_chip's numbers: seeded random traffic with every read checked, and each
timing rule provoked on the model to show it stops the run naming the rule, the command, the
address and the cycle."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from hw.sdram_chip import MT48LC16M16A2, SDRAMTimings, split_address
from sim.board.sdram import RULES, run


@pytest.mark.parametrize("mhz", [100, 133])
def test_controller_against_the_model_under_random_traffic(mhz):
    t = SDRAMTimings.at(mhz)
    assert t.cl == (2 if mhz <= 100 else 3)
    r = run(t, seed=20261201 + mhz, ops=6000)
    print(r)
    assert r["exit"] == 0 and r["ok"], r["stderr"]
    assert r["mismatches"] == 0
    assert r["reads"] > 60_000 and r["writes"] > 60_000
    # Rows and banks changed often, refreshes fell among the traffic and never left a gap
    # longer than the rule.
    assert r["activates"] > 300 and r["refreshes"] > 5
    assert r["max_refresh_gap"] <= t.refi
    # A sequential stream stays near one word per clock (refresh and row changes aside).
    assert r["stream_read_words_per_cycle"] > 0.95
    assert r["stream_write_words_per_cycle"] > 0.95


def test_a_controller_that_breaks_a_rule_is_stopped_by_the_model():
    t = SDRAMTimings.at(100)
    r = run(replace(t, rcd=t.rcd - 1), ops=200, rules={"rcd": t.rcd})
    assert r["exit"] == 1
    assert re.match(r"sdram model: tRCD violated at cycle \d+: (READ|WRITE) bank \d row 0x[0-9a-f]{4} "
                    r"column 0x[0-9a-f]{3}, 1 cycle after ACTIVE; the rule is at least 2",
                    r["stderr"]), r["stderr"]


EXPECT = {   # rule -> what the model's message must name (command, address, how far off)
    "power-up": r"PRECHARGE bank 0, 5000 cycles after power-up; the rule is at least 10000",
    "tRCD": r"READ bank 1 row 0x0005 column 0x040, 1 cycle after ACTIVE; the rule is at least 2",
    "tRP": r"ACTIVE bank 0 row 0x0009 column 0x000, 1 cycle after PRECHARGE",
    "tRAS": r"PRECHARGE bank 2 row 0x0007 column 0x000, 4 cycles after ACTIVE; the rule is at least 5",
    "tRC": r"ACTIVE bank 3 row 0x0001 column 0x000, 7 cycles after the bank's last ACTIVE; "
           r"the rule is at least 12",
    "tRRD": r"ACTIVE bank 1 row 0x0001 column 0x000, 1 cycle after another bank's ACTIVE",
    "tWR": r"PRECHARGE bank 1 row 0x0003 column 0x000, 1 cycle after the last WRITE",
    "tRFC": r"ACTIVE bank 0, 6 cycles after AUTO REFRESH; the rule is at least 7",
    "tMRD": r"ACTIVE bank 0, 1 cycle after LOAD MODE REGISTER",
    "refresh interval": r"no AUTO REFRESH, 782 cycles since the last one; the rule is at most 781",
    "mode register": r"LOAD MODE, a burst length above 1",
    "bus contention": r"WRITE bank 0 row 0x0004 column 0x002, 1 cycle after a READ",
    "bank state": r"READ bank 2, the bank is idle \(ACTIVE first\)",
    "DQM": r"a READ's data bank 0 row 0x0004 column 0x001, masked by DQM two cycles before "
           r"it leaves the chip",
}


@pytest.mark.parametrize("rule", RULES)
def test_the_model_catches_each_timing_rule(rule):
    # tRC cannot be broken with the real numbers (tRAS + tRP already cover it): the script
    # runs on a model whose tRC is longer.
    r = run(SDRAMTimings.at(100), script=rule, rules={"rc": 12} if rule == "tRC" else None)
    assert r["exit"] == 1 and r["caught"], r
    m = re.match(rf"sdram model: {rule} violated at cycle (\d+): (.*)", r["stderr"])
    assert m, r["stderr"]
    assert int(m.group(1)) == r["cycle"]
    assert re.match(EXPECT[rule], m.group(2)), m.group(2)


def test_timings_follow_the_clock_and_the_address_map_keeps_streams_in_a_row():
    t100, t50 = SDRAMTimings.at(100), SDRAMTimings.at(50)
    assert (t100.cl, t100.rcd, t100.ras, t100.rc, t100.refi) == (2, 2, 5, 7, 781)
    assert (t50.rcd, t50.ras, t50.refi) == (1, 3, 390)
    with pytest.raises(ValueError, match="specified up to 133 MHz"):
        SDRAMTimings.at(150)
    assert MT48LC16M16A2.bytes == 32 << 20
    assert split_address(511) == (0, 0, 511) and split_address(512) == (1, 0, 0)
    assert split_address(4 * 512) == (0, 1, 0)


@pytest.mark.parametrize("mac_units", [64, 128])
def test_feature_dma_moves_2d_regions_between_a_buffer_and_the_sdram(mac_units):
    """hw.dma.FeatureDMA: random 2-D stores (every SDRAM word checked in the model against
    the feature-word layout) and loads of what was stored (every buffer word checked), the
    controller and the model's rules in the loop."""
    from hw.config import AcceleratorConfig
    from sim.board.sdram import run_dma
    r = run_dma(AcceleratorConfig(mac_units=mac_units), SDRAMTimings.at(100), seed=mac_units,
                transfers=12)
    print(r)
    assert r["exit"] == 0 and r["ok"], r["stderr"]
    assert r["mismatches"] == 0 and r["refreshes"] > 10
    assert r["store_sdram_words"] > 5000 and r["load_sdram_words"] > 1000
    assert r["store_words_per_cycle"] > 0.9 and r["load_words_per_cycle"] > 0.9


def test_the_sdram_path_needs_whole_sdram_words():
    from hw.config import AcceleratorConfig
    from hw.layout import DMATarget, sdram_unit_words
    assert sdram_unit_words(AcceleratorConfig(mac_units=64), DMATarget.FEATURE) == 2
    with pytest.raises(ValueError, match="needs PC >= 2"):
        sdram_unit_words(AcceleratorConfig(mac_units=16), DMATarget.FEATURE)
