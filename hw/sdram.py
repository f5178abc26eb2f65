"""An SDR SDRAM controller: the power-up sequence, the mode register, auto refresh, an open
row per bank, and one 16-bit word per clock while a stream stays in a row.

Outside (LiteDRAM's native port, as ``amaranth.lib.stream`` interfaces; the user never sees
banks, rows or refresh):

- ``cmd`` (In): ``hw.sdram_chip.cmd_layout``, a word address and ``we``; commands are carried
  out in order;
- ``wdata`` (In): ``hw.sdram_chip.wdata_layout``, the data of a write command, which must be
  valid with its command: the two are taken together, into a four-deep queue whose registers
  are all the command decision sees (no path from a user's logic into the pins' registers);
- ``rdata`` (Out): the words of the read commands, in order, ``read_latency`` cycles after
  each READ at the earliest. A READ is issued only while the read FIFO has room for its word,
  so ``rdata`` may be backpressured without loss;
- ``ready`` (Out): high once the power-up sequence is done (commands wait until then);
- ``idle`` (Out): no command waiting in the queue (every one taken has gone to the pins).

Inside, each cycle issues at most one chip command for the command at the head of ``cmd``:
READ or WRITE if its bank has its row open and the bank's timers allow it; else PRECHARGE
the bank if another row is open; else ACTIVE. Every rule of ``hw.sdram_chip.SDRAMTimings``
is a countdown timer (per bank: ACTIVE allowed, PRECHARGE allowed, READ/WRITE allowed; across
banks: tRRD, and a timer that holds every command after AUTO REFRESH and LOAD MODE). A refresh
is requested every ``refi - REFRESH_SLACK`` cycles and served between two commands: PRECHARGE
ALL, then AUTO REFRESH. A WRITE after a READ waits until the read's data has left the bus and
one cycle more.

Pins (``pins``, ``pins_signature``): the chip's command, address and data signals, with
``cs``/``ras``/``cas``/``we`` *asserted high* (the board's pins are active low: amaranth-boards
declares them PinsN). The controller's outputs are meant to pass through one register to the
pins and ``dq_i`` through one register from them (the board's I/O registers; the simulation
top's plain registers), so ``read_latency`` is CL + ``hw.timing.SDRAM_PHY_LATENCY``.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .sdram_chip import (REFRESH_SLACK, MT48LC16M16A2, SDRAMModule, SDRAMTimings, cmd_layout,
                         mode_register, wdata_layout)
from .timing import SDRAM_PHY_LATENCY

__all__ = ["SDRAMController", "pins_signature", "PinRegisters", "WithPinRegisters",
           "REFRESH_SLACK"]



def pins_signature(module: SDRAMModule = MT48LC16M16A2) -> wiring.Signature:
    row_bits = (module.rows - 1).bit_length()
    return wiring.Signature({
        "cke": Out(1), "cs": Out(1), "ras": Out(1), "cas": Out(1), "we": Out(1),
        "ba": Out((module.banks - 1).bit_length()), "a": Out(row_bits),
        "dqm": Out(module.dq_bits // 8),
        "dq_o": Out(module.dq_bits), "dq_oe": Out(1), "dq_i": In(module.dq_bits),
    })


class SDRAMController(wiring.Component):
    def __init__(self, timings: SDRAMTimings, module: SDRAMModule = MT48LC16M16A2,
                 rdata_depth: int = 16):
        if module.cols > 1 << 10:
            raise ValueError("column addresses above A9 would collide with A10 (auto precharge)")
        self.t, self.module = timings, module
        self.read_latency = timings.cl + SDRAM_PHY_LATENCY
        self.rdata_depth = rdata_depth
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout(module))),
            "wdata": In(stream.Signature(wdata_layout(module))),
            "rdata": Out(stream.Signature(module.dq_bits)),
            "ready": Out(1), "idle": Out(1),
            "pins": Out(pins_signature(module)),
        })

    def elaborate(self, platform):
        m = Module()
        t, mod, pins = self.t, self.module, self.pins
        banks = mod.banks
        col_bits = (mod.cols - 1).bit_length()
        bank_bits = (banks - 1).bit_length()
        row_bits = (mod.rows - 1).bit_length()

        # ---- timers: cycles still to wait; an event sets one to at least its rule ---------------
        def timer(name, limit, reset=0):
            return Signal(range(max(limit, reset) + 1), name=name, init=reset)

        longest = max(t.rp, t.rcd, t.ras, t.rc, t.rrd, t.wr, t.rfc, t.mrd, t.cl + 2)
        t_act = [timer(f"t_act{b}", longest) for b in range(banks)]   # ACTIVE allowed
        t_pre = [timer(f"t_pre{b}", longest) for b in range(banks)]   # PRECHARGE allowed
        t_rw = [timer(f"t_rw{b}", longest) for b in range(banks)]     # READ/WRITE allowed
        t_rrd = timer("t_rrd", longest)
        t_write = timer("t_write", longest)          # a WRITE after a READ: the bus is free
        t_hold = timer("t_hold", t.power_up, reset=t.power_up)   # every command (power-up,
        #                                               tRFC, tMRD)
        # Every timer counts down to 0; a command issued this cycle raises the ones its rules
        # name (``at_least``, a later statement, so it wins over the count).
        following = {}
        for tm in t_act + t_pre + t_rw + [t_rrd, t_write, t_hold]:
            following[id(tm)] = Mux(tm != 0, tm - 1, 0)
            m.d.sync += tm.eq(following[id(tm)])

        def at_least(tm, cycles):
            """The next command that ``tm`` guards may come ``cycles`` cycles from now."""
            nxt = following[id(tm)]
            m.d.sync += tm.eq(Mux(nxt > cycles - 1, nxt, cycles - 1))

        # ---- the command on the pins (registered outside) ------------------------------------
        def command(cs=1, ras=0, cas=0, we=0, ba=0, a=0):
            m.d.comb += [pins.cs.eq(cs), pins.ras.eq(ras), pins.cas.eq(cas), pins.we.eq(we),
                         pins.ba.eq(ba), pins.a.eq(a)]

        m.d.comb += pins.cke.eq(1)
        # The queue in front of the decision: a command with its data, from registers.
        queued = data.StructLayout({"cmd": cmd_layout(mod), "wdata": wdata_layout(mod)})
        m.submodules.queue = queue = SyncFIFOBuffered(width=queued.size, depth=4)
        entry = Signal(queued)
        takes = self.cmd.valid & (~self.cmd.payload.we | self.wdata.valid)
        m.d.comb += [queue.w_data.eq(Cat(self.cmd.payload, self.wdata.payload)),
                     queue.w_en.eq(takes),
                     self.cmd.ready.eq(queue.w_rdy & (~self.cmd.payload.we | self.wdata.valid)),
                     self.wdata.ready.eq(queue.w_rdy & self.cmd.valid & self.cmd.payload.we),
                     entry.eq(queue.r_data)]
        head = entry.cmd
        head_valid = queue.r_rdy
        head_data = entry.wdata
        issued = Signal()                # the head's chip command goes out this cycle
        m.d.comb += [queue.r_en.eq(issued), self.idle.eq(queue.level == 0)]
        # The data and its mask do not wait for the decision to write (only ``dq_oe`` does):
        # no path from the row and timer checks into them. DQM masks a read's data two cycles
        # on, so it stays low until every read's data is past (``t_write``, a register, is 0
        # from then on) and the head command writes.
        m.d.comb += pins.dq_o.eq(head_data.data)
        bank = head.addr[col_bits:col_bits + bank_bits]
        row = head.addr[col_bits + bank_bits:]
        col = head.addr[:col_bits]
        is_open = Signal(banks)
        open_row = Array(Signal(row_bits, name=f"open_row{b}") for b in range(banks))
        bank_onehot = Signal(banks)
        m.d.comb += bank_onehot.eq(1 << bank)

        # ---- the read path: READs in flight, then a FIFO the user drains ---------------------
        m.submodules.rfifo = rfifo = SyncFIFOBuffered(width=mod.dq_bits, depth=self.rdata_depth)
        in_flight = Signal(self.read_latency)
        issue_read = Signal()
        m.d.sync += in_flight.eq(Cat(issue_read, in_flight[:-1]))
        m.d.comb += [rfifo.w_en.eq(in_flight[-1]), rfifo.w_data.eq(pins.dq_i),
                     self.rdata.valid.eq(rfifo.r_rdy), self.rdata.payload.eq(rfifo.r_data),
                     rfifo.r_en.eq(self.rdata.ready)]
        owed = Signal(range(self.rdata_depth + 1))     # reads issued, words not yet taken
        took = self.rdata.valid & self.rdata.ready
        m.d.sync += owed.eq(owed + issue_read - took)
        room = Signal()
        m.d.comb += room.eq(owed < self.rdata_depth)

        # ---- refresh requests ----------------------------------------------------------------
        interval = t.refi - REFRESH_SLACK
        refresh_in = Signal(range(interval + 1), init=interval)
        refresh_due = Signal()
        refreshed = Signal()
        with m.If(refreshed):
            m.d.sync += [refresh_in.eq(interval), refresh_due.eq(0)]
        with m.Elif(self.ready & (refresh_in == 0)):
            m.d.sync += refresh_due.eq(1)
        with m.Elif(self.ready):
            m.d.sync += refresh_in.eq(refresh_in - 1)

        m.d.comb += pins.dqm.eq(Mux(head.we & (t_write == 0), ~head_data.en, 0))

        all_closable = Signal()
        all_idle = Signal()
        m.d.comb += [all_closable.eq(Cat((~is_open[b]) | (t_pre[b] == 0)
                                         for b in range(banks)).all()),
                     all_idle.eq((is_open == 0) & Cat(x == 0 for x in t_act).all())]

        precharge_all = 1 << 10
        with m.FSM(init="POWER_UP"):
            with m.State("POWER_UP"):
                with m.If(t_hold == 0):
                    command(ras=1, we=1, a=precharge_all)
                    at_least(t_hold, t.rp)
                    m.next = "INIT_REFRESH1"
            for state, nxt in (("INIT_REFRESH1", "INIT_REFRESH2"), ("INIT_REFRESH2", "INIT_MODE")):
                with m.State(state):
                    with m.If(t_hold == 0):
                        command(ras=1, cas=1)
                        at_least(t_hold, max(t.rfc, t.rc))
                        m.next = nxt
            with m.State("INIT_MODE"):
                with m.If(t_hold == 0):
                    command(ras=1, cas=1, we=1, a=mode_register(t.cl))
                    at_least(t_hold, t.mrd)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.ready.eq(t_hold == 0)
                with m.If(t_hold != 0):
                    pass
                with m.Elif(refresh_due):
                    with m.If(is_open != 0):
                        with m.If(all_closable):
                            command(ras=1, we=1, a=precharge_all)
                            m.d.sync += is_open.eq(0)
                            for b in range(banks):
                                at_least(t_act[b], t.rp)
                    with m.Elif(all_idle):
                        command(ras=1, cas=1)
                        m.d.comb += refreshed.eq(1)
                        at_least(t_hold, max(t.rfc, t.rc))
                with m.Elif(head_valid):
                    hit = Signal()
                    m.d.comb += hit.eq((is_open & bank_onehot).any() & (open_row[bank] == row))
                    rw_ok = Signal()
                    m.d.comb += rw_ok.eq(Array(t_rw)[bank] == 0)
                    with m.If(hit):
                        with m.If(head.we):
                            with m.If(rw_ok & (t_write == 0)):
                                command(cas=1, we=1, ba=bank, a=col)
                                m.d.comb += [issued.eq(1), pins.dq_oe.eq(1)]
                                for b in range(banks):
                                    with m.If(bank == b):
                                        at_least(t_pre[b], t.wr)
                        with m.Elif(rw_ok & room):
                            command(cas=1, ba=bank, a=col)
                            m.d.comb += [issued.eq(1), issue_read.eq(1)]
                            # The chip drives the bus CL cycles on; a WRITE waits one more.
                            at_least(t_write, t.cl + 2)
                    with m.Elif((is_open & bank_onehot).any()):
                        with m.If(Array(t_pre)[bank] == 0):
                            command(ras=1, we=1, ba=bank)
                            m.d.sync += is_open.eq(is_open & ~bank_onehot)
                            for b in range(banks):
                                with m.If(bank == b):
                                    at_least(t_act[b], t.rp)
                    with m.Elif((Array(t_act)[bank] == 0) & (t_rrd == 0)):
                        command(ras=1, ba=bank, a=row)
                        m.d.sync += [is_open.eq(is_open | bank_onehot), open_row[bank].eq(row)]
                        for b in range(banks):
                            with m.If(bank == b):
                                at_least(t_rw[b], t.rcd)
                                at_least(t_pre[b], t.ras)
                                at_least(t_act[b], t.rc)
                        at_least(t_rrd, t.rrd)

        return m


class PinRegisters(wiring.Component):
    """One register on every SDRAM signal, each way: what the board's I/O registers
    (``io.FFBuffer``) do, for simulation tops. ``core`` faces the controller, ``chip`` the chip
    (or its model)."""

    def __init__(self, module: SDRAMModule = MT48LC16M16A2):
        super().__init__({"core": In(pins_signature(module)), "chip": Out(pins_signature(module))})

    def elaborate(self, platform):
        m = Module()
        for name, member in self.chip.signature.members.items():
            if member.flow == Out:
                m.d.sync += getattr(self.chip, name).eq(getattr(self.core, name))
        m.d.sync += self.core.dq_i.eq(self.chip.dq_i)
        return m


class WithPinRegisters(wiring.Component):
    """A core with an ``sdram`` member (its controller's pins) behind ``PinRegisters``: every
    other port of the core unchanged, the chip's pins as ``chip``. The simulated board's top;
    a board puts its I/O registers there instead."""

    def __init__(self, core: wiring.Component):
        self.core = core
        members = dict(core.signature.members)
        members["chip"] = members.pop("sdram")
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.registers = regs = PinRegisters()
        wiring.connect(m, core.sdram, regs.core)
        wiring.connect(m, regs.chip, wiring.flipped(self.chip))
        for name, member in self.signature.members.items():
            if name == "chip":
                continue
            outer, inner = getattr(self, name), getattr(core, name)
            if member.is_port:
                m.d.comb += (inner.eq(outer) if member.flow == In else outer.eq(inner))
            elif member.flow == In:
                wiring.connect(m, wiring.flipped(outer), inner)
            else:
                wiring.connect(m, inner, wiring.flipped(outer))
        return m
