"""cocotb bench: the generated Verilog of hw.conv_layer.ConvLayer against the golden model.

A testbench class owns the clock and reset, a driver that performs a layer's host writes
(hw.compiler.layer_load), a monitor that reads the output buffer back, and a scoreboard that
compares every byte with golden/reference_int.py, naming layer, channel, row and column.

Environment: SQZ_SIM_CASES (random cases, default 1000), SQZ_SIM_SEED (default 20261122),
SQZ_MAC_UNITS (the build's MAC count).
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

from golden import reference_int
from hw.compiler import expected_cycles, layer_load, unpack_feature_map
from sim.cases import random_case
from sim.sim_config import sim_config

CFG = sim_config()
SEED = int(os.environ.get("SQZ_SIM_SEED", "20261122"))
SHARED = Path(__file__).resolve().parents[2] / "shared"


class ConvLayerTB:
    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        d = self.dut
        for name in ("start", "host_wr_en", "weight_wr_en", "codebook_wr_en", "bias_wr_en"):
            getattr(d, name).value = 0
        d.rst.value = 1
        for _ in range(2):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    async def _write(self, enable: str, rows, fields):
        d = self.dut
        getattr(d, enable).value = 1
        for row in rows:
            for f, v in zip(fields, row):
                getattr(d, f).value = v
            await RisingEdge(d.clk)
        getattr(d, enable).value = 0

    async def drive(self, load):
        """Driver: the input buffer (every byte of the layer's input, zeros included, so no
        earlier case's data survives), the parameter memories, then the descriptor."""
        d = self.dut
        await self._write("host_wr_en", load.fm_writes,
                          ("host_wr_bank", "host_wr_addr", "host_wr_data"))
        await self._write("weight_wr_en", load.weight_writes, ("weight_wr_addr", "weight_wr_data"))
        await self._write("codebook_wr_en", load.codebook_writes,
                          ("codebook_wr_addr", "codebook_wr_data"))
        await self._write("bias_wr_en", load.bias_writes,
                          ("bias_wr_addr", "bias_wr_lane", "bias_wr_data"))
        for k, v in load.descriptor.ports(CFG).items():
            getattr(d, k).value = v

    async def run(self, timeout_cycles: int) -> int:
        d = self.dut
        d.start.value = 1
        await RisingEdge(d.clk)
        d.start.value = 0
        deadline = Timer(timeout_cycles * 10, unit="ns")
        while True:
            fired = await First(RisingEdge(d.done), deadline)
            assert fired is not deadline, f"engine did not finish within {timeout_cycles} cycles"
            await ReadOnly()
            if int(d.done.value) == 1:
                break
        cycles = int(d.cycles.value)
        await RisingEdge(d.clk)
        return cycles

    async def monitor(self, shape) -> np.ndarray:
        """Read the output buffer back: the data of address a appears one edge later."""
        d = self.dut
        c, h, w = shape
        words = -(-c // CFG.pc) * h * w
        banks = [np.zeros(words, np.uint8) for _ in range(CFG.pc)]
        for a in range(words + 1):
            d.host_rd_addr.value = min(a, words - 1)
            await RisingEdge(d.clk)
            if a:
                row = int(d.host_rd_data.value)
                for t in range(CFG.pc):
                    banks[t][a - 1] = (row >> (8 * t)) & 0xFF
        return unpack_feature_map(banks, shape, CFG)


def scoreboard(layer: str, got: np.ndarray, want: np.ndarray) -> None:
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        o, y, x = bad[0]
        raise AssertionError(f"layer {layer}: {len(bad)} bytes differ; first at channel {o}, "
                             f"row {y}, column {x}: hardware {got[o, y, x]}, golden {want[o, y, x]}")


async def run_case(tb, qc, x, layer):
    import time
    load = layer_load(qc, x, CFG)
    t0 = time.perf_counter()
    await tb.drive(load)
    t1 = time.perf_counter()
    cycles = await tb.run(timeout_cycles=4 * expected_cycles(load.descriptor, CFG) + 100)
    t2 = time.perf_counter()
    got = await tb.monitor(load.out_shape)
    t3 = time.perf_counter()
    tb.dut._log.debug(f"{layer}: load {len(load.fm_writes)}+{len(load.weight_writes)}+"
                     f"{len(load.codebook_writes)} writes {t1 - t0:.2f}s, run {cycles} cycles "
                     f"{t2 - t1:.2f}s, read {t3 - t2:.2f}s")
    scoreboard(layer, got, reference_int.conv(x, qc))
    assert cycles == expected_cycles(load.descriptor, CFG), (
        f"layer {layer}: {cycles} cycles, the cycle model says "
        f"{expected_cycles(load.descriptor, CFG)}")
    return cycles


@cocotb.test()
async def random_layers(dut):
    """Seeded random layer configurations: channels, sizes, kernel/stride/padding, index
    widths, sparsity, all-zero/all-255 inputs, extreme and all-zero weights."""
    tb = ConvLayerTB(dut)
    await tb.reset()
    cases = int(os.environ.get("SQZ_SIM_CASES", "1000"))
    dut._log.info(f"{cases} random cases, seed {SEED}, {CFG.mac_units} MAC units")
    rng = np.random.default_rng(SEED)
    for case in range(cases):
        qc, x = random_case(rng, CFG.value_bits)
        s = qc.spec
        name = (f"case {case} (seed {SEED}): {s.in_channels}->{s.out_channels} "
                f"k{s.kernel}/s{s.stride}/p{s.pad} on {x.shape[1]}x{x.shape[2]}")
        await run_case(tb, qc, x, name)


@cocotb.test()
async def real_fire_modules(dut):
    """All eight Fire modules of the authors' Deep Compression SqueezeNet, 8-bit, on 5x5 crops
    of real activations (a corner crop, with borders, and an interior one): squeeze, then the
    two expands on the hardware's own squeeze output."""
    net_file = SHARED / "models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net"
    if not net_file.exists():
        if os.environ.get("CI") == "true":
            raise AssertionError(f"{net_file} is missing (see ../shared/README.md)")
        dut._log.warning(f"skipped: {net_file} not found (see ../shared/README.md)")
        return
    from golden.network import Fire
    from sim.cases import authors_model_on_a_photo
    model, q, acts = authors_model_on_a_photo(SHARED)
    tb = ConvLayerTB(dut)
    await tb.reset()
    for i, node in enumerate(model.network.nodes):
        if not isinstance(node, Fire):
            continue
        src = acts[model.network.node_inputs(i)[0]]
        h, w = src.shape[1:]
        for y0, x0 in ((0, 0), (h // 2 - 2, w // 2 - 2)):
            crop = np.ascontiguousarray(src[:, y0:y0 + 5, x0:x0 + 5])
            sq, e1, e3 = (q.convs[c.name] for c in node.convs())
            await run_case(tb, sq, crop, f"{sq.name} crop ({y0},{x0})")
            squeezed = reference_int.conv(crop, sq)
            for qc in (e1, e3):
                await run_case(tb, qc, squeezed, f"{qc.name} crop ({y0},{x0})")
        dut._log.info(f"{node.name}: bit-exact on both crops")
