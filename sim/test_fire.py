"""cocotb bench: the generated Verilog of hw.fire.FireUnit (squeeze kept on chip, both expands,
concat) against the golden model, on seeded random Fire modules and on all eight real Fire
modules of the authors' Deep Compression SqueezeNet.

Environment: SQZ_SIM_FIRE_CASES (random Fire modules, default 100), SQZ_SIM_SEED,
SQZ_MAC_UNITS.
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np

from hw.timing import fire_cycles
from sim.loads import fire_load
from sim.cases import fire_reference, random_fire
from sim.sim_config import sim_config
from sim.tb import HostTB, scoreboard

CFG = sim_config()
SEED = int(os.environ.get("SQZ_SIM_SEED", "20261122"))
SHARED = Path(__file__).resolve().parents[2] / "shared"
ENABLES = ("host_wr_en", "weight_wr.en", "codebook_wr.en", "bias_wr.en", "desc_wr_en")


class FireTB(HostTB):
    def __init__(self, dut):
        super().__init__(dut, CFG, ENABLES)

    async def drive(self, load):
        await self.write_parameters(load)            # the descriptors are its last group


async def run_fire(tb, layers, x, name):
    load = fire_load(*layers, x, CFG, name)
    await tb.drive(load)
    expected = fire_cycles(load.descriptors, CFG)
    cycles = await tb.run(timeout_cycles=4 * expected + 100)
    got = await tb.monitor(load.out_shape)
    scoreboard(name, got, fire_reference(layers, x))
    assert cycles == expected, f"{name}: {cycles} cycles, the cycle model says {expected}"
    return cycles


@cocotb.test()
async def random_fire_modules(dut):
    """Seeded random Fire modules: channel counts, sizes, index widths, sparsity."""
    tb = FireTB(dut)
    await tb.reset()
    cases = int(os.environ.get("SQZ_SIM_FIRE_CASES", "100"))
    dut._log.info(f"{cases} random Fire modules, seed {SEED}, {CFG.mac_units} MAC units")
    rng = np.random.default_rng(SEED + 1)
    for case in range(cases):
        layers, x = random_fire(rng, CFG.value_bits, CFG.pc)
        sq, e1, e3 = (layer.spec.out_channels for layer in layers)
        await run_fire(tb, layers, x, f"fire case {case} (seed {SEED}): {x.shape[0]}->{sq}->"
                                      f"{e1}+{e3} on {x.shape[1]}x{x.shape[2]}")


@cocotb.test()
async def real_fire_modules(dut):
    """All eight Fire modules of the authors' Deep Compression SqueezeNet, 8-bit, each run as
    one unit on 5x5 crops of its real input activations (a corner crop, with borders, and an
    interior one)."""
    net_file = SHARED / "models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net"
    if not net_file.exists():
        if os.environ.get("CI") == "true":
            raise AssertionError(f"{net_file} is missing (see ../shared/README.md)")
        dut._log.warning(f"skipped: {net_file} not found (see ../shared/README.md)")
        return
    from golden.network import Fire
    from sim.cases import authors_model_on_a_photo
    model, q, acts = authors_model_on_a_photo(SHARED)
    tb = FireTB(dut)
    await tb.reset()
    for i, node in enumerate(model.network.nodes):
        if not isinstance(node, Fire):
            continue
        src = acts[model.network.node_inputs(i)[0]]
        h, w = src.shape[1:]
        layers = tuple(q.convs[c.name] for c in node.convs())
        for y0, x0 in ((0, 0), (h // 2 - 2, w // 2 - 2)):
            crop = np.ascontiguousarray(src[:, y0:y0 + 5, x0:x0 + 5])
            await run_fire(tb, layers, crop, f"{node.name} crop ({y0},{x0})")
        dut._log.info(f"{node.name}: bit-exact on both crops")
