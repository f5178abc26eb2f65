"""cocotb bench: the generated Verilog of hw.conv_layer.ConvLayer against the golden model
(single layers; the Fire modules run through hw.fire.FireUnit in sim/test_fire.py).

A testbench class owns the clock and reset, a driver that performs a layer's host writes
(sim.loads.layer_load), a monitor that reads the output buffer back, and a scoreboard that
compares every byte with golden/reference_int.py, naming layer, channel, row and column.

Environment: SQZ_SIM_CASES (random cases, default 1000), SQZ_SIM_SEED (default 20261122),
SQZ_MAC_UNITS (the build's MAC count).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from golden import reference_int
from hw.timing import engine_cycles
from sim.loads import layer_load
from sim.cases import random_case
from sim.sim_config import sim_config
from sim.tb import HostTB, scoreboard

CFG = sim_config()
SEED = int(os.environ.get("SQZ_SIM_SEED", "20261122"))


PARAMETER_ENABLES = ("host_wr_en", "weight_wr.en", "codebook_wr.en", "bias_wr.en")


class ConvLayerTB(HostTB):
    def __init__(self, dut):
        super().__init__(dut, CFG, PARAMETER_ENABLES)

    async def drive(self, load):
        """Driver: the input buffer (every byte of the layer's input, zeros included, so no
        earlier case's data survives), the parameter memories, then the descriptor."""
        await self.write_parameters(load)
        self.dut.desc.value = load.descriptor_words(CFG)[0]


async def run_case(tb, qc, x, layer):
    import time
    load = layer_load(qc, x, CFG)
    t0 = time.perf_counter()
    await tb.drive(load)
    t1 = time.perf_counter()
    cycles = await tb.run(timeout_cycles=4 * engine_cycles(load.descriptor, CFG) + 100)
    t2 = time.perf_counter()
    got = await tb.monitor(load.out_shape)
    t3 = time.perf_counter()
    writes = "+".join(str(len(rows)) for _, _, rows, _ in load.writes)
    tb.dut._log.debug(f"{layer}: load {writes} writes {t1 - t0:.2f}s, run {cycles} cycles "
                      f"{t2 - t1:.2f}s, read {t3 - t2:.2f}s")
    scoreboard(layer, got, reference_int.conv(x, qc))
    assert cycles == engine_cycles(load.descriptor, CFG), (
        f"layer {layer}: {cycles} cycles, the cycle model says "
        f"{engine_cycles(load.descriptor, CFG)}")
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
                f"k{s.kh}x{s.kw}/s{s.stride}/p{s.ph},{s.pw} on {x.shape[1]}x{x.shape[2]}")
        await run_case(tb, qc, x, name)
