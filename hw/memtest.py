"""The SDRAM self-test the device runs by itself, through the controller's native port, at the
controller's speed (a host-driven test through a 3 Mbaud link would take minutes for 32 MB).

Three phases over ``words`` words from ``base`` (hw.protocol.MemTestPhase):

1. data bus: at ``base``, each data line alone (walking ones): write, read back;
2. address bus: a distinct word (hw.layout.memtest_address_word) at ``base`` and at
   ``base + 2**k`` for every ``2**k < words``, all written, then all read: a stuck or shorted
   address line makes two of them one word, and the first read of the overwritten one fails;
3. random: hw.layout.memtest_pattern(seed) written over the whole range, then read back.

Reads are checked as they arrive, in order. The first failure is kept (its phase, address, the
word expected, the word read: their XOR is the bits that differ) and every failure counted; a
phase runs only after the last read of the one before is checked. ``done`` pulses at the end;
``busy`` from ``start`` until then.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .protocol import MemTestPhase
from .sdram_chip import MT48LC16M16A2, SDRAMModule, cmd_layout, wdata_layout

__all__ = ["MemTest"]


def _xorshift(x):
    x = (x ^ (x << 13))[:32]
    x = x ^ (x >> 17)
    return (x ^ (x << 5))[:32]


class MemTest(wiring.Component):
    def __init__(self, module: SDRAMModule = MT48LC16M16A2):
        self.module = module
        ab = module.addr_bits
        super().__init__({
            "start": In(1), "base": In(ab), "words": In(ab + 1), "seed": In(32),
            "busy": Out(1), "done": Out(1), "phase": Out(2), "failed": Out(1),
            "fail_phase": Out(2),
            "fail_addr": Out(ab), "expected": Out(module.dq_bits), "got": Out(module.dq_bits),
            "errors": Out(32), "tested": Out(32),
            "sdram_cmd": Out(stream.Signature(cmd_layout(module))),
            "sdram_wdata": Out(stream.Signature(wdata_layout(module))),
            "sdram_rdata": In(stream.Signature(module.dq_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        ab, dq = self.module.addr_bits, self.module.dq_bits
        i = Signal(ab + 1)                 # the command's index in its pass
        issued = Signal(ab + 1)            # reads issued in this phase
        checked = Signal(ab + 1)           # reads checked in this phase
        wx = Signal(32)                    # the write pass's pattern state
        cx = Signal(32)                    # the checker's pattern state
        done = Signal()
        m.d.comb += self.done.eq(done)
        m.d.sync += done.eq(0)
        # The next command waits in registers for the controller: the generator's address
        # arithmetic ends at a register, and only the register meets the controller's queue.
        cmd_valid, cmd_we = Signal(), Signal()
        cmd_addr, cmd_data = Signal(ab), Signal(dq)
        taken = Signal()
        room = Signal()
        m.d.comb += [taken.eq(cmd_valid & self.sdram_cmd.ready), room.eq(~cmd_valid | taken),
                     self.sdram_cmd.valid.eq(cmd_valid), self.sdram_cmd.payload.addr.eq(cmd_addr),
                     self.sdram_cmd.payload.we.eq(cmd_we),
                     self.sdram_wdata.valid.eq(cmd_valid & cmd_we),
                     self.sdram_wdata.payload.data.eq(cmd_data),
                     self.sdram_wdata.payload.en.eq(-1)]
        with m.If(taken):
            m.d.sync += cmd_valid.eq(0)

        def address_of(n):
            """The address phase's n-th word: base, then base + 2**(n-1)."""
            line = (n - 1)[:5].as_unsigned()      # n - 1 < address bits
            return Mux(n == 0, self.base, self.base + (Const(1, ab + 1) << line)[:ab])

        def command(addr, we, data=0):
            """The next command into the register when it has room (``room``)."""
            with m.If(room):
                m.d.sync += [cmd_valid.eq(1), cmd_addr.eq(addr), cmd_we.eq(we),
                             cmd_data.eq(data), i.eq(i + 1)]
                if not we:
                    m.d.sync += issued.eq(issued + 1)

        # ---- the checker: reads in order, against this phase's expected words --------------
        # The word expected and its address are computed a read ahead into registers, so a
        # read meets only a comparison (75 MHz on the board).
        def expect(phase, n, x):
            """(word, address) of phase ``phase``'s ``n``-th read, pattern state ``x``."""
            word, where = Signal(dq), Signal(ab)
            with m.Switch(phase):
                with m.Case(MemTestPhase.DATA_BUS):
                    m.d.comb += [word.eq(Const(1, dq) << n[:4]), where.eq(self.base)]
                with m.Case(MemTestPhase.ADDRESS_BUS):
                    m.d.comb += [word.eq(0xA500 | n[:8]), where.eq(address_of(n))]
                with m.Default():
                    m.d.comb += [word.eq(_xorshift(x)[:dq]), where.eq(self.base + n)]
            return word, where

        # Reads are checked a cycle after they arrive: the word and its valid bit are
        # registered first (the controller's read data reaches here through the device's
        # port multiplexers).
        arrive = Signal()
        got = Signal(dq)
        m.d.comb += self.sdram_rdata.ready.eq(1)
        m.d.sync += [arrive.eq(self.sdram_rdata.valid), got.eq(self.sdram_rdata.payload)]
        expected = Signal(dq)
        where = Signal(ab)
        following = Signal(32)
        m.d.comb += following.eq(Mux(self.phase == MemTestPhase.RANDOM, _xorshift(cx), cx))
        next_word, next_where = expect(self.phase, checked + 1, following)
        with m.If(arrive):
            m.d.sync += [checked.eq(checked + 1), self.tested.eq(self.tested + 1),
                         cx.eq(following), expected.eq(next_word), where.eq(next_where)]
            with m.If(got != expected):
                m.d.sync += self.errors.eq(self.errors + 1)
                with m.If(~self.failed):
                    m.d.sync += [self.failed.eq(1), self.fail_phase.eq(self.phase),
                                 self.fail_addr.eq(where),
                                 self.expected.eq(expected), self.got.eq(got)]

        def next_phase(phase, state):
            first_word, first_where = expect(Const(phase, 2), Const(0, ab + 1), cx)
            m.d.sync += [self.phase.eq(phase), i.eq(0), issued.eq(0), checked.eq(0),
                         expected.eq(first_word), where.eq(first_where)]
            m.next = state

        seed = Mux(self.seed == 0, 1, self.seed)
        address_lines_left = Signal()
        m.d.comb += address_lines_left.eq(
            (i == 0) | ((i <= ab) & ((Const(1, ab + 2) << (i - 1)[:5].as_unsigned()) < self.words)))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.failed.eq(0), self.errors.eq(0), self.tested.eq(0),
                                 self.busy.eq(1), wx.eq(seed), cx.eq(seed)]
                    next_phase(MemTestPhase.DATA_BUS, "DATA")
            with m.State("DATA"):               # write 1 << n, read it: n = i // 2
                with m.If(i == 2 * dq):
                    m.next = "DATA_WAIT"
                with m.Elif(i[0]):
                    command(self.base, 0)
                with m.Else():
                    command(self.base, 1, Const(1, dq) << i[1:5])
            with m.State("DATA_WAIT"):
                with m.If(checked == issued):
                    next_phase(MemTestPhase.ADDRESS_BUS, "ADDRESS_WRITE")
            with m.State("ADDRESS_WRITE"):
                with m.If(address_lines_left):
                    command(address_of(i), 1, 0xA500 | i[:8])
                with m.Else():
                    m.d.sync += i.eq(0)
                    m.next = "ADDRESS_READ"
            with m.State("ADDRESS_READ"):
                with m.If(address_lines_left):
                    command(address_of(i), 0)
                with m.Else():
                    m.next = "ADDRESS_WAIT"
            with m.State("ADDRESS_WAIT"):
                with m.If(checked == issued):
                    next_phase(MemTestPhase.RANDOM, "RANDOM_WRITE")
            with m.State("RANDOM_WRITE"):
                with m.If(i != self.words):
                    command(self.base + i, 1, _xorshift(wx)[:dq])
                    with m.If(room):
                        m.d.sync += wx.eq(_xorshift(wx))
                with m.Else():
                    m.d.sync += i.eq(0)
                    m.next = "RANDOM_READ"
            with m.State("RANDOM_READ"):
                with m.If(i != self.words):
                    command(self.base + i, 0)
                with m.Else():
                    m.next = "RANDOM_WAIT"
            with m.State("RANDOM_WAIT"):
                with m.If(checked == issued):
                    m.d.sync += [self.busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
        return m
