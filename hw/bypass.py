"""The bypass add on pixel streams: y = clamp((a*Ma + b*Mb + 2**(S-1)) >> S, 0, 255).

golden/reference_int.py ``bypass_add``, bit for bit. ``a`` is the Fire module's output (PC
unsigned bytes per beat); ``b`` is the bypassed tensor: PC unsigned bytes (simple bypass) or,
for a complex bypass, the 1x1 convolution's raw accumulators, signed ACC_BITS wide; the port is
ACC_BITS signed lanes by default (``b_bits`` narrows it to unsigned bytes for a unit that
only ever adds maps: the device's ADD op). The two input streams are joined: a beat is taken
from both at once. Four stages (the two products; their sum and the rounding constant; the
shift; the clamp), all moving together when the output is free or taken: latency
``hw.timing.ADD_LATENCY``, one beat per cycle.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .layout import pixel_layout

__all__ = ["BypassAddUnit"]


class BypassAddUnit(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, b_bits: int | None = None):
        self.cfg = cfg
        self.b_shape = unsigned(b_bits) if b_bits else signed(cfg.acc_bits)
        super().__init__({
            "mult_a": In(cfg.mult_bits), "mult_b": In(cfg.mult_bits), "shift": In(cfg.shift_bits),
            "a": In(stream.Signature(pixel_layout(cfg))),
            "b": In(stream.Signature(data.ArrayLayout(self.b_shape, cfg.pc))),
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
        width = cfg.acc_bits + cfg.mult_bits + 2
        valid = [Signal(name=f"add_valid{k}") for k in range(3)]
        # Stage 1: the two products per lane.
        pa = [Signal(signed(width), name=f"pa{t}") for t in range(pc)]
        pb = [Signal(signed(width), name=f"pb{t}") for t in range(pc)]
        # Stage 2: their sum and the rounding constant (held with the layer's shift).
        total = [Signal(signed(width), name=f"total{t}") for t in range(pc)]
        # Stage 3: the arithmetic shift. Stage 4: the clamp to [0, 255] (ReLU), into ``o``.
        shifted = [Signal(signed(width), name=f"shifted{t}") for t in range(pc)]
        half = Signal(width)
        m.d.sync += half.eq((Const(1, width) << self.shift) >> 1)
        top = (1 << cfg.act_bits) - 1
        with m.If(advance):
            m.d.sync += [valid[0].eq(both), valid[1].eq(valid[0]), valid[2].eq(valid[1]),
                         self.o.valid.eq(valid[2])]
            for t in range(pc):
                y = shifted[t]
                m.d.sync += [pa[t].eq(self.a.payload[t] * self.mult_a),
                             pb[t].eq(self.b.payload[t] * self.mult_b),
                             total[t].eq(pa[t] + pb[t] + half),
                             shifted[t].eq(total[t] >> self.shift),
                             self.o.payload[t].eq(Mux(y < 0, 0, Mux(y > top, top,
                                                                     y[:cfg.act_bits])))]
        return m
