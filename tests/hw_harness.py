"""Drive a hw.conv_layer.ConvLayer in Amaranth's simulator with the same load sequence the
cocotb benches use (hw.compiler.layer_load)."""

import numpy as np
from amaranth.sim import Simulator

from hw.compiler import layer_load, unpack_feature_map
from hw.conv_layer import ConvLayer


async def read_output(ctx, dut, cfg, shape):
    """Read a top level's output buffer back through ``host_rd_*``."""
    c, h, w = shape
    words = -(-c // cfg.pc) * h * w
    banks = [np.zeros(words, np.uint8) for _ in range(cfg.pc)]
    for addr in range(words):
        ctx.set(dut.host_rd_addr, addr)
        await ctx.tick()
        row = ctx.get(dut.host_rd_data)
        for t in range(cfg.pc):
            banks[t][addr] = row[t]
    return unpack_feature_map(banks, shape, cfg)


def run_top(dut, load, writes, cfg, timeout, idle_between_writes=False, ports=None):
    """Drive a top level with host ports: each (enable, rows, fields) group of ``writes`` one
    row per clock (optionally with an idle cycle after each), set ``ports``, pulse ``start``,
    wait for ``done``, read the output buffer. Returns {"cycles", "out"}."""
    result = {}

    async def tb(ctx):
        for enable, rows, fields in writes:
            for row in rows:
                for f, v in zip(fields, row):
                    ctx.set(getattr(dut, f), v)
                ctx.set(getattr(dut, enable), 1)
                await ctx.tick()
                if idle_between_writes:
                    ctx.set(getattr(dut, enable), 0)
                    await ctx.tick()
            ctx.set(getattr(dut, enable), 0)
        for k, v in (ports or {}).items():
            ctx.set(getattr(dut, k), v)
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


def parameter_writes(load):
    return [("host_wr_en", load.fm_writes, ("host_wr_bank", "host_wr_addr", "host_wr_data")),
            ("weight_wr_en", load.weight_writes, ("weight_wr_addr", "weight_wr_data")),
            ("codebook_wr_en", load.codebook_writes, ("codebook_wr_addr", "codebook_wr_data")),
            ("bias_wr_en", load.bias_writes, ("bias_wr_addr", "bias_wr_lane", "bias_wr_data"))]


def run_layer(cfg, qc, x, timeout=200_000):
    """A ConvLayer: the layer's writes, its descriptor on the ports, start, the output."""
    dut = ConvLayer(cfg)
    load = layer_load(qc, x, cfg)
    return run_top(dut, load, parameter_writes(load), cfg, timeout,
                   ports=load.descriptor.ports(cfg)), load


def run_fire(cfg, layers, x, timeout=400_000, idle_between_writes=False):
    """Drive a hw.fire.FireUnit: load (hw.compiler.fire_load), start once, read the concat."""
    from hw.compiler import fire_load
    from hw.fire import FireUnit

    dut = FireUnit(cfg)
    load = fire_load(*layers, x, cfg)
    writes = parameter_writes(load) + [
        ("desc_wr_en", load.descriptor_words(cfg), ("desc_wr_addr", "desc_wr_data"))]
    return run_top(dut, load, writes, cfg, timeout, idle_between_writes), load


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
