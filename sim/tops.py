"""Bench-only top levels: units that have no top of their own yet, side by side, so one
Verilator build tests them all."""

from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hw.bypass import BypassAddUnit
from hw.config import AcceleratorConfig
from hw.pool import GlobalSumUnit, MaxPoolUnit

__all__ = ["StreamUnits", "SDRAMTop", "DMATop"]


class StreamUnits(wiring.Component):
    """MaxPoolUnit (``mp_*``), GlobalSumUnit (``gs_*``) and BypassAddUnit (``ba_*``), each with
    its stream ports flattened to ``<prefix>_<stream>_{valid,ready,payload}``."""

    UNITS = {"mp": MaxPoolUnit, "gs": GlobalSumUnit, "ba": BypassAddUnit}

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.units = {p: cls(cfg) for p, cls in self.UNITS.items()}
        members = {}
        for prefix, unit in self.units.items():
            for name, member in unit.signature.members.items():
                if member.is_port:
                    members[f"{prefix}_{name}"] = member
                else:   # a stream: flatten (an In member's signature is already flipped)
                    inner = member.signature.members
                    for field in ("valid", "ready", "payload"):
                        members[f"{prefix}_{name}_{field}"] = inner[field].flow(inner[field].shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for prefix, unit in self.units.items():
            m.submodules[prefix] = unit
            for name, member in unit.signature.members.items():
                if member.is_port:
                    outer = getattr(self, f"{prefix}_{name}")
                    inner = getattr(unit, name)
                    m.d.comb += (inner.eq(outer) if member.flow == In else outer.eq(inner))
                    continue
                port = getattr(unit, name)
                for field in ("valid", "ready", "payload"):
                    outer = getattr(self, f"{prefix}_{name}_{field}")
                    inner = getattr(port, field)
                    into_unit = (member.flow == In) == (field != "ready")
                    m.d.comb += (inner.eq(outer) if into_unit else outer.eq(inner))
        return m


class SDRAMTop(wiring.Component):
    """The SDRAM controller behind one register on every pin (hw.sdram.PinRegisters, what the
    board's I/O registers do): its native port (``cmd``, ``wdata``, ``rdata``, ``ready``) and
    the chip's pins (``chip``), for sim/board/sdram_bench.cpp."""

    def __init__(self, timings):
        from hw.sdram import PinRegisters, SDRAMController
        self.controller = SDRAMController(timings)
        self.registers = PinRegisters()
        members = dict(self.controller.signature.members)
        members["chip"] = members.pop("pins")
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.controller = ctl = self.controller
        m.submodules.registers = regs = self.registers
        for name in ("cmd", "wdata"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(ctl, name))
        wiring.connect(m, ctl.rdata, wiring.flipped(self.rdata))
        wiring.connect(m, ctl.pins, regs.core)
        wiring.connect(m, regs.chip, wiring.flipped(self.chip))
        m.d.comb += self.ready.eq(ctl.ready)
        return m


class DMATop(wiring.Component):
    """hw.dma.FeatureDMA between a FeatureBuffer and the SDRAM controller (behind its pin
    registers), with host ports on the buffer (``host_*``: one word of every bank at once; the
    DMA has the buffer while it is busy and for its last write), for
    sim/board/dma_bench.cpp."""

    def __init__(self, cfg, timings, depth: int = 4096):
        from amaranth.lib.wiring import Out

        from hw.config import address_bits
        from hw.dma import FeatureDMA
        from hw.layout import pixel_layout
        from hw.sdram import PinRegisters, SDRAMController
        self.cfg, self.depth = cfg, depth
        bits = address_bits(depth)
        self.controller = SDRAMController(timings)
        self.registers = PinRegisters()
        self.dma = FeatureDMA(cfg, bits)
        members = {name: m for name, m in self.dma.signature.members.items()
                   if name not in ("sdram_cmd", "sdram_wdata", "sdram_rdata")
                   and not name.startswith("buf_")}
        members.update({"ready": Out(1), "sdram_idle": Out(1),
                        "chip": self.controller.signature.members["pins"],
                        "host_addr": In(bits), "host_wr_data": In(pixel_layout(cfg)),
                        "host_wr_en": In(1), "host_rd_data": Out(pixel_layout(cfg))})
        super().__init__(members)

    def elaborate(self, platform):
        from hw.conv_layer import FeatureBuffer
        m = Module()
        m.submodules.controller = ctl = self.controller
        m.submodules.registers = regs = self.registers
        m.submodules.dma = dma = self.dma
        m.submodules.buffer = buf = FeatureBuffer(self.cfg, depth=self.depth)
        for name, member in self.signature.members.items():
            if hasattr(dma, name) and name not in ("busy", "done"):
                m.d.comb += getattr(dma, name).eq(getattr(self, name))
        m.d.comb += [self.busy.eq(dma.busy), self.done.eq(dma.done), self.ready.eq(ctl.ready),
                     self.sdram_idle.eq(ctl.idle)]
        wiring.connect(m, dma.sdram_cmd, ctl.cmd)
        wiring.connect(m, dma.sdram_wdata, ctl.wdata)
        wiring.connect(m, ctl.rdata, dma.sdram_rdata)
        wiring.connect(m, ctl.pins, regs.core)
        wiring.connect(m, regs.chip, wiring.flipped(self.chip))
        pc = self.cfg.pc
        m.d.comb += [dma.buf_rd_data.eq(buf.rd_data), self.host_rd_data.eq(buf.rd_data)]
        with m.If(dma.busy | dma.buf_wr_en):        # (a load's last write lands after busy)
            m.d.comb += [buf.rd_addr.eq(dma.buf_rd_addr), buf.wr_data.eq(dma.buf_wr_data),
                         buf.wr_en.eq(Mux(dma.buf_wr_en, (1 << pc) - 1, 0))]
            m.d.comb += [buf.wr_addr[t].eq(dma.buf_wr_addr) for t in range(pc)]
        with m.Else():
            m.d.comb += [buf.rd_addr.eq(self.host_addr), buf.wr_data.eq(self.host_wr_data),
                         buf.wr_en.eq(Mux(self.host_wr_en, (1 << pc) - 1, 0))]
            m.d.comb += [buf.wr_addr[t].eq(self.host_addr) for t in range(pc)]
        return m


# A faster baud in simulation: the same PHY, fewer cycles a bit.
UART_BENCH_DIVISOR = 16


class UARTPair(wiring.Component):
    """hw/uart.py's receiver (``rx`` line -> ``rx_o`` bytes, its error counts) and transmitter
    (``tx_i`` bytes -> ``tx`` line), side by side at UART_BENCH_DIVISOR cycles a bit, for the
    cocotb bench sim/test_uart.py."""

    def __init__(self, cfg=None):
        from amaranth.lib import stream
        from amaranth.lib.wiring import Out

        from hw.uart import UARTReceiver, UARTTransmitter
        self.receiver = UARTReceiver(UART_BENCH_DIVISOR)
        self.transmitter = UARTTransmitter(UART_BENCH_DIVISOR)
        super().__init__({"rx": In(1, init=1), "rx_o": Out(stream.Signature(8)),
                          "framing_errors": Out(16), "overruns": Out(16),
                          "tx_i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = rx = self.receiver
        m.submodules.transmitter = tx = self.transmitter
        m.d.comb += [rx.rx.eq(self.rx), self.framing_errors.eq(rx.framing_errors),
                     self.overruns.eq(rx.overruns), self.tx.eq(tx.tx)]
        wiring.connect(m, rx.o, wiring.flipped(self.rx_o))
        wiring.connect(m, wiring.flipped(self.tx_i), tx.i)
        return m
