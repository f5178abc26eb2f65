"""The UART between the ULX3S's FT231X and the host link's byte streams: 8N1, baud set at
build time, no flow control (the FT231X's CTS is not wired to the FPGA).

- ``UARTTransmitter``: takes a byte from ``i`` whenever the line is free and sends it, start
  bit, eight data bits LSB first, stop bit; bytes go back to back.
- ``UARTReceiver``: ``rx`` passes a two-flop synchroniser (it comes from another clock). A
  falling edge starts a byte; the start bit is checked at its middle (a glitch shorter than
  half a bit is ignored); each data bit and the stop bit are taken at their middle as the
  majority of three samples a cycle apart, so a one-cycle spike does not flip a bit. A stop
  bit that reads 0 is a framing error: the byte is dropped (the frame's CRC then rejects the
  frame and the host retries), ``framing_errors`` counts it, and the receiver waits for the
  line to be idle (high) before it hunts again, so a break is one error, not a run of zero
  bytes. Every byte is offered on ``o`` for a whole byte time; one not taken by then is
  counted in ``overruns`` and dropped. A FIFO behind the receiver (hw/serial_device.py) keeps ``o``
  always ready.

``divisor`` is the clock cycles per bit (``baud_divisor``: within 1% of the wanted baud, or an
error). The sampling tolerates a sender whose bit time is off by several percent (the tests
hold it to +-2% at the shortest divisor they use).
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["baud_divisor", "UARTTransmitter", "UARTReceiver", "BITS"]

BITS = 10                       # start, 8 data, stop


def baud_divisor(clock_hz: float, baud: int, tolerance: float = 0.01) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``, if the baud that gives is within
    ``tolerance`` of the wanted one."""
    divisor = round(clock_hz / baud)
    actual = clock_hz / divisor
    if divisor < 4 or abs(actual - baud) / baud > tolerance:
        raise ValueError(f"{clock_hz / 1e6:g} MHz gives {actual:,.0f} baud for {baud:,} "
                         f"({abs(actual - baud) / baud:.2%} off; at most {tolerance:.0%}): "
                         "choose a clock that is a multiple of the baud (75 MHz: 3 Mbaud at "
                         "25 cycles a bit)")
    return divisor


class UARTTransmitter(wiring.Component):
    """``i``: bytes to send; ``tx``: the line (idle high)."""

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(BITS)                # the frame being sent, LSB on the line
        left = Signal(range(BITS + 1))      # bits still to send
        timer = Signal(range(self.divisor))
        # Free in the stop bit's last cycle too, so bytes go back to back.
        m.d.comb += self.i.ready.eq((left == 0) | ((left == 1) & (timer == 0)))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                         left.eq(BITS), timer.eq(self.divisor - 1), self.tx.eq(0)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [timer.eq(self.divisor - 1), left.eq(left - 1),
                             shift.eq(shift >> 1), self.tx.eq(Mux(left == 1, 1, shift[1]))]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTReceiver(wiring.Component):
    """``rx``: the line; ``o``: received bytes; ``framing_errors``, ``overruns``: counts."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError("the receiver needs at least 4 cycles a bit")
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "framing_errors": Out(16), "overruns": Out(16)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        # The last three samples, for the majority at a bit's middle.
        window = Signal(3, init=0b111)
        m.d.sync += window.eq(Cat(line, window[:2]))
        vote = Signal()
        m.d.comb += vote.eq((window[0] & window[1]) | (window[1] & window[2])
                            | (window[0] & window[2]))
        timer = Signal(range(d + d // 2 + 1))
        bit = Signal(range(9))
        data = Signal(8)
        held = Signal(8)
        offered = Signal()
        offer_left = Signal(range(BITS * d + 1))
        m.d.comb += [self.o.valid.eq(offered), self.o.payload.eq(held)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += offered.eq(0)
        with m.Elif(offered):
            with m.If(offer_left == 0):
                m.d.sync += [offered.eq(0), self.overruns.eq(self.overruns + 1)]
            with m.Else():
                m.d.sync += offer_left.eq(offer_left - 1)

        # The window's middle sample is ``line`` one cycle ago: a bit's middle is reached one
        # cycle after ``line`` shows it, so the timers count to the middle plus one.
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(~vote):
                        m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
                    with m.Else():
                        m.next = "IDLE"          # a glitch, not a start bit
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [data.eq(Cat(data[1:], vote)), timer.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(vote):
                        with m.If(offered):
                            m.d.sync += self.overruns.eq(self.overruns + 1)
                        m.d.sync += [held.eq(data), offered.eq(1), offer_left.eq(BITS * d)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                        m.next = "WAIT_IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("WAIT_IDLE"):               # a break or noise: hunt only once idle
                with m.If(vote & line):
                    m.next = "IDLE"
        return m
