"""Drive a hw.conv_layer.ConvLayer in Amaranth's simulator with the same load sequence the
cocotb benches use (sim.loads.layer_load)."""

import numpy as np
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.conv_layer import ConvLayer
from hw.layout import feature_map, groups
from hw.timing import FM_READ_LATENCY
from sim.loads import layer_load


def port(dut, name: str):
    """``weight_wr.addr`` -> the signal: a dotted name walks into an interface."""
    for part in name.split("."):
        dut = getattr(dut, part)
    return dut


def set_port(ctx, signal, value: int) -> None:
    """Set a signal, or a layout-typed view (``desc``) from its packed bits."""
    if isinstance(signal, data.View):
        value = signal.shape().from_bits(value)
    ctx.set(signal, value)


async def read_output(ctx, dut, cfg, shape):
    """Read a top level's output buffer back through ``host_rd_*``."""
    c, h, w = shape
    words = np.zeros((groups(c, cfg.pc) * h * w, cfg.pc), np.uint8)
    for addr in range(len(words)):
        ctx.set(dut.host_rd_addr, addr)
        await ctx.tick().repeat(FM_READ_LATENCY)
        row = ctx.get(dut.host_rd_data)
        words[addr] = [row[t] for t in range(cfg.pc)]
    return feature_map(words, shape, cfg)


def run_top(dut, load, cfg, timeout, idle_between_writes=False, ports=None):
    """Drive a top level with host ports: each write group of ``load.writes`` one row per clock
    (optionally with an idle cycle after each), set ``ports``, pulse ``start``, wait for
    ``done``, read the output buffer. Returns {"cycles", "out"}."""
    result = {}

    async def tb(ctx):
        for enable, value, rows, fields in load.writes:
            for row in rows:
                for f, v in zip(fields, row):
                    ctx.set(port(dut, f), v)
                ctx.set(port(dut, enable), value)
                await ctx.tick()
                if idle_between_writes:
                    ctx.set(port(dut, enable), 0)
                    await ctx.tick()
            ctx.set(port(dut, enable), 0)
        for k, v in (ports or {}).items():
            set_port(ctx, port(dut, k), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ticks = 0
        while not ctx.get(dut.done):
            await ctx.tick()
            ticks += 1
            assert ticks < timeout, f"{type(dut).__name__} did not finish"
        result["cycles"] = ctx.get(dut.cycles)
        result["out"] = await read_output(ctx, dut, cfg, load.out_shape)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return result


def run_layer(cfg, qc, x, timeout=200_000):
    """A ConvLayer: the layer's writes, its descriptor on ``desc``, start, the output."""
    dut = ConvLayer(cfg)
    load = layer_load(qc, x, cfg)
    return run_top(dut, load, cfg, timeout,
                   ports={"desc": load.descriptor_words(cfg)[0]}), load


def check_layer(cfg, qc, x, where):
    """``run_layer``, then every output byte against golden.reference_int (the first wrong one
    named by channel, row and column) and the engine's cycles against hw.timing's model.
    Returns the load (its descriptor)."""
    import pytest

    from golden import reference_int
    from hw.timing import engine_cycles
    got, load = run_layer(cfg, qc, x)
    want = reference_int.conv(x, qc)
    if not np.array_equal(got["out"], want):
        o, y, xx = np.argwhere(got["out"] != want)[0]
        pytest.fail(f"{where}: channel {o}, row {y}, column {xx}: hardware "
                    f"{got['out'][o, y, xx]}, golden {want[o, y, xx]}")
    assert got["cycles"] == engine_cycles(load.descriptor, cfg), where
    return load


def run_band(cfg, qc, x, out_row0, out_rows, timeout=200_000):
    """A ConvLayer running one row band (sim.loads.band_load): only the band's input rows in
    the input buffer."""
    from sim.loads import band_load
    dut = ConvLayer(cfg)
    load = band_load(qc, x, cfg, out_row0, out_rows)
    return run_top(dut, load, cfg, timeout,
                   ports={"desc": load.descriptor_words(cfg)[0]}), load


def run_fire(cfg, layers, x, timeout=400_000, idle_between_writes=False):
    """Drive a hw.fire.FireUnit: load (sim.loads.fire_load), start once, read the concat."""
    from hw.fire import FireUnit
    from sim.loads import fire_load

    dut = FireUnit(cfg)
    load = fire_load(*layers, x, cfg)
    return run_top(dut, load, cfg, timeout, idle_between_writes), load


def run_stream(dut, ports: dict, streams: dict, outputs: int, seed: int = 0,
               idle: float = 0.0, stall: float = 0.0, timeout: int = 200_000):
    """Drive a component's input streams (``streams``: port name -> list of payloads) and
    collect ``outputs`` beats from ``dut.o``. With probability ``idle`` a source holds valid
    low for a cycle; with probability ``stall`` the sink holds ready low (backpressure).
    Payloads are ints or lists (array layouts). Also checks the stream rule that a valid beat
    stays valid and unchanged until taken."""
    import random
    rng = random.Random(seed)
    got = []

    async def source(ctx, name, beats):
        port = getattr(dut, name)
        for beat in beats:
            while rng.random() < idle:
                ctx.set(port.valid, 0)
                await ctx.tick()
            ctx.set(port.payload, beat)
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def sink(ctx):
        for k, v in ports.items():
            ctx.set(getattr(dut, k), v)
        held = None
        ticks = 0
        lanes = getattr(dut.o.payload.shape(), "length", None)
        while len(got) < outputs:
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            valid = ctx.get(dut.o.valid)
            payload = ctx.get(dut.o.payload)
            if valid:
                value = [int(payload[t]) for t in range(lanes)] if lanes else int(payload)
                if held is not None:
                    assert value == held, "a valid beat changed before it was taken"
                if ready:
                    got.append(value)
                    held = None
                else:
                    held = value
            await ctx.tick()
            ticks += 1
            assert ticks < timeout, f"only {len(got)} of {outputs} output beats arrived"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for name, beats in streams.items():
        async def feed(ctx, n=name, b=beats):
            await source(ctx, n, b)
        sim.add_testbench(feed)
    sim.add_testbench(sink)
    sim.run()
    return got
