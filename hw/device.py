"""The device top level: host link, command executor and the network runner.

    rx bytes -> FrameReceiver -> frame buffer -> command executor -> NetworkRunner
    tx bytes <- FrameTransmitter <-------------- (replies)

The executor takes one checked frame at a time (hw/protocol.py; docs/PROTOCOL.md) and
answers it: IDENTIFY, RESET (aborts a run: the runner's registers are reset, memories keep
their contents), WRITE (feature map, program, codebooks, biases, or sparse weights through
the weight decoder), CLEAR, READ (feature map or cycle counters), RUN, STATUS. WRITE, CLEAR
and READ are refused with BUSY while the program runs; STATUS, IDENTIFY and RESET always
answer. A frame with a bad CRC, a length over MAX_PAYLOAD or an unknown command gets an error
reply; the receiver drops frames that stop arriving, so the device never wedges. A refused
request changes nothing: a WRITE to WEIGHTS whose data is shorter than its entries is refused
with BAD_LENGTH before any entry is written.

Addresses wrap at each memory's address bits (hw/config.py makes every depth a power of two).
"""

from __future__ import annotations

import struct

from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from . import protocol as proto
from .config import AcceleratorConfig, address_bits
from .layout import GAP_BITS
from .link import FrameReceiver, FrameTransmitter
from .protocol import Command, RunState, Status, Target, identity_bytes, unit_bytes
from .memtest import MemTest
from .runner import HOST_READ_LATENCY, NetworkRunner
from .sdram import SDRAMController, pins_signature
from .sdram_chip import MT48LC16M16A2
from .timing import RDATA_STAGE_LATENCY

__all__ = ["Device", "WeightDecoder"]


class WeightDecoder(wiring.Component):
    """The sparse entries of a WRITE to WEIGHTS (hw.layout.pack_entries: GAP_BITS zero-run,
    then the index, ``index_bits`` wide, LSB first) -> single-index writes of the weight memory.

    ``start`` (one cycle) takes ``position`` (the first entry's gap counts from it, in engine
    order: word ``p // (PO*PC)``, index ``p % (PO*PC)``), ``count`` entries and
    ``index_bits``. Bytes arrive on ``i``; each entry advances the position by gap + 1 and is
    written (``wr_*`` while ``wr_valid``, one index) the cycle after its last bit is in: the
    write leaves from registers, because the lane decode and the gap's add in front of the
    runner's far-away write registers were the device's longest path. A byte is taken only
    while no whole entry is waiting; bytes after the last entry are taken and dropped.
    ``busy`` is high while an entry is still to be written from bits already taken, or its
    write is still to leave. Positions no entry names keep what a CLEAR wrote: index 0, whose
    codebook entry is 0."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        super().__init__({
            "start": In(1), "position": In(32), "count": In(16), "index_bits": In(4),
            "i": In(stream.Signature(8)),
            "wr_addr": Out(cfg.weight_addr_bits), "wr_data": Out(cfg.lanes * cfg.index_bits),
            "wr_lanes": Out(cfg.lanes), "wr_valid": Out(1), "busy": Out(1), "left": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lane_bits = address_bits(cfg.lanes)
        reservoir = Signal(GAP_BITS + cfg.index_bits + 8)
        fill = Signal(range(GAP_BITS + cfg.index_bits + 9))
        # Positions wrap where the weight memory's addresses do: no wider carry chain.
        position = Signal(cfg.weight_addr_bits + lane_bits)
        left = Signal(16)
        width = Signal(range(GAP_BITS + 16))     # an entry's bits, fixed at ``start``
        index_bits = Signal(4)
        m.d.comb += self.left.eq(left)
        entry = Signal()
        m.d.comb += [entry.eq((fill >= width) & (left != 0)),
                     self.busy.eq(entry | self.wr_valid), self.i.ready.eq(~entry)]
        m.d.sync += self.wr_valid.eq(entry & ~self.start)
        with m.If(self.start):
            m.d.sync += [position.eq(self.position), left.eq(self.count), fill.eq(0),
                         reservoir.eq(0), index_bits.eq(self.index_bits),
                         width.eq(GAP_BITS + self.index_bits)]
        with m.Elif(entry):
            gap = reservoir[:GAP_BITS]
            index = Signal(cfg.index_bits)
            m.d.comb += index.eq((reservoir >> GAP_BITS)
                                 & ((Const(1, cfg.index_bits + 1) << index_bits) - 1))
            at = Signal.like(position)
            m.d.comb += at.eq(position + gap)
            m.d.sync += [self.wr_addr.eq(at >> lane_bits),
                         self.wr_data.eq(index.replicate(cfg.lanes)),
                         self.wr_lanes.eq(Const(1, cfg.lanes) << at[:lane_bits])]
            # (the next position beside ``at``, not after it: one adder deep)
            m.d.sync += [position.eq(position + (gap + 1)), reservoir.eq(reservoir >> width),
                         fill.eq(fill - width), left.eq(left - 1)]
        with m.Elif(self.i.valid & (left != 0)):
            m.d.sync += [reservoir.eq(reservoir | (self.i.payload << fill)), fill.eq(fill + 8)]
        return m


class Device(wiring.Component):
    """``rx``/``tx``: the host link, one byte per beat; ``sdram``: the SDRAM's pins (hw/sdram.py:
    a top level puts one register on each, the board's I/O registers or the simulated board's
    plain ones)."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "sdram": Out(pins_signature())})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pc, ib = cfg.pc, cfg.index_bits
        m.submodules.receiver = rx = FrameReceiver(cfg.link_timeout)
        m.submodules.transmitter = tx = FrameTransmitter()
        wiring.connect(m, wiring.flipped(self.rx), rx.i)
        wiring.connect(m, tx.o, wiring.flipped(self.tx))
        # RESET's reset of the runner and the self-test, a cycle after the command is decoded:
        # registered, since it fans out to every register of the runner.
        reset_request = Signal()
        soft_reset = Signal()
        m.d.sync += soft_reset.eq(reset_request)
        runner = NetworkRunner(cfg)
        m.submodules.runner = ResetInserter(soft_reset)(runner)
        m.submodules.sdram = sdram = SDRAMController(cfg.sdram_timings)
        wiring.connect(m, sdram.pins, wiring.flipped(self.sdram))
        # The self-test has the controller while it runs; the executor otherwise.
        m.submodules.memtest = memtest = ResetInserter(soft_reset)(MemTest())
        testing = Signal()
        tested_once = Signal()
        m.d.comb += testing.eq(memtest.busy)
        with m.If(memtest.start):
            m.d.sync += tested_once.eq(1)
        # The SDRAM's port: the runner's while it runs (its LOADs and STOREs), the self-test's
        # while that runs, the executor's (SDRAM WRITEs and READs) otherwise. The executor
        # refuses both to start while the other runs.
        # Registered, a cycle behind the runner's state: the state fanned out through the
        # owner's multiplexers into the DMA units' read handshake was the dense device's
        # critical path at both placement seeds. The runner issues no SDRAM command in its
        # first RUNNING cycle (it fetches an op first), and it leaves RUNNING only when its
        # transfers are done; the executor counts the cycle after as running too.
        runner_owns = Signal()
        m.d.sync += runner_owns.eq(runner.state == RunState.RUNNING)
        # After RESET, what the stopped run left with the controller finishes there: the
        # device waits until the controller is idle and its last reads' words are out, and
        # drops them, so that no later read takes a stale word.
        # The read words pass two small FIFOs (three words each: the fewest that pass one a
        # cycle) on their way to the runner: the controller's read FIFO and the DMA units'
        # counters are far apart on the chip, and the port's and the runner's ownership
        # multiplexers lie between them. The first, beside the controller, ends its paths at
        # the port's multiplexer; the second, the runner's own, starts the paths through the
        # runner's multiplexer into the DMA units from its registers (with one FIFO, that way
        # was the dense device's critical path). RDATA_STAGE_LATENCY counts both.
        m.submodules.rdata_stage = stage = SyncFIFOBuffered(width=MT48LC16M16A2.dq_bits, depth=3)
        # reset with the runner: words of a stopped run left in it are dropped, and the drain
        # below holds its writes off while the controller finishes
        m.submodules.rdata_runner = to_runner = ResetInserter(soft_reset)(
            SyncFIFOBuffered(width=MT48LC16M16A2.dq_bits, depth=3))
        m.d.comb += [runner.sdram_rdata.valid.eq(to_runner.r_rdy),
                     runner.sdram_rdata.payload.eq(to_runner.r_data),
                     to_runner.r_en.eq(runner.sdram_rdata.ready)]
        rdata = stream.Signature(MT48LC16M16A2.dq_bits).create()
        m.d.comb += [stage.w_data.eq(sdram.rdata.payload), stage.w_en.eq(sdram.rdata.valid),
                     sdram.rdata.ready.eq(stage.w_rdy),
                     rdata.valid.eq(stage.r_rdy), rdata.payload.eq(stage.r_data),
                     stage.r_en.eq(rdata.ready)]
        draining = Signal()              # registered: it selects the port's owner
        drain = Signal(range(sdram.read_latency + RDATA_STAGE_LATENCY + 8 + 1))
        drain_next = Signal.like(drain)
        with m.If(soft_reset | ((drain != 0) & ~sdram.idle)):
            m.d.comb += drain_next.eq(sdram.read_latency + RDATA_STAGE_LATENCY + 8)
        with m.Elif(drain != 0):
            m.d.comb += drain_next.eq(drain - 1)
        m.d.sync += [drain.eq(drain_next), draining.eq(reset_request | (drain_next != 0))]
        with m.If(draining):
            m.d.comb += rdata.ready.eq(1)
        with m.Elif(runner_owns):
            wiring.connect(m, runner.sdram_cmd, sdram.cmd)
            wiring.connect(m, runner.sdram_wdata, sdram.wdata)
            m.d.comb += [to_runner.w_en.eq(rdata.valid), to_runner.w_data.eq(rdata.payload),
                         rdata.ready.eq(to_runner.w_rdy)]
        with m.Elif(testing):
            wiring.connect(m, memtest.sdram_cmd, sdram.cmd)
            wiring.connect(m, memtest.sdram_wdata, sdram.wdata)
            wiring.connect(m, rdata, memtest.sdram_rdata)
        st_args = Signal(struct.calcsize(proto.SELFTEST_ARGS) * 8)
        m.d.comb += [memtest.base.eq(st_args[:32]), memtest.words.eq(st_args[32:64]),
                     memtest.seed.eq(st_args[64:96])]

        frames = memory.Memory(shape=8, depth=proto.MAX_PAYLOAD, init=[])
        m.submodules.frame_buffer = frames
        fb_wr, fb_rd = frames.write_port(), frames.read_port()
        fb_byte = Signal(8)                 # the frame buffer's read data, registered
        m.d.sync += fb_byte.eq(fb_rd.data)
        m.d.comb += [fb_wr.addr.eq(rx.buf_addr), fb_wr.data.eq(rx.buf_data),
                     fb_wr.en.eq(rx.buf_en)]

        # ---- executor registers --------------------------------------------------------------
        args = Signal(proto.ARGS_BYTES * 8)
        target, flags = args[0:8], args[8:16]
        count, address = args[16:32], args[32:64]
        k = Signal(16)                    # frame-buffer byte being read
        addr = Signal(32)                 # running address in the target
        words_left = Signal(16)
        units = unit_bytes(cfg)
        sr_bytes = max(units.values())
        sr = Signal(sr_bytes * 8)         # data bytes shift in at the top
        nbytes = Signal(range(sr_bytes + 1))
        sdram_word = Signal(16)            # an SDRAM word of a WRITE, until the controller takes it
        read_wait = Signal(range(HOST_READ_LATENCY + 1))
        sdram_word = Signal(proto.SDRAM_WORD_BYTES * 8)   # an SDRAM READ's word, and whether
        sdram_got = Signal()                              # it has come
        pix = Signal(range(pc + 1))        # a packed SDRAM WRITE's byte within its unit
        pad_left = Signal(range(pc + 1))   # zero bytes still to follow the unit
        m.submodules.weight_decoder = decoder = WeightDecoder(cfg)
        m.d.comb += [decoder.position.eq(address), decoder.count.eq(count),
                     decoder.index_bits.eq(flags[:4])]
        # (zero-skipping weights, and values without codebook tables, come only from the SDRAM,
        # through a LOAD: a WRITE to WEIGHTS is refused, so the decoder's entries never reach
        # its weight memory)
        if cfg.codebooks:
            with m.If(decoder.wr_valid):
                m.d.comb += [runner.weight_wr.addr.eq(decoder.wr_addr),
                             runner.weight_wr.data.eq(decoder.wr_data),
                             runner.weight_wr.en.eq(decoder.wr_lanes)]
        # A WRITE to WEIGHTS must carry the bits of all its entries (checked before any write).
        entry_bits = Signal(16 + 5)
        m.d.sync += entry_bits.eq(count * (GAP_BITS + flags[:4]))

        # Reply payload: a shift register the transmitter drains, refilled for READs.
        ident = identity_bytes(cfg)
        out_bits = max(len(ident), struct.calcsize(proto.STATUS_FORMAT),
                       struct.calcsize(proto.SELFTEST_FORMAT), pc, 4) * 8
        out_sr = Signal(out_bits)
        out_left = Signal(range(out_bits // 8 + 1))
        m.d.comb += [tx.payload.valid.eq(out_left != 0), tx.payload.payload.eq(out_sr[:8])]
        with m.If(tx.payload.valid & tx.payload.ready):
            m.d.sync += [out_sr.eq(out_sr >> 8), out_left.eq(out_left - 1)]

        running = Signal()
        m.d.comb += running.eq((runner.state == RunState.RUNNING) | runner_owns)

        def reply(status, length=0, payload=None):
            m.d.comb += [tx.start.eq(1), tx.code.eq(status), tx.seq.eq(rx.seq),
                         tx.length.eq(length)]
            if payload is not None:
                m.d.sync += [out_sr.eq(payload), out_left.eq(length)]
            m.next = "REPLYING"

        def write_unit(value_of):
            """The unit of the WRITE's target is complete in ``value_of`` bytes (top of sr)."""
            with m.Switch(target):
                # FEATURE: ``flags`` = n, 1 <= n < PC, packs n bytes a word (an image's raw
                # pixels: channel t in byte t), the other lanes written 0.
                with m.Case(Target.FEATURE):
                    for n in range(1, pc + 1):
                        packed = (flags == n) if n < pc else ((flags == 0) | (flags == pc))
                        with m.If(packed & (nbytes == n - 1)):
                            m.d.sync += [nbytes.eq(0), addr.eq(addr + 1)]
                            m.d.comb += [runner.fm_host_addr.eq(addr),
                                         runner.fm_host_wr_data.eq(value_of(n)),
                                         runner.fm_host_wr_en.eq(1)]
                for tgt, n in units.items():
                    if tgt in (Target.SDRAM, Target.FEATURE):   # SDRAM words wait for the
                        continue                                # controller
                    with m.Case(tgt):
                        with m.If(nbytes == n - 1):
                            unit = value_of(n)
                            m.d.sync += [nbytes.eq(0), addr.eq(addr + 1)]
                            if tgt == Target.PROGRAM:
                                m.d.comb += [runner.prog_wr_addr.eq(addr),
                                             runner.prog_wr_data.eq(unit),
                                             runner.prog_wr_en.eq(1)]
                            elif tgt == Target.CODEBOOK:
                                m.d.comb += [runner.codebook_wr.addr.eq(addr),
                                             runner.codebook_wr.data.eq(unit[:cfg.value_bits]),
                                             runner.codebook_wr.en.eq(1)]
                            else:        # bias word * PO + lane: the bias port's address
                                m.d.comb += [runner.bias_wr.addr.eq(addr),
                                             runner.bias_wr.data.eq(unit),
                                             runner.bias_wr.en.eq(1)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(rx.frame & ~draining):
                    m.d.sync += k.eq(0)
                    with m.If(rx.check != Status.OK):
                        reply(rx.check)
                    with m.Else():
                        with m.Switch(rx.code):
                            with m.Case(Command.IDENTIFY):
                                reply(Status.OK, len(ident),
                                      Const(int.from_bytes(ident, "little"), out_bits))
                            with m.Case(Command.RESET):
                                m.d.comb += reset_request.eq(1)
                                reply(Status.OK)
                            with m.Case(Command.STATUS):
                                reply(Status.OK, struct.calcsize(proto.STATUS_FORMAT),
                                      Cat(runner.state, Const(0, 6), runner.op_index,
                                          Const(0, 16 - len(runner.op_index)), runner.cycles))
                            with m.Case(Command.RUN):
                                with m.If(testing):
                                    reply(Status.BUSY)
                                with m.Else():
                                    m.d.comb += runner.run.eq(~running)
                                    reply(Status.OK)
                            with m.Case(Command.SELFTEST):
                                with m.If(running | testing):
                                    reply(Status.BUSY)
                                with m.Elif(rx.length != len(st_args) // 8):
                                    reply(Status.BAD_LENGTH)
                                with m.Else():
                                    m.next = "SELFTEST_ADDR"
                            with m.Case(Command.SELFTEST_RESULT):
                                state = Signal(8)
                                m.d.comb += state.eq(Mux(testing, 1, Mux(tested_once, 2, 0)))
                                reply(Status.OK, struct.calcsize(proto.SELFTEST_FORMAT),
                                      Cat(state, memtest.phase, Const(0, 6),
                                          memtest.failed, Const(0, 7), memtest.fail_phase,
                                          Const(0, 6),
                                          memtest.fail_addr, Const(0, 32 - len(memtest.fail_addr)),
                                          memtest.expected, memtest.got, memtest.errors,
                                          memtest.tested))
                            with m.Case(Command.ECHO):
                                reply(Status.OK, rx.length)
                                m.next = "ECHO_ADDR"
                            with m.Case(Command.WRITE, Command.CLEAR, Command.READ):
                                with m.If(running | testing):
                                    reply(Status.BUSY)
                                with m.Elif(rx.length < proto.ARGS_BYTES):
                                    reply(Status.BAD_LENGTH)
                                with m.Else():
                                    m.next = "ARGS_ADDR"
                            with m.Default():
                                reply(Status.UNKNOWN_COMMAND)

            # ---- the argument header, one byte per 2 cycles --------------------------------
            with m.State("ARGS_ADDR"):
                m.d.comb += fb_rd.addr.eq(k)
                m.next = "ARGS_BYTE"
            with m.State("ARGS_BYTE"):
                m.d.sync += [args.eq(Cat(args[8:], fb_rd.data)), k.eq(k + 1)]
                with m.If(k == proto.ARGS_BYTES - 1):
                    m.next = "DISPATCH"
                with m.Else():
                    m.next = "ARGS_ADDR"
            with m.State("DISPATCH"):
                m.d.sync += [addr.eq(address), nbytes.eq(0), words_left.eq(count), pix.eq(0),
                             pad_left.eq(0)]
                m.d.comb += decoder.start.eq(1)
                with m.Switch(rx.code):
                    with m.Case(Command.WRITE):
                        with m.If((target == Target.COUNTERS) | (target > Target.SDRAM)
                                  | ((target == Target.FEATURE) & (flags > pc))
                                  | ((target == Target.SDRAM) & (flags >= pc) & (flags != 0))
                                  | ((target == Target.WEIGHTS)
                                     & ((flags == 0) | (flags > ib)
                                        # (words of values come only by LOAD)
                                        | Const(int(not cfg.codebooks))))):
                            reply(Status.BAD_ARGUMENT)
                        with m.Elif(target == Target.WEIGHTS):
                            m.next = "CHECK_ENTRIES"
                        with m.Else():
                            m.next = "DATA_ADDR"
                    with m.Case(Command.CLEAR):
                        with m.If((target == Target.FEATURE) | (target == Target.WEIGHTS)):
                            m.next = "CLEAR"
                        with m.Else():
                            reply(Status.BAD_ARGUMENT)
                    with m.Case(Command.READ):
                        with m.If((target == Target.FEATURE) & (count * pc <= proto.MAX_PAYLOAD)):
                            reply(Status.OK, count * pc)
                            m.next = "READ_ADDR"
                        with m.Elif((target == Target.COUNTERS) & (count * 4 <= proto.MAX_PAYLOAD)):
                            reply(Status.OK, count * 4)
                            m.next = "READ_ADDR"
                        with m.Elif((target == Target.SDRAM)
                                    & (count * proto.SDRAM_WORD_BYTES <= proto.MAX_PAYLOAD)):
                            reply(Status.OK, count * proto.SDRAM_WORD_BYTES)
                            m.next = "READ_ADDR"
                        with m.Else():
                            reply(Status.BAD_ARGUMENT)

            with m.State("CHECK_ENTRIES"):     # entry_bits is ready: count * entry width
                with m.If(entry_bits > (rx.length - proto.ARGS_BYTES) * 8):
                    reply(Status.BAD_LENGTH)         # fewer bits than the header's entries
                with m.Else():
                    m.next = "DATA_ADDR"

            # ---- WRITE: data bytes, one per 3 cycles (a frame-buffer read, its data registered,
            # then its use: the block RAM's output goes to a register, not into the decoder) --
            with m.State("DATA_ADDR"):
                m.d.comb += fb_rd.addr.eq(k)
                with m.If(k == rx.length):
                    with m.If(~decoder.busy):    # the last entries leave the decoder first
                        reply(Status.OK)
                with m.Else():
                    m.next = "DATA_HOLD"
            with m.State("DATA_HOLD"):
                m.d.comb += fb_rd.addr.eq(k)
                m.next = "DATA_BYTE"
            with m.State("DATA_BYTE"):
                byte = fb_byte
                m.d.comb += fb_rd.addr.eq(k)     # hold the byte while the decoder is busy
                with m.If(target == Target.WEIGHTS):
                    m.d.comb += [decoder.i.valid.eq(1), decoder.i.payload.eq(byte)]
                    with m.If(decoder.i.ready):
                        m.d.sync += k.eq(k + 1)
                        m.next = "DATA_ADDR"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    shifted = Cat(sr[8:], byte)
                    m.d.sync += [sr.eq(shifted), nbytes.eq(nbytes + 1)]
                    write_unit(lambda n: shifted[(sr_bytes - n) * 8:])
                    m.next = "DATA_ADDR"
                    # SDRAM: ``flags`` = n, 1 <= n < PC, packs n bytes a feature word (an
                    # image's raw pixels): PC - n zero bytes follow every n.
                    end_of_unit = Signal()
                    m.d.comb += end_of_unit.eq((flags != 0) & (pix == flags - 1))
                    with m.If(target == Target.SDRAM):
                        with m.If(flags != 0):
                            m.d.sync += pix.eq(Mux(end_of_unit, 0, pix + 1))
                        with m.If(end_of_unit):
                            m.d.sync += pad_left.eq(pc - flags)
                        with m.If(nbytes == proto.SDRAM_WORD_BYTES - 1):
                            m.d.sync += [nbytes.eq(0), sdram_word.eq(shifted[-16:])]
                            m.next = "SDRAM_WRITE"
                        with m.Elif(end_of_unit):
                            m.next = "PAD"
            with m.State("PAD"):                 # a packed unit's zero bytes
                padded = Cat(sr[8:], Const(0, 8))
                m.d.sync += [sr.eq(padded), pad_left.eq(pad_left - 1)]
                with m.If(nbytes == proto.SDRAM_WORD_BYTES - 1):
                    m.d.sync += [nbytes.eq(0), sdram_word.eq(padded[-16:])]
                    m.next = "SDRAM_WRITE"
                with m.Else():
                    m.d.sync += nbytes.eq(nbytes + 1)
                    with m.If(pad_left == 1):
                        m.next = "DATA_ADDR"
            with m.State("SDRAM_WRITE"):         # until the controller takes the word
                m.d.comb += [sdram.cmd.valid.eq(1), sdram.cmd.payload.addr.eq(addr),
                             sdram.cmd.payload.we.eq(1), sdram.wdata.valid.eq(1),
                             sdram.wdata.payload.data.eq(sdram_word),
                             sdram.wdata.payload.en.eq(-1)]
                with m.If(sdram.cmd.ready):
                    m.d.sync += addr.eq(addr + 1)
                    with m.If(pad_left != 0):
                        m.next = "PAD"
                    with m.Else():
                        m.next = "DATA_ADDR"

            # ---- CLEAR: one zero word per cycle ----------------------------------------------
            with m.State("CLEAR"):
                with m.If(words_left == 0):
                    reply(Status.OK)
                with m.Else():
                    m.d.sync += [addr.eq(addr + 1), words_left.eq(words_left - 1)]
                    with m.If(target == Target.WEIGHTS):
                        m.d.comb += [runner.weight_wr.addr.eq(addr), runner.weight_wr.data.eq(0),
                                     runner.weight_wr.en.eq(-1)]
                    with m.Else():
                        m.d.comb += [runner.fm_host_addr.eq(addr), runner.fm_host_wr_data.eq(0),
                                     runner.fm_host_wr_en.eq(1)]

            # ---- READ: a word at a time into the reply's shift register ----------------------
            with m.State("READ_ADDR"):
                m.d.comb += [runner.fm_host_addr.eq(addr), runner.counter_rd_addr.eq(addr)]
                with m.If(words_left == 0):
                    m.next = "REPLYING"
                with m.Elif((out_left == 0) & (target == Target.SDRAM)):
                    m.d.comb += [sdram.cmd.valid.eq(1), sdram.cmd.payload.addr.eq(addr)]
                    with m.If(sdram.cmd.ready):
                        m.d.sync += [addr.eq(addr + 1), words_left.eq(words_left - 1)]
                        m.next = "READ_SDRAM"
                with m.Elif(out_left == 0):
                    m.d.sync += [addr.eq(addr + 1), words_left.eq(words_left - 1),
                                 read_wait.eq(HOST_READ_LATENCY - 1)]
                    m.next = "READ_HOLD"
            with m.State("READ_HOLD"):           # the runner's read: HOST_READ_LATENCY cycles
                m.d.sync += read_wait.eq(read_wait - 1)
                with m.If(read_wait == 1):
                    m.next = "READ_WORD"
            with m.State("READ_SDRAM"):          # the word comes read_latency cycles on
                # It is taken into a register first, and the reply takes it from there a
                # cycle later: the read FIFO's valid does not run into the reply's registers.
                m.d.comb += rdata.ready.eq(~sdram_got)
                with m.If(rdata.valid & ~sdram_got):
                    m.d.sync += [sdram_word.eq(rdata.payload), sdram_got.eq(1)]
                with m.If(sdram_got):
                    m.d.sync += [out_sr.eq(sdram_word), out_left.eq(proto.SDRAM_WORD_BYTES),
                                 sdram_got.eq(0)]
                    m.next = "READ_ADDR"
            with m.State("READ_WORD"):
                with m.If(target == Target.FEATURE):
                    m.d.sync += [out_sr.eq(runner.fm_host_rd_data), out_left.eq(pc)]
                with m.Else():
                    m.d.sync += [out_sr.eq(runner.counter_rd_data), out_left.eq(4)]
                m.next = "READ_ADDR"

            # ---- SELFTEST: its arguments, then the test starts; the reply goes at once ---------
            with m.State("SELFTEST_ADDR"):
                m.d.comb += fb_rd.addr.eq(k)
                m.next = "SELFTEST_BYTE"
            with m.State("SELFTEST_BYTE"):
                m.d.sync += [st_args.eq(Cat(st_args[8:], fb_rd.data)), k.eq(k + 1)]
                with m.If(k == len(st_args) // 8 - 1):
                    m.next = "SELFTEST_START"
                with m.Else():
                    m.next = "SELFTEST_ADDR"
            with m.State("SELFTEST_START"):
                m.d.comb += memtest.start.eq(1)
                reply(Status.OK)

            # ---- ECHO: the request's payload back, a byte at a time ------------------------------
            with m.State("ECHO_ADDR"):
                m.d.comb += fb_rd.addr.eq(k)
                with m.If(k == rx.length):
                    m.next = "REPLYING"
                with m.Elif(out_left == 0):
                    m.d.sync += k.eq(k + 1)
                    m.next = "ECHO_BYTE"
            with m.State("ECHO_BYTE"):
                m.d.sync += [out_sr.eq(fb_rd.data), out_left.eq(1)]
                m.next = "ECHO_ADDR"

            # ---- the reply goes out; then the receiver may take the next frame ----------------
            with m.State("REPLYING"):
                with m.If(~tx.busy & ~tx.start):
                    m.d.comb += rx.taken.eq(1)
                    m.next = "IDLE"
        return m
