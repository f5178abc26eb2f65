"""The ULX3S top level (hw/ulx3s.py) so that it cannot rot: the small build (the UART echo and
the LEDs behind the PLL) goes through the whole open flow to a bitstream with timing met; the
echo core answers every byte at bit level in simulation."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from test_uart import DIVISOR, line_of


def test_the_small_board_build_makes_a_bitstream_with_timing_met(tmp_path):
    pytest.importorskip("amaranth_boards", reason="the board extra (pip install -e '.[board]')")
    from tools.bitstream import build
    report = build("echo", tmp_path / "ulx3s", clock_mhz=75.0, baud=3_000_000)
    print(report)
    assert report["timing_met"], report["clocks"]
    assert report["clocks"] and all(c["fmax_mhz"] >= c["target_mhz"] for c in report["clocks"])
    assert report["clocks"][0]["target_mhz"] == 75.0
    assert report["bitstream_bytes"] > 100_000
    assert (tmp_path / "ulx3s" / "top.bit").stat().st_size == report["bitstream_bytes"]
    assert 0 < report["luts"] < 2000 and report["ebr"] <= 1


def test_pll_settings_come_from_ecppll():
    pytest.importorskip("amaranth_boards", reason="the board extra (pip install -e '.[board]')")
    from hw.ulx3s import pll_parameters
    pll = pll_parameters(75.0)
    assert pll["achieved_mhz"] == 75.0
    # 25 MHz / CLKI_DIV * CLKFB_DIV * CLKOP_DIV = the VCO; / CLKOP_DIV = the output.
    p = pll["params"]
    assert 25 / p["CLKI_DIV"] * p["CLKFB_DIV"] == 75.0 and p["FEEDBK_PATH"] == "CLKOP"


def test_the_echo_core_answers_every_byte():
    from hw.ulx3s import EchoCore
    rng = random.Random(4)
    data = [rng.randrange(256) for _ in range(40)]
    levels = line_of([("byte", b) for b in data], DIVISOR)
    dut = EchoCore(DIVISOR)
    line = []

    async def tb(ctx):
        for level in levels + [1] * (len(data) * 10 * DIVISOR):
            ctx.set(dut.rx, level)
            await ctx.tick()
            line.append(ctx.get(dut.tx))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    got, t = [], 0
    while t < len(line) and len(got) < len(data):
        if line[t] == 0:                       # a start bit: sample every bit's middle
            bits = [line[t + i * DIVISOR + DIVISOR // 2] for i in range(10)]
            assert bits[9] == 1
            got.append(sum(b << i for i, b in enumerate(bits[1:9])))
            t += 10 * DIVISOR - DIVISOR // 2
        else:
            t += 1
    assert got == data


def test_a_device_that_cannot_fit_is_refused_before_the_flow_runs(tmp_path):
    """The all-on-chip test configuration cannot fit; the board's (maps in the SDRAM) passes
    the check."""
    from hw.config import board_config, chip_config
    from tools.bitstream import block_ram_lower_bound, build
    assert block_ram_lower_bound(chip_config()) > 208
    assert block_ram_lower_bound(board_config()) <= 208
    with pytest.raises(SystemExit, match="does not fit the LFE5U-85F: its on-chip memories "
                                         "need at least [0-9,]+ block RAMs, the chip has 208"):
        build("device", tmp_path / "ulx3s", cfg=chip_config())
    assert not (tmp_path / "ulx3s").exists()
