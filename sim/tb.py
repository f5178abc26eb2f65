"""Testbench pieces shared by the cocotb benches: clock and reset, a driver for the host's
write ports, the run/wait with a timeout, a monitor that reads the output buffer back, and the
scoreboard that names layer, channel, row and column of a mismatch."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer

from hw.layout import feature_map, groups


def verilog_name(name: str) -> str:
    """An Amaranth port name as the generated Verilog spells it (``weight_wr.addr`` ->
    ``weight_wr__addr``)."""
    return name.replace(".", "__")


class HostTB:
    """A top level with host write ports, ``start``/``done``/``cycles`` and ``host_rd_*``."""

    def __init__(self, dut, cfg, enables: tuple[str, ...]):
        self.dut, self.cfg = dut, cfg
        self.enables = tuple(verilog_name(e) for e in enables)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        d = self.dut
        for name in ("start", *self.enables):
            getattr(d, name).value = 0
        d.rst.value = 1
        for _ in range(2):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    async def write(self, enable: str, value: int, rows, fields):
        """Driver: one write per clock on the port group behind ``enable``."""
        d = self.dut
        en = getattr(d, verilog_name(enable))
        ports = [getattr(d, verilog_name(f)) for f in fields]
        en.value = value
        for row in rows:
            for p, v in zip(ports, row):
                p.value = v
            await RisingEdge(d.clk)
        en.value = 0

    async def write_parameters(self, load):
        """Every write group of a sim.loads.LayerLoad, in order."""
        for group in load.writes:
            await self.write(*group)

    async def run(self, timeout_cycles: int) -> int:
        d = self.dut
        d.start.value = 1
        await RisingEdge(d.clk)
        d.start.value = 0
        deadline = Timer(timeout_cycles * 10, unit="ns")
        while True:
            fired = await First(RisingEdge(d.done), deadline)
            assert fired is not deadline, f"did not finish within {timeout_cycles} cycles"
            await ReadOnly()
            if int(d.done.value) == 1:
                break
        cycles = int(d.cycles.value)
        await RisingEdge(d.clk)
        return cycles

    async def monitor(self, shape) -> np.ndarray:
        """Read the output buffer back: the data of an address appears FM_READ_LATENCY edges
        after it is taken."""
        from hw.timing import FM_READ_LATENCY
        d, cfg = self.dut, self.cfg
        c, h, w = shape
        n = groups(c, cfg.pc) * h * w
        words = np.zeros((n, cfg.pc), np.uint8)
        for a in range(n + FM_READ_LATENCY):
            d.host_rd_addr.value = min(a, n - 1)
            await RisingEdge(d.clk)
            if a >= FM_READ_LATENCY:           # (values as the edge before left them)
                b = a - FM_READ_LATENCY
                value = d.host_rd_data.value
                assert value.is_resolvable, f"output word {b} is undefined: {value}"
                words[b] = unpack_lanes(int(value), 8, cfg.pc)
        return feature_map(words, shape, cfg)


def scoreboard(layer: str, got: np.ndarray, want: np.ndarray) -> None:
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        o, y, x = bad[0]
        raise AssertionError(f"layer {layer}: {len(bad)} bytes differ; first at channel {o}, "
                             f"row {y}, column {x}: hardware {got[o, y, x]}, golden {want[o, y, x]}")


def pack_lanes(values, bits: int) -> int:
    """Lanes (lane 0 in the low bits) as one integer; negative values in two's complement."""
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (bits * t) for t, v in enumerate(values))


def unpack_lanes(word: int, bits: int, lanes: int) -> list[int]:
    mask = (1 << bits) - 1
    return [(word >> (bits * t)) & mask for t in range(lanes)]


class StreamDriver:
    """Source of an amaranth.lib.stream port flattened to ``<name>_{valid,ready,payload}``:
    offers the beats in order, idling a cycle with probability ``idle`` before each.

    Timing: signals change just after a falling clock edge; ``ready`` is sampled once the
    cycle has settled; the beat moves at the next rising edge if it was high."""

    def __init__(self, dut, name: str, rng, idle: float = 0.0):
        self.valid = getattr(dut, f"{name}_valid")
        self.ready = getattr(dut, f"{name}_ready")
        self.payload = getattr(dut, f"{name}_payload")
        self.clk, self.rng, self.idle = dut.clk, rng, idle
        self.valid.value = 0

    async def send(self, beats):
        for beat in beats:
            await FallingEdge(self.clk)
            while self.rng.random() < self.idle:
                self.valid.value = 0
                await FallingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = beat
            while True:
                await ReadOnly()
                taken = int(self.ready.value) == 1
                await RisingEdge(self.clk)
                if taken:
                    break
                await FallingEdge(self.clk)
        await FallingEdge(self.clk)
        self.valid.value = 0


class StreamMonitor:
    """Sink of a flattened stream port: takes ``count`` beats, holding ``ready`` low with
    probability ``stall`` each cycle (backpressure), and checks that an offered beat does not
    change or vanish before it is taken. Timing as StreamDriver."""

    def __init__(self, dut, name: str, rng, stall: float = 0.0):
        self.valid = getattr(dut, f"{name}_valid")
        self.ready = getattr(dut, f"{name}_ready")
        self.payload = getattr(dut, f"{name}_payload")
        self.clk, self.rng, self.stall = dut.clk, rng, stall
        self.ready.value = 0

    async def receive(self, count: int, timeout_cycles: int = 1_000_000) -> list[int]:
        got, offered = [], None
        for _ in range(timeout_cycles):
            if len(got) == count:
                break
            await FallingEdge(self.clk)
            ready = self.rng.random() >= self.stall
            self.ready.value = int(ready)
            await ReadOnly()
            if int(self.valid.value):
                beat = int(self.payload.value)
                assert offered is None or beat == offered, "an offered beat changed"
                offered = None if ready else beat
                if ready:
                    got.append(beat)
            else:
                assert offered is None, "an offered beat was withdrawn"
            await RisingEdge(self.clk)
        await FallingEdge(self.clk)
        self.ready.value = 0
        assert len(got) == count, f"{len(got)} of {count} beats arrived"
        return got


def uart_line(events, bit_time: float, idle: int = 40, tail: int = 48) -> list[int]:
    """A UART sender's line (8N1), cycle by cycle: ``events`` is a list of ("byte", b),
    ("low", cycles) (a break or a glitch) and ("idle", cycles); a bit lasts ``bit_time``
    cycles, not a whole number when the sender's baud is off."""
    levels = [1] * idle
    t = float(len(levels))
    for kind, value in events:
        if kind == "byte":
            for b in [0] + [(value >> i) & 1 for i in range(8)] + [1]:
                end = t + bit_time
                levels += [b] * (round(end) - round(t))
                t = end
        else:
            levels += [0 if kind == "low" else 1] * value
            t += value
    return levels + [1] * (idle + tail)
