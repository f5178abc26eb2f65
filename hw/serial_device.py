"""The device behind a UART: what the ULX3S top level (clocks, pins, LEDs) wraps.

    rx pin -> UARTReceiver -> FIFO -> Device (hw/device.py) -> UARTTransmitter -> tx pin

The FIFO holds what arrives while the device's frame receiver holds a frame for the executor
(the link has no flow control); the host sends one request and waits for its reply, so it
fills only with what a retry or noise brings. A byte that finds it full is dropped and counted
(``rx_dropped``); the frame's CRC then rejects the frame and the host retries. The simulated
board runs this top with a short bit time (sim/board/board_main.cpp, UART mode): the same logic
at a faster baud.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .device import Device
from .sdram import pins_signature
from .uart import UARTReceiver, UARTTransmitter

__all__ = ["SerialDevice", "RX_FIFO_DEPTH"]

RX_FIFO_DEPTH = 64


class SerialDevice(wiring.Component):
    """``rx``/``tx``: the UART's lines; ``framing_errors``, ``rx_dropped``: link counts (LEDs on
    a board); ``sdram``: the device's SDRAM pins."""

    def __init__(self, cfg: AcceleratorConfig, divisor: int):
        self.cfg, self.divisor = cfg, divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "framing_errors": Out(16), "rx_dropped": Out(16),
                          "sdram": Out(pins_signature())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.device = device = Device(self.cfg)
        m.submodules.uart_rx = urx = UARTReceiver(self.divisor)
        m.submodules.uart_tx = utx = UARTTransmitter(self.divisor)
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=RX_FIFO_DEPTH)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     self.framing_errors.eq(urx.framing_errors),
                     # The FIFO always takes what the UART offers, or drops it (counted).
                     fifo.w_data.eq(urx.o.payload), fifo.w_en.eq(urx.o.valid),
                     urx.o.ready.eq(1),
                     device.rx.valid.eq(fifo.r_rdy), device.rx.payload.eq(fifo.r_data),
                     fifo.r_en.eq(device.rx.ready)]
        with m.If(urx.o.valid & ~fifo.w_rdy):
            m.d.sync += self.rx_dropped.eq(self.rx_dropped + 1)
        wiring.connect(m, device.tx, utx.i)
        wiring.connect(m, device.sdram, wiring.flipped(self.sdram))
        return m
