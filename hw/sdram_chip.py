"""The ULX3S's SDR SDRAM as the controller, the chip model and the cycle model see it: geometry,
datasheet timings, the mode register, the address map and the native port's layouts.

The board carries a 32 MB, 16-bit IS42S16160-class chip; the MT48LC16M16A2 timings (-75 speed
grade, the slower of the two) are safe for it, as LiteX's proven ULX3S target uses. Timings are
in nanoseconds here and turned into cycles once, for a clock (``SDRAMTimings.at``); the
controller (hw/sdram.py), the C++ chip model that checks every rule (sim/board/sdram_model.h,
given these numbers by its harness) and the cycle model read the same ``SDRAMTimings``.
Nothing here is a hardware component.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from amaranth.lib import data

__all__ = ["REFRESH_SLACK", "SDRAMModule", "MT48LC16M16A2", "SDRAMTimings", "cmd_layout", "wdata_layout",
           "mode_register", "split_address"]


@dataclass(frozen=True)
class SDRAMModule:
    """Geometry and the datasheet's minimum times (ns unless named in clocks)."""

    name: str
    banks: int
    rows: int
    cols: int
    dq_bits: int
    t_rp: float            # PRECHARGE to ACTIVE (same bank), and before AUTO REFRESH
    t_rcd: float           # ACTIVE to READ/WRITE
    t_ras: float           # ACTIVE to PRECHARGE
    t_rc: float            # ACTIVE to ACTIVE (same bank), AUTO REFRESH to AUTO REFRESH
    t_rrd: float           # ACTIVE to ACTIVE (another bank)
    t_wr: float            # last write data to PRECHARGE
    t_rfc: float           # AUTO REFRESH to any command
    t_refi: float          # the distributed refresh interval: 64 ms / 8192 rows
    t_power_up: float      # NOP with the clock running before the first command
    t_mrd_clocks: int      # LOAD MODE REGISTER to any command
    t_wr_clocks: int       # tWR's minimum in clocks
    cl_max_mhz: dict       # CAS latency -> the highest clock it is specified for

    @property
    def words(self) -> int:
        return self.banks * self.rows * self.cols

    @property
    def bytes(self) -> int:
        return self.words * self.dq_bits // 8

    @property
    def addr_bits(self) -> int:
        """Word address bits of the whole chip."""
        return (self.words - 1).bit_length()


MT48LC16M16A2 = SDRAMModule(
    name="MT48LC16M16A2-75 (IS42S16160 timings fit)", banks=4, rows=8192, cols=512, dq_bits=16,
    t_rp=20, t_rcd=20, t_ras=44, t_rc=66, t_rrd=15, t_wr=15, t_rfc=66,
    t_refi=64e6 / 8192, t_power_up=100_000, t_mrd_clocks=2, t_wr_clocks=2,
    cl_max_mhz={2: 100, 3: 133})


@dataclass(frozen=True)
class SDRAMTimings:
    """The module's rules in clock cycles at one clock: what the controller waits and what the
    chip model checks. ``refi`` is the longest gap allowed between two AUTO REFRESH commands."""

    clock_mhz: float
    cl: int
    rp: int
    rcd: int
    ras: int
    rc: int
    rrd: int
    wr: int
    rfc: int
    mrd: int
    refi: int
    power_up: int

    @staticmethod
    def at(clock_mhz: float, module: SDRAMModule = MT48LC16M16A2) -> "SDRAMTimings":
        cl = min((c for c, top in module.cl_max_mhz.items() if clock_mhz <= top), default=None)
        if cl is None:
            raise ValueError(f"{module.name} is specified up to "
                             f"{max(module.cl_max_mhz.values())} MHz, not {clock_mhz} MHz")
        period = 1e3 / clock_mhz

        def up(ns):
            return max(1, math.ceil(ns / period - 1e-9))
        return SDRAMTimings(clock_mhz, cl, rp=up(module.t_rp), rcd=up(module.t_rcd),
                            ras=up(module.t_ras), rc=up(module.t_rc), rrd=up(module.t_rrd),
                            wr=max(module.t_wr_clocks, up(module.t_wr)), rfc=up(module.t_rfc),
                            mrd=module.t_mrd_clocks,
                            refi=int(module.t_refi / period), power_up=up(module.t_power_up))

    def as_dict(self) -> dict:
        return asdict(self)

    def harness_args(self) -> list[str]:
        """The rules as the C++ chip model's command-line arguments (one source of truth)."""
        return [f"--{k}={v}" for k, v in self.as_dict().items() if k != "clock_mhz"]


# hw/sdram.py: cycles before the refresh interval runs out at which the controller requests a
# refresh: enough to let the command in flight finish and close every bank (tRAS + tWR + tRP,
# with room). The cycle model's transfer bound counts refreshes at this interval.
REFRESH_SLACK = 32


def mode_register(cl: int) -> int:
    """LOAD MODE REGISTER's address bits: burst length 1, sequential, CAS latency ``cl``,
    standard operation, burst-length write (A9 = 0): every access is one word."""
    if cl not in (2, 3):
        raise ValueError(f"CAS latency {cl}: the chip takes 2 or 3")
    return cl << 4


def split_address(addr: int, module: SDRAMModule = MT48LC16M16A2) -> tuple[int, int, int]:
    """A word address -> (bank, row, column). Columns are the low bits, then the bank, then
    the row: a stream of consecutive words stays in one row for ``cols`` words and then moves
    to the next bank, so a long transfer changes row in one bank only every banks x cols words
    (hw/sdram.py uses the same map)."""
    col_bits = (module.cols - 1).bit_length()
    bank_bits = (module.banks - 1).bit_length()
    return ((addr >> col_bits) & (module.banks - 1), addr >> (col_bits + bank_bits),
            addr & (module.cols - 1))


def cmd_layout(module: SDRAMModule = MT48LC16M16A2) -> data.StructLayout:
    """The native port's command: a word address and whether it writes."""
    return data.StructLayout({"addr": module.addr_bits, "we": 1})


def wdata_layout(module: SDRAMModule = MT48LC16M16A2) -> data.StructLayout:
    """Write data with a byte enable per byte (the chip's DQM, inverted)."""
    return data.StructLayout({"data": module.dq_bits, "en": module.dq_bits // 8})
