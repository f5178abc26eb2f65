"""The device's side of the host link: frames in and out of a byte stream (hw/protocol.py).

Both units talk to the link through ``amaranth.lib.stream`` byte streams (payload: one byte);
on a board a UART sits behind them, on the simulated board the harness's TCP socket.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import crc, stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol as proto

__all__ = ["FrameReceiver", "FrameTransmitter"]


def _crc32():
    return crc.catalog.CRC32_ISO_HDLC(data_width=8).create()


class FrameReceiver(wiring.Component):
    """Hunts for SYNC, reads the header, writes the payload into the frame buffer
    (``buf_*``: one byte per accepted beat) and checks the CRC. Then it holds the frame
    (``frame`` high, ``code``/``seq``/``length``/``check`` valid, ``i.ready`` low) until the
    executor pulses ``taken``.

    ``check`` is a Status: OK, BAD_CRC, or BAD_LENGTH (the header's length is over
    MAX_PAYLOAD: held at once, without reading a payload). A frame that stops arriving for
    ``timeout`` cycles is dropped and the hunt starts again, so a lost byte never wedges the
    link. Throughput one byte per cycle; ``frame`` rises 2 cycles after the last CRC byte.
    """

    def __init__(self, timeout: int):
        self.timeout = timeout
        super().__init__({
            "i": In(stream.Signature(8)),
            "buf_addr": Out(range(proto.MAX_PAYLOAD)), "buf_data": Out(8), "buf_en": Out(1),
            "frame": Out(1), "code": Out(8), "seq": Out(8), "length": Out(16), "check": Out(8),
            "taken": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = checker = _crc32()
        byte = self.i.payload
        take = Signal()
        m.d.comb += [take.eq(self.i.valid & self.i.ready), checker.data.eq(byte)]
        count = Signal(16)
        idle = Signal(range(self.timeout + 1))
        m.d.comb += [self.buf_addr.eq(count), self.buf_data.eq(byte)]

        def receiving():
            """In every state between the sync and the CRC: a frame that stops arriving for
            ``timeout`` cycles is dropped (the next state set here overrides the state's)."""
            with m.If(take):
                m.d.sync += idle.eq(0)
            with m.Else():
                m.d.sync += idle.eq(idle + 1)
                with m.If(idle == self.timeout - 1):
                    m.next = "HUNT0"

        with m.FSM():
            with m.State("HUNT0"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & (byte == proto.SYNC[0])):
                    m.next = "HUNT1"
            with m.State("HUNT1"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take):
                    with m.If(byte == proto.SYNC[1]):
                        m.d.comb += checker.start.eq(1)
                        m.d.sync += idle.eq(0)
                        m.next = "CODE"
                    with m.Elif(byte != proto.SYNC[0]):
                        m.next = "HUNT0"
            for state, nxt, field in (("CODE", "SEQ", self.code), ("SEQ", "LEN0", self.seq),
                                      ("LEN0", "LEN1", self.length[:8])):
                with m.State(state):
                    m.d.comb += [self.i.ready.eq(1), checker.valid.eq(take)]
                    with m.If(take):
                        m.d.sync += field.eq(byte)
                        m.next = nxt
                    receiving()
            with m.State("LEN1"):
                m.d.comb += [self.i.ready.eq(1), checker.valid.eq(take)]
                with m.If(take):
                    m.d.sync += [self.length[8:].eq(byte), count.eq(0)]
                    with m.If(Cat(self.length[:8], byte) > proto.MAX_PAYLOAD):
                        m.d.sync += self.check.eq(proto.Status.BAD_LENGTH)
                        m.next = "HOLD"
                    with m.Elif(Cat(self.length[:8], byte) == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
                receiving()
            with m.State("PAYLOAD"):
                m.d.comb += [self.i.ready.eq(1), checker.valid.eq(take), self.buf_en.eq(take)]
                with m.If(take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == self.length - 1):
                        m.d.sync += count.eq(0)
                        m.next = "CRC"
                receiving()
            with m.State("CRC"):
                m.d.comb += [self.i.ready.eq(1), checker.valid.eq(take)]
                with m.If(take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == proto.CRC_BYTES - 1):
                        m.next = "CHECK"
                receiving()
            with m.State("CHECK"):       # the CRC register holds the last byte from here on
                m.d.sync += self.check.eq(Mux(checker.match_detected, proto.Status.OK,
                                              proto.Status.BAD_CRC))
                m.next = "HOLD"
            with m.State("HOLD"):
                m.d.comb += self.frame.eq(1)
                with m.If(self.taken):
                    m.next = "HUNT0"
        return m


class FrameTransmitter(wiring.Component):
    """``start`` (one cycle, with ``code``, ``seq``, ``length``) sends one frame on ``o``: the
    header, then ``length`` bytes pulled from ``payload``, then the CRC. ``busy`` from the
    cycle after ``start`` until the last CRC byte has gone."""

    def __init__(self):
        super().__init__({
            "o": Out(stream.Signature(8)),
            "payload": In(stream.Signature(8)),
            "start": In(1), "code": In(8), "seq": In(8), "length": In(16), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = gen = _crc32()
        code, seq, length = Signal(8), Signal(8), Signal(16)
        count = Signal(16)
        sent = Signal()
        m.d.comb += [sent.eq(self.o.valid & self.o.ready), gen.data.eq(self.o.payload)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [code.eq(self.code), seq.eq(self.seq), length.eq(self.length)]
                    m.next = "SYNC0"
            header = (("SYNC0", "SYNC1", proto.SYNC[0], False),
                      ("SYNC1", "CODE", proto.SYNC[1], False),
                      ("CODE", "SEQ", code, True), ("SEQ", "LEN0", seq, True),
                      ("LEN0", "LEN1", length[:8], True))
            for state, nxt, value, counted in header:
                with m.State(state):
                    m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), self.o.payload.eq(value),
                                 gen.valid.eq(sent & counted)]
                    if state == "SYNC0":
                        m.d.comb += gen.start.eq(1)
                    with m.If(sent):
                        m.next = nxt
            with m.State("LEN1"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), self.o.payload.eq(length[8:]),
                             gen.valid.eq(sent)]
                with m.If(sent):
                    m.d.sync += count.eq(0)
                    with m.If(length == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(self.payload.valid),
                             self.o.payload.eq(self.payload.payload),
                             self.payload.ready.eq(self.o.ready), gen.valid.eq(sent)]
                with m.If(sent):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == length - 1):
                        m.d.sync += count.eq(0)
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1),
                             self.o.payload.eq(gen.crc.word_select(count[:2], 8))]
                with m.If(sent):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == proto.CRC_BYTES - 1):
                        m.next = "IDLE"
        return m
