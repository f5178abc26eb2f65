"""The registered multiplier (hw/dsp.py): the product two cycles after its operands, edges of
signed and unsigned operands; for synthesis, one MULT18X18D with its own registers."""

import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.back import rtlil
from amaranth.sim import Simulator

from hw.dsp import RegisteredMultiplier
from hw.timing import MULTIPLIER_LATENCY


@pytest.mark.parametrize("a_shape,b_shape", [(signed(12), unsigned(8)), (signed(16), unsigned(16)),
                                             (unsigned(16), unsigned(16))])
def test_product_arrives_two_cycles_later(a_shape, b_shape):
    dut = RegisteredMultiplier(a_shape, b_shape)
    lo_a = -(1 << (a_shape.width - 1)) if a_shape.signed else 0
    hi_a = (1 << (a_shape.width - (1 if a_shape.signed else 0))) - 1
    hi_b = (1 << b_shape.width) - 1
    rng = np.random.default_rng(a_shape.width)
    pairs = [(lo_a, hi_b), (hi_a, hi_b), (lo_a, 0), (0, hi_b), (-1 if a_shape.signed else 1, 1)]
    pairs += [(int(rng.integers(lo_a, hi_a + 1)), int(rng.integers(0, hi_b + 1)))
              for _ in range(40)]
    got = []

    async def bench(ctx):
        for a, b in pairs + [(0, 0)] * MULTIPLIER_LATENCY:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # The value read after the tick that follows operand i + 1 is operand i's product.
    assert got[MULTIPLIER_LATENCY - 1:MULTIPLIER_LATENCY - 1 + len(pairs)] == [a * b for a, b in pairs]


def test_synthesis_uses_the_hard_multiplier_with_its_registers():
    text = rtlil.convert(RegisteredMultiplier(signed(12), unsigned(8), primitive=True))
    assert "MULT18X18D" in text
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert f'parameter \\{reg} "CLK0"' in text
