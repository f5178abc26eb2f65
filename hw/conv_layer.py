"""One convolution layer in hardware: the engine between an input and an output feature-map
buffer, with host ports to load the input and parameters and read the output back.

This is the unit the layer benches test (Amaranth simulator in tests/, Verilator and Icarus in
sim/); the Fire unit (hw/fire.py) composes the same engine with three buffers.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .conv_engine import ConvEngine

__all__ = ["FeatureBuffer", "ConvLayer", "ENGINE_INPUTS", "host_buffer_ports"]

# Engine ports that the top level passes straight through from the host.
ENGINE_INPUTS = ("in_channels", "out_channels", "in_h", "in_w", "out_h", "out_w", "kernel",
                 "stride", "pad", "mult", "shift", "weight_base", "codebook_table", "bias_base",
                 "out_channel_base", "cgroups", "ogroups", "steps", "pixel_origin",
                 "step_row", "step_group", "step_oy", "out_plane", "out_base_word",
                 "out_group_step", "start",
                 "weight_wr_addr", "weight_wr_data", "weight_wr_en",
                 "codebook_wr_addr", "codebook_wr_data", "codebook_wr_en",
                 "bias_wr_addr", "bias_wr_lane", "bias_wr_data", "bias_wr_en")


class FeatureBuffer(wiring.Component):
    """PC banks of ``depth`` bytes (default ``fm_depth``). Port A (engine or host): one synchronous read of the same
    word from every bank. Port B: per-bank writes. Reads return data the cycle after the
    address."""

    def __init__(self, cfg: AcceleratorConfig, depth: int | None = None):
        self.cfg = cfg
        self.depth = depth or cfg.fm_depth
        fa = max(1, (self.depth - 1).bit_length())
        super().__init__({
            "rd_addr": In(fa), "rd_data": Out(data.ArrayLayout(cfg.act_bits, cfg.pc)),
            "wr_addr": In(data.ArrayLayout(fa, cfg.pc)),
            "wr_data": In(data.ArrayLayout(cfg.act_bits, cfg.pc)),
            "wr_en": In(cfg.pc),
        })

    def elaborate(self, platform):
        m = Module()
        for t in range(self.cfg.pc):
            mem = memory.Memory(shape=self.cfg.act_bits, depth=self.depth, init=[])
            m.submodules[f"bank{t}"] = mem
            rd = mem.read_port()
            wr = mem.write_port()
            m.d.comb += [rd.addr.eq(self.rd_addr), self.rd_data[t].eq(rd.data),
                         wr.addr.eq(self.wr_addr[t]), wr.data.eq(self.wr_data[t]),
                         wr.en.eq(self.wr_en[t])]
        return m


def host_buffer_ports(cfg: AcceleratorConfig, addr_bits: int) -> dict:
    """The host's ports on a top level: write the input buffer one bank at a time, read the
    output buffer every bank at once (data the cycle after the address)."""
    return {"host_wr_bank": In(max(1, (cfg.pc - 1).bit_length())), "host_wr_addr": In(addr_bits),
            "host_wr_data": In(cfg.act_bits), "host_wr_en": In(1),
            "host_rd_addr": In(addr_bits),
            "host_rd_data": Out(data.ArrayLayout(cfg.act_bits, cfg.pc))}


class ConvLayer(wiring.Component):
    """Host view: write input bytes (``host_wr_*``, one bank at a time), load parameters and the
    descriptor (the engine's ports, same names), pulse ``start``, wait for ``done``, read output
    words (``host_rd_addr`` -> ``host_rd_data`` next cycle, every bank at once)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.engine = ConvEngine(cfg)
        fa = self.engine.fm_addr_bits
        members = {name: In(self.engine.signature.members[name].shape) for name in ENGINE_INPUTS}
        members.update({"busy": Out(1), "done": Out(1), "cycles": Out(32),
                        **host_buffer_ports(cfg, fa)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.engine = eng = self.engine
        m.submodules.fm_in = fm_in = FeatureBuffer(cfg)
        m.submodules.fm_out = fm_out = FeatureBuffer(cfg)
        for name in ENGINE_INPUTS:
            m.d.comb += getattr(eng, name).eq(getattr(self, name))
        m.d.comb += [self.busy.eq(eng.busy), self.done.eq(eng.done), self.cycles.eq(eng.cycles)]
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
