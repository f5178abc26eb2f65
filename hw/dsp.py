"""A registered multiplier: ``p`` = ``a`` x ``b`` ``hw.timing.MULTIPLIER_LATENCY`` cycles after
the operands (an input register on each operand, an output register on the product),
throughput one per cycle.

With ``primitive`` set (synthesis for the ECP5, ``AcceleratorConfig.dsp_primitives``) it is
one MULT18X18D with its own input and output registers, so neither register sits in the
fabric rows away from the multiplier column: the routes into and out of the hard multiplier
leave the critical path. Otherwise it is the same registers and ``*`` in Amaranth (simulation,
and any other FPGA, whose tools infer their multipliers). Operands are at most 18 bits signed
(an unsigned operand at most 17 bits).
"""

from __future__ import annotations

from amaranth import *
from amaranth.hdl import Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisteredMultiplier"]
_WIDTH = 18


class RegisteredMultiplier(wiring.Component):
    def __init__(self, a_shape, b_shape, primitive: bool = False):
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        for s in (self.a_shape, self.b_shape):
            if s.width + (0 if s.signed else 1) > _WIDTH:
                raise ValueError(f"{s} does not fit an 18x18 signed multiplier")
        self.primitive = primitive
        p_width = self.a_shape.width + self.b_shape.width + 1
        super().__init__({"a": In(self.a_shape), "b": In(self.b_shape),
                          "p": Out(signed(p_width))})

    def elaborate(self, platform):
        m = Module()
        if not self.primitive:
            a_r = Signal(self.a_shape, reset_less=True)
            b_r = Signal(self.b_shape, reset_less=True)
            m.d.sync += [a_r.eq(self.a), b_r.eq(self.b), self.p.eq(a_r * b_r)]
            return m
        # Both operands sign- (or zero-) extended to 18 bits; the product is 36 bits signed.
        a18, b18 = Signal(signed(_WIDTH)), Signal(signed(_WIDTH))
        p36 = Signal(signed(2 * _WIDTH))
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36)]
        ports = {f"i_A{i}": a18[i] for i in range(_WIDTH)}
        ports.update({f"i_B{i}": b18[i] for i in range(_WIDTH)})
        ports.update({f"i_C{i}": 0 for i in range(_WIDTH)})
        ports.update({f"o_P{i}": p36[i] for i in range(2 * _WIDTH)})
        ports.update({"i_SIGNEDA": 1, "i_SIGNEDB": 1, "i_SOURCEA": 0, "i_SOURCEB": 0,
                      "i_CLK0": ClockSignal(), "i_CLK1": 0, "i_CLK2": 0, "i_CLK3": 0,
                      "i_CE0": 1, "i_CE1": 0, "i_CE2": 0, "i_CE3": 0,
                      "i_RST0": 0, "i_RST1": 0, "i_RST2": 0, "i_RST3": 0})
        m.submodules.mult = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_GSR="DISABLED", p_CLK0_DIV="ENABLED", p_SOURCEB_MODE="B_SHIFT",
            p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC", **ports)
        return m
