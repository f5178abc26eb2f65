"""Bench-only top levels: units that have no top of their own yet, side by side, so one
Verilator build tests them all."""

from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hw.bypass import BypassAddUnit
from hw.config import AcceleratorConfig
from hw.pool import GlobalSumUnit, MaxPoolUnit

__all__ = ["StreamUnits", "SDRAMTop"]


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
