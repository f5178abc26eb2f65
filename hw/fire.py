"""The Fire module as one unit: squeeze into an on-chip buffer, then both expands from it.

    fm_in --(pass 0: squeeze 1x1)--> squeeze buffer --(pass 1: expand 1x1)--> fm_out[0:E1]
                                                     --(pass 2: expand 3x3)--> fm_out[E1:E1+E3]

One ConvEngine runs the three passes in turn; the squeeze output never leaves the unit (it is
not written to the feature-map memory), and the two expand passes write their channels into
one output buffer at ``out_channel_base`` 0 and E1, which is the concat. The host loads the
three layers' weights, codebooks (one table per layer) and biases, and three descriptors
(hw.layout.descriptor_layout words), then pulses ``start`` once.

Timing: a pass starts the cycle after the previous pass's ``done``; the unit's ``cycles`` is
the sum of the three engine runs plus ``FIRE_PASS_OVERHEAD`` per pass (the start cycle), and
``done`` is high for one cycle after the third pass (hw.timing.fire_cycles, checked against
the RTL by the tests).
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .conv_engine import ConvEngine, parameter_signatures
from .conv_layer import FeatureBuffer, connect_parameters, host_buffer_ports
from .layout import descriptor_layout

__all__ = ["FireUnit", "PASSES"]

PASSES = ("squeeze", "expand1x1", "expand3x3")


class FireUnit(wiring.Component):
    """Host view: ``host_wr_*`` writes the input buffer (one bank at a time); the parameter
    write ports are the engine's; ``desc_wr_*`` loads descriptor 0..2 (squeeze, expand1x1,
    expand3x3; hw.layout.descriptor_layout words); ``start``/``busy``/``done``/``cycles``;
    ``host_rd_*`` reads the output buffer (every bank at once, data
    hw.timing.FM_READ_LATENCY cycles after the address)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.engine = ConvEngine(cfg)
        self.layout = descriptor_layout(cfg)
        fa = self.engine.fm_addr_bits
        members = dict(parameter_signatures(cfg))
        members.update({
            "desc_wr_addr": In(2), "desc_wr_data": In(self.layout.size), "desc_wr_en": In(1),
            "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32),
            **host_buffer_ports(cfg, fa),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.engine = eng = self.engine
        m.submodules.fm_in = fm_in = FeatureBuffer(cfg)
        m.submodules.squeezed = sq = FeatureBuffer(cfg, depth=cfg.squeeze_depth)
        m.submodules.fm_out = fm_out = FeatureBuffer(cfg)
        connect_parameters(m, self, eng)

        # Three descriptor registers; the current pass's drives the engine while it runs.
        descs = [Signal(self.layout, name=f"desc_{p}") for p in PASSES]
        for i, d in enumerate(descs):
            with m.If(self.desc_wr_en & (self.desc_wr_addr == i)):
                m.d.sync += d.as_value().eq(self.desc_wr_data)
        stage = Signal(range(len(PASSES)))
        current = Signal(self.layout)
        m.d.comb += [current.eq(Array(descs)[stage]), eng.desc.eq(current)]

        # Routing: pass 0 reads fm_in and writes the squeeze buffer; passes 1-2 read the
        # squeeze buffer and write fm_out. Each buffer takes the address bits it has.
        squeezing = Signal()
        m.d.comb += squeezing.eq(stage == 0)
        m.d.comb += [fm_in.rd_addr.eq(eng.fm_rd_addr), sq.rd_addr.eq(eng.fm_rd_addr),
                     eng.fm_rd_data.eq(Mux(squeezing, fm_in.rd_data, sq.rd_data))]
        m.d.comb += [sq.wr_data.eq(eng.fm_wr_data),
                     sq.wr_en.eq(Mux(squeezing, eng.fm_wr_en, 0)),
                     fm_out.wr_addr.eq(eng.fm_wr_addr), fm_out.wr_data.eq(eng.fm_wr_data),
                     fm_out.wr_en.eq(Mux(squeezing, 0, eng.fm_wr_en))]
        for t in range(cfg.pc):
            m.d.comb += [sq.wr_addr[t].eq(eng.fm_wr_addr[t]),
                         fm_in.wr_addr[t].eq(self.host_wr_addr),
                         fm_in.wr_data[t].eq(self.host_wr_data),
                         fm_in.wr_en[t].eq(self.host_wr_en & (self.host_wr_bank == t))]
        m.d.comb += [fm_out.rd_addr.eq(self.host_rd_addr), self.host_rd_data.eq(fm_out.rd_data)]

        # Sequencer.
        cycles = Signal(32)
        done = Signal()
        m.d.comb += [self.cycles.eq(cycles), self.done.eq(done)]
        m.d.sync += done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [stage.eq(0), cycles.eq(0)]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [eng.start.eq(1), self.busy.eq(1)]
                m.d.sync += cycles.eq(cycles + 1)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(eng.done):
                    with m.If(stage == len(PASSES) - 1):
                        m.d.sync += done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += stage.eq(stage + 1)
                        m.next = "START"
        return m
