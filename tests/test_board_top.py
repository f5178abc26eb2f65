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


def test_synthesis_figures_are_read_from_nextpnrs_log_and_report(tmp_path):
    """tools.synth's figures from a placement's files (``--reread``, what a run writes): the
    routed fmax, timing met only on PASS, the worst path and the slow endpoints from nextpnr's
    [fastest, slowest] arrivals; and no re-reading of files that are not of this Verilog."""
    import json
    import os

    from amaranth import Module
    from amaranth.back import verilog
    from amaranth.lib import wiring

    from tools.synth import synthesise_top

    class Counter(wiring.Component):
        def __init__(self, width):
            super().__init__({"count": wiring.Out(width)})

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.count.eq(self.count + 1)
            return m

    work = tmp_path / "tiny"
    with pytest.raises(RuntimeError, match="nothing to re-read"):
        synthesise_top(Counter(8), "tiny", work, 100.0, 1, reread=True)
    (work / "tiny.v").write_text(verilog.convert(Counter(8), name="tiny", emit_src=False))
    (work / "tiny.json").write_text("{}")
    (work / "stat.txt").write_text("     12 LUT4\n      8 TRELLIS_FF\n")
    log = work / "nextpnr-router1-seed1.log"
    log.write_text("Info: Max frequency for clock 'clk': 47.14 MHz (FAIL at 100.00 MHz)\n"
                   "Info: Routing complete.\n"
                   "ERROR: Max frequency for clock 'clk': 72.48 MHz (FAIL at 100.00 MHz)\n")
    step = {"cell": "a", "port": "Q"}
    (work / "report-router1-seed1.json").write_text(json.dumps({
        "utilization": {"TRELLIS_COMB": {"used": 12, "available": 83640}},
        "critical_paths": [{"path": [
            {"type": "clk-to-q", "delay": 0.5, "from": step, "to": step},
            {"type": "routing", "delay": 11.0, "from": step, "to": {"cell": "b", "port": "DI"}},
            {"type": "logic", "delay": 2.3, "from": step, "to": {"cell": "b", "port": "DI"}}]}],
        "detailed_net_timings": [
            {"net": "n1", "endpoints": [{"cell": "b", "port": "DI", "delay": [1.0, 13.8]},
                                        {"cell": "c", "port": "CE", "delay": [2.0, 9.5]}]},
            {"net": "n2", "endpoints": [{"cell": "d", "port": "M", "delay": [3.0, 12.1]},
                                        {"cell": "b", "port": "CE", "delay": [1.0, 10.5]}]}]}))
    r = synthesise_top(Counter(8), "tiny", work, 100.0, 1, reread=True)
    assert (r["luts"], r["ffs"], r["routed"]) == (12, 8, True)
    assert (r["fmax_placed_mhz"], r["fmax_mhz"], r["timing_met"]) == (47.14, 72.48, False)
    assert r["critical_path"] == {"from": "a", "to": "b", "ns": 13.8, "routing_ns": 11.0,
                                  "steps": 3}
    assert [(e["cell"], e["port"], e["ns"]) for e in r["slow_endpoints"]] == [
        ("b", "DI", 13.8), ("d", "M", 12.1)]        # one per cell, its worst; c is in time
    log.write_text(log.read_text().replace("72.48 MHz (FAIL", "101.30 MHz (PASS"))
    os.utime(work / "tiny.json", (0, 0))            # the netlist older than the placement
    r = synthesise_top(Counter(8), "tiny", work, 100.0, 1, reread=True)
    assert (r["fmax_mhz"], r["timing_met"]) == (101.30, True)
    log.write_text("Info: Max frequency for clock 'clk': 47.14 MHz (FAIL at 100.00 MHz)\n")
    os.utime(work / "tiny.json", (0, 0))
    r = synthesise_top(Counter(8), "tiny", work, 100.0, 1, reread=True)
    assert (r["routed"], r["fmax_mhz"], r["timing_met"]) == (False, None, False)
    os.utime(work / "tiny.json")                    # a netlist newer than the placement
    with pytest.raises(RuntimeError, match="older than the netlist"):
        synthesise_top(Counter(8), "tiny", work, 100.0, 1, reread=True)
    with pytest.raises(RuntimeError, match="not of this Verilog"):
        synthesise_top(Counter(9), "tiny", work, 100.0, 1, reread=True)
