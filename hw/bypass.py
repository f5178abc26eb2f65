"""The bypass add on pixel streams: y = clamp((a*Ma + b*Mb + 2**(S-1)) >> S, 0, 255).

golden/reference_int.py ``bypass_add``, bit for bit. ``a`` is the Fire module's output (PC
unsigned bytes per beat); ``b`` is the bypassed tensor: PC unsigned bytes (simple bypass) or,
for a complex bypass, the 1x1 convolution's raw accumulators, signed ACC_BITS wide; the port is
ACC_BITS signed lanes either way. The two input streams are joined: a beat is taken from both
at once. Two stages (multiply; add, round, shift, clamp): latency ``hw.timing.ADD_LATENCY``,
one beat per cycle.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .layout import pixel_layout

__all__ = ["BypassAddUnit"]


class BypassAddUnit(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        wide = data.ArrayLayout(signed(cfg.acc_bits), cfg.pc)
        super().__init__({
            "mult_a": In(cfg.mult_bits), "mult_b": In(cfg.mult_bits), "shift": In(cfg.shift_bits),
            "a": In(stream.Signature(pixel_layout(cfg))),
            "b": In(stream.Signature(wide)),
            "o": Out(stream.Signature(pixel_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pc = cfg.pc
        advance = Signal()
        both = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready),
                     both.eq(self.a.valid & self.b.valid),
                     self.a.ready.eq(advance & self.b.valid),
                     self.b.ready.eq(advance & self.a.valid)]
        # Stage 1: the two products per lane.
        width = cfg.acc_bits + cfg.mult_bits + 1
        p_valid = Signal()
        pa = [Signal(signed(width), name=f"pa{t}") for t in range(pc)]
        pb = [Signal(signed(width), name=f"pb{t}") for t in range(pc)]
        with m.If(advance):
            m.d.sync += p_valid.eq(both)
            for t in range(pc):
                m.d.sync += [pa[t].eq(self.a.payload[t] * self.mult_a),
                             pb[t].eq(self.b.payload[t] * self.mult_b)]
        # Stage 2: sum, round half up, arithmetic shift, clamp to [0, 255] (ReLU).
        half = Signal(width)
        m.d.comb += half.eq((Const(1, width) << self.shift) >> 1)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(p_valid)
            for t in range(pc):
                y = Signal(signed(width + 1), name=f"y{t}")
                m.d.comb += y.eq((pa[t] + pb[t] + half) >> self.shift)
                top = (1 << cfg.act_bits) - 1
                m.d.sync += self.o.payload[t].eq(Mux(y < 0, 0, Mux(y > top, top,
                                                                    y[:cfg.act_bits])))
        return m
