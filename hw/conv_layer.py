"""One convolution layer in hardware: the engine between an input and an output feature-map
buffer, with host ports to load the input and parameters and read the output back.

This is the unit the layer benches test (Amaranth simulator in tests/, Verilator and Icarus in
sim/); the Fire unit (hw/fire.py) composes the same engine with three buffers.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig, address_bits
from .conv_engine import ConvEngine, parameter_signatures
from .layout import descriptor_layout, pixel_layout
from .timing import FM_READ_LATENCY

__all__ = ["FeatureBuffer", "ConvLayer", "host_buffer_ports", "connect_parameters"]


def connect_parameters(m: Module, top: wiring.Component, engine: ConvEngine) -> None:
    """Pass a top level's parameter write ports (``parameter_signatures``) to its engine."""
    for name in parameter_signatures(engine.cfg):
        wiring.connect(m, wiring.flipped(getattr(top, name)), getattr(engine, name))


class FeatureBuffer(wiring.Component):
    """PC banks of ``depth`` bytes (default ``fm_depth``). Port A (engine or host): one
    synchronous read of the same word from every bank, its data ``hw.timing.FM_READ_LATENCY``
    cycles after the address (the address registered per bank, each bank's output registered
    beside it). Port B: per-bank
    writes."""

    def __init__(self, cfg: AcceleratorConfig, depth: int | None = None):
        self.cfg = cfg
        self.depth = depth or cfg.fm_depth
        fa = address_bits(self.depth)
        super().__init__({
            "rd_addr": In(fa), "rd_data": Out(pixel_layout(cfg)),
            "wr_addr": In(data.ArrayLayout(fa, cfg.pc)),
            "wr_data": In(pixel_layout(cfg)),
            "wr_en": In(cfg.pc),
        })

    def elaborate(self, platform):
        m = Module()
        for t in range(self.cfg.pc):
            mem = memory.Memory(shape=self.cfg.act_bits, depth=self.depth, init=[])
            m.submodules[f"bank{t}"] = mem
            rd = mem.read_port()
            wr = mem.write_port()
            # The read address registered, a copy per bank: whatever selects it (the runner
            # multiplexes the engine's, the pooling's, the DMA's and the host's) gets a cycle
            # to itself, and the route across the chip to the bank's block RAMs another.
            addr = Signal.like(self.rd_addr, name=f"bank{t}_rd_addr", reset_less=True)
            m.d.sync += addr.eq(self.rd_addr)
            m.d.comb += [rd.addr.eq(addr), wr.addr.eq(self.wr_addr[t]),
                         wr.data.eq(self.wr_data[t]), wr.en.eq(self.wr_en[t])]
            # The block RAM's output pipeline: FM_READ_LATENCY - 2 registers (no reset, so no
            # multiplexer in front of them), the first placed by the memory's outputs.
            out = rd.data
            for k in range(FM_READ_LATENCY - 2):
                q = Signal.like(out, name=f"bank{t}_q{k}", reset_less=True)
                m.d.sync += q.eq(out)
                out = q
            m.d.comb += self.rd_data[t].eq(out)
        return m


def host_buffer_ports(cfg: AcceleratorConfig, addr_bits: int) -> dict:
    """The host's ports on a top level: write the input buffer one bank at a time, read the
    output buffer every bank at once (data ``hw.timing.FM_READ_LATENCY`` cycles after the
    address)."""
    return {"host_wr_bank": In(address_bits(cfg.pc)), "host_wr_addr": In(addr_bits),
            "host_wr_data": In(cfg.act_bits), "host_wr_en": In(1),
            "host_rd_addr": In(addr_bits),
            "host_rd_data": Out(pixel_layout(cfg))}


class ConvLayer(wiring.Component):
    """Host view: write input bytes (``host_wr_*``, one bank at a time), load parameters (the
    engine's write ports, same names) and the descriptor (``desc``), pulse ``start``, wait for
    ``done``, read output words (``host_rd_addr`` -> ``host_rd_data`` FM_READ_LATENCY cycles
    later, every bank at once)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.engine = ConvEngine(cfg)
        fa = self.engine.fm_addr_bits
        members = {"desc": In(descriptor_layout(cfg)), "start": In(1), **parameter_signatures(cfg),
                   "busy": Out(1), "done": Out(1), "cycles": Out(32),
                   **host_buffer_ports(cfg, fa)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.engine = eng = self.engine
        m.submodules.fm_in = fm_in = FeatureBuffer(cfg)
        m.submodules.fm_out = fm_out = FeatureBuffer(cfg)
        connect_parameters(m, self, eng)
        m.d.comb += [eng.desc.eq(self.desc), eng.start.eq(self.start), self.busy.eq(eng.busy),
                     self.done.eq(eng.done), self.cycles.eq(eng.cycles)]
        # Input buffer: the engine reads; the host writes one bank at a time.
        m.d.comb += [fm_in.rd_addr.eq(eng.fm_rd_addr), eng.fm_rd_data.eq(fm_in.rd_data)]
        for t in range(cfg.pc):
            m.d.comb += [fm_in.wr_addr[t].eq(self.host_wr_addr),
                         fm_in.wr_data[t].eq(self.host_wr_data),
                         fm_in.wr_en[t].eq(self.host_wr_en & (self.host_wr_bank == t))]
        # Output buffer: the engine writes; the host reads.
        m.d.comb += [fm_out.wr_addr.eq(eng.fm_wr_addr), fm_out.wr_data.eq(eng.fm_wr_data),
                     fm_out.wr_en.eq(eng.fm_wr_en), fm_out.rd_addr.eq(self.host_rd_addr),
                     self.host_rd_data.eq(fm_out.rd_data)]
        return m
