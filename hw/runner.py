"""The network runner: the layer sequencer with every unit and memory a whole network needs.

    program memory --> sequencer --(one op at a time)--> ConvEngine  (fm <-> fm, fm -> squeeze,
                                                                      squeeze -> fm)
                                                     --> BufferReader -> MaxPoolUnit ----------> BufferWriter
                                                                      -> GlobalSumUnit -> SumSerializer ->

The host (hw/device.py's command executor) writes the program, the parameters and the input
feature map while the runner is idle, pulses ``run`` and reads the results and the per-op
cycle counters back. No host round trip per layer: the sequencer fetches op after op until END.

An op (``op_layout``) is one convolution pass of the engine (its descriptor, plus whether it
reads or writes the Fire unit's squeeze buffer instead of the feature-map memory: a Fire
module is three ops, squeeze -> expand1x1 -> expand3x3, and its squeeze output never leaves
the chip), a 3x3/2 max pooling or a global sum, each from ``in_base`` to ``out_base`` of the
feature-map memory (hw.layout.op_layout). host/compiler.py compiles a network into ops.

Cycles of an op, from its fetch to its counter's write: hw.timing.op_cycles, composed from the
latencies this module's blocks state there (the sequencer's OP_OVERHEAD, the reader's
READER_LATENCY, the writer's WRITER_LATENCY), checked against the RTL by the tests.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig, address_bits
from .conv_engine import ConvEngine, parameter_signatures
from .bypass import BypassAddUnit
from .conv_layer import FeatureBuffer
from .dma import FeatureDMA
from .layout import DMA_QUEUE, SUM_WORDS, DMATarget, OpKind, op_layout, pixel_layout
from .pool import GlobalSumUnit, MaxPoolUnit
from .protocol import COUNTER_BYTES, RunState
from .sdram_chip import MT48LC16M16A2, cmd_layout, wdata_layout
from .timing import FM_READ_LATENCY

__all__ = ["NetworkRunner", "BufferReader", "BufferWriter", "SumSerializer",
           "HOST_READ_LATENCY"]

# NetworkRunner's host reads: the address registered, the feature-map buffer's read, the data
# registered (the counters' reads are delayed to match).
HOST_READ_LATENCY = FM_READ_LATENCY + 2


class BufferReader(wiring.Component):
    """Streams ``count`` words from ``base`` of a buffer (read port: ``rd_addr``, data
    hw.timing.FM_READ_LATENCY cycles after) as beats of PC bytes; with ``pairs``, ``count``
    pairs: word i from ``base`` then word i from ``base + count`` (an ADD's second map follows
    its first, hw.layout.op_layout). Reads run ahead into a FIFO with room for every read in
    flight, so ``o`` carries one beat per cycle while it is taken; the first beat is valid
    hw.timing.READER_LATENCY cycles after ``start``. (``pairs`` is held from ``start`` on.)"""

    def __init__(self, cfg: AcceleratorConfig, addr_bits: int):
        self.cfg = cfg
        super().__init__({
            "start": In(1), "base": In(cfg.fm_addr_bits), "count": In(cfg.fm_count_bits),
            "pairs": In(1),
            "rd_addr": Out(addr_bits), "rd_data": In(pixel_layout(cfg)),
            "o": Out(stream.Signature(pixel_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        depth = 3 + FM_READ_LATENCY
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=pixel_layout(self.cfg).size,
                                                     depth=depth)
        addr = Signal.like(self.base)
        left = Signal.like(self.count)
        pending = Signal(FM_READ_LATENCY)     # reads issued 1 .. FM_READ_LATENCY cycles ago
        issue = Signal()
        in_flight = Signal(range(FM_READ_LATENCY + 1))
        addr2 = Signal.like(self.base)
        on_second = Signal()              # the next read is a pair's second word
        m.d.comb += [in_flight.eq(sum(pending[k] for k in range(FM_READ_LATENCY))),
                     issue.eq((left != 0) & (fifo.level + in_flight < depth)),
                     self.rd_addr.eq(Mux(on_second, addr2, addr))]
        m.d.sync += pending.eq(Cat(issue, pending[:-1]))
        with m.If(self.start):
            # (from the held fields at ``start`` itself: an op may start in its first cycle
            # in START, before a sum registered from the new op's fields would be ready)
            m.d.sync += [addr.eq(self.base), addr2.eq(self.base + self.count),
                         left.eq(self.count), on_second.eq(0)]
        with m.Elif(issue & self.pairs & ~on_second):
            m.d.sync += on_second.eq(1)
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), addr2.eq(addr2 + 1), left.eq(left - 1),
                         on_second.eq(0)]
        m.d.comb += [fifo.w_en.eq(pending[-1]), fifo.w_data.eq(self.rd_data),
                     self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o.ready)]
        return m


class BufferWriter(wiring.Component):
    """Writes ``count`` beats of PC bytes to consecutive words from ``base`` (always ready);
    ``done`` is high from hw.timing.WRITER_LATENCY cycles after the last write until the next
    ``start``."""

    def __init__(self, cfg: AcceleratorConfig, addr_bits: int):
        self.cfg = cfg
        super().__init__({
            "start": In(1), "base": In(cfg.fm_addr_bits), "count": In(cfg.fm_count_bits),
            "i": In(stream.Signature(pixel_layout(cfg))),
            "wr_addr": Out(addr_bits), "wr_data": Out(pixel_layout(cfg)), "wr_en": Out(1),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        addr = Signal.like(self.base)
        left = Signal.like(self.count)
        m.d.comb += [self.i.ready.eq(1), self.wr_addr.eq(addr), self.wr_data.eq(self.i.payload),
                     self.wr_en.eq(self.i.valid & (left != 0)), self.done.eq(left == 0)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), left.eq(self.count)]
        with m.Elif(self.wr_en):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
        return m


class SumSerializer(wiring.Component):
    """A beat of PC sums -> one beat of PC bytes per byte of a sum, least significant first, so
    the sums of channel group g land in feature-map words SUM_WORDS*g + k (hw.layout.sum_words).
    Takes a beat when its last byte goes; one byte-beat per cycle."""

    def __init__(self, cfg: AcceleratorConfig, sum_bits: int):
        self.cfg = cfg
        self.sum_bits = sum_bits
        super().__init__({
            "i": In(stream.Signature(pixel_layout(cfg, sum_bits))),
            "o": Out(stream.Signature(pixel_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        pc, nbytes = self.cfg.pc, SUM_WORDS
        assert self.sum_bits == 8 * SUM_WORDS, "hw.layout.SUM_WORDS is one word per sum byte"
        k = Signal(range(nbytes))
        m.d.comb += self.o.valid.eq(self.i.valid)
        for t in range(pc):
            m.d.comb += self.o.payload[t].eq(self.i.payload[t].word_select(k, 8))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += k.eq(Mux(k == nbytes - 1, 0, k + 1))
            m.d.comb += self.i.ready.eq(k == nbytes - 1)
        return m


class NetworkRunner(wiring.Component):
    """Host view (everything but ``run``, ``state``, ``op_index`` and ``cycles`` is meant for
    an idle runner):

    - ``prog_wr_*``: program ops; ``counter_rd_*``: word i < program_depth is op i's cycles in
      the last run, word program_depth + i the cycles op i waited for the DMA queue;
    - ``fm_host_*``: the feature-map memories, one word (PC bytes) at a time: A at words
      0 .. fm_depth - 1, B above;

    every host port is registered on the way in (a write lands a cycle later) and a read's
    data comes ``HOST_READ_LATENCY`` cycles after its address;
    - the engine's parameter write ports, same names (hw/conv_engine.py);
    - ``run`` (one cycle) starts the program at op 0; ``state`` (RunState), ``op_index``,
      ``cycles`` (since ``run``, through the END op);
    - ``sdram_*``: the SDRAM controller's native port, used while the program runs.

    Cycles of an op, from its fetch to its counter's write: OP_OVERHEAD, the cycles it waits
    (a LOAD or STORE for room in the DMA queue, any other op for ``dma_wait``), then its unit's
    cycles (a LOAD or STORE: one, its entry into the queue). A transfer then runs beside the
    ops after it.
    """

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.engine = ConvEngine(cfg)
        self.layout = op_layout(cfg)
        self.fm_addr_bits = self.engine.fm_addr_bits
        prog_bits = cfg.program_addr_bits
        members = dict(parameter_signatures(cfg))
        members.update({
            "prog_wr_addr": In(prog_bits), "prog_wr_data": In(self.layout.size),
            "prog_wr_en": In(1),
            "counter_rd_addr": In(prog_bits + 1), "counter_rd_data": Out(8 * COUNTER_BYTES),
            "fm_host_addr": In(self.fm_addr_bits + 1),
            "fm_host_rd_data": Out(pixel_layout(cfg)),
            "fm_host_wr_data": In(pixel_layout(cfg)), "fm_host_wr_en": In(1),
            "run": In(1), "state": Out(2), "op_index": Out(prog_bits), "cycles": Out(32),
            # The SDRAM controller's native port (hw/sdram.py), the runner's while it runs.
            "sdram_cmd": Out(stream.Signature(cmd_layout(MT48LC16M16A2))),
            "sdram_wdata": Out(stream.Signature(wdata_layout(MT48LC16M16A2))),
            "sdram_rdata": In(stream.Signature(MT48LC16M16A2.dq_bits)),
        })
        super().__init__(members)

    def elaborate(self, platform):
        from golden import numerics as nx
        m = Module()
        cfg = self.cfg
        pc = cfg.pc
        fa = self.fm_addr_bits
        m.submodules.engine = eng = self.engine

        # ---- the host's ports, registered ------------------------------------------------------
        # Everything the executor drives reaches the memories a cycle later: its byte counters
        # and the memories' port multiplexers in one cycle were the device's longest path.
        # Writes are single-cycle events in order, so a cycle's delay changes nothing else;
        # reads return HOST_READ_LATENCY cycles after their address.
        host = {}
        for name in ("prog_wr_addr", "prog_wr_data", "prog_wr_en", "counter_rd_addr",
                     "fm_host_addr", "fm_host_wr_data", "fm_host_wr_en"):
            port = getattr(self, name)
            host[name] = Signal.like(port, name=f"{name}_q")
            m.d.sync += host[name].eq(port)
        params = {}
        for name in parameter_signatures(cfg):
            port = getattr(self, name)
            params[name] = {f: Signal.like(getattr(port, f), name=f"{name}_{f}_q")
                            for f in ("addr", "data", "en")}
            m.d.sync += [params[name][f].eq(getattr(port, f)) for f in ("addr", "data", "en")]

        def host_params(name):
            return [getattr(eng, name).addr.eq(params[name]["addr"]),
                    getattr(eng, name).data.eq(params[name]["data"]),
                    getattr(eng, name).en.eq(params[name]["en"])]

        # ---- memories -------------------------------------------------------------------------
        program = memory.Memory(shape=self.layout.size, depth=cfg.program_depth, init=[])
        counters = memory.Memory(shape=8 * COUNTER_BYTES, depth=cfg.program_depth, init=[])
        waits = memory.Memory(shape=8 * COUNTER_BYTES, depth=cfg.program_depth, init=[])
        m.submodules.program = program
        m.submodules.counters = counters
        m.submodules.waits = waits
        prog_wr, prog_rd = program.write_port(), program.read_port()
        cnt_wr, cnt_rd = counters.write_port(), counters.read_port()
        wait_wr, wait_rd = waits.write_port(), waits.read_port()
        prog_bits = cfg.program_addr_bits
        read_waits = Signal()             # the counter read's data: a wait count
        m.d.sync += read_waits.eq(host["counter_rd_addr"][prog_bits])
        m.d.comb += [prog_wr.addr.eq(host["prog_wr_addr"]), prog_wr.data.eq(host["prog_wr_data"]),
                     prog_wr.en.eq(host["prog_wr_en"]),
                     cnt_rd.addr.eq(host["counter_rd_addr"][:prog_bits]),
                     wait_rd.addr.eq(host["counter_rd_addr"][:prog_bits]),
                     ]
        # The host's reads leave through registers: a block RAM's output crossing the chip
        # to the executor's reply register is too long a path for one cycle.
        counter_word = Signal.like(self.counter_rd_data)
        m.d.comb += counter_word.eq(Mux(read_waits, wait_rd.data, cnt_rd.data))
        for k in range(FM_READ_LATENCY - 1):   # as late as a feature-map word
            q = Signal.like(counter_word, name=f"counter_rd_q{k}")
            m.d.sync += q.eq(counter_word)
            counter_word = q
        m.d.sync += self.counter_rd_data.eq(counter_word)
        # The feature-map memories A and B and the squeeze buffer, behind FeatureBuffer's ports
        # (one read of every bank at one address, data FM_READ_LATENCY cycles on; per-bank
        # writes). A pass reads one and writes the other, so a LOAD (into A) and a STORE (out
        # of B) use the ports the pass leaves free.
        m.submodules.fm_a = fm_a = FeatureBuffer(cfg)
        m.submodules.fm_b = fm_b = FeatureBuffer(cfg, depth=cfg.fm_b_depth)
        m.submodules.squeeze = sq = FeatureBuffer(cfg, depth=cfg.squeeze_depth)

        # ---- the op being run -------------------------------------------------------------------
        op = Signal(self.layout)
        m.d.comb += eng.desc.eq(op.conv)

        m.submodules.reader = reader = BufferReader(cfg, fa)
        m.submodules.writer = writer = BufferWriter(cfg, fa)
        m.submodules.maxpool = maxpool = MaxPoolUnit(cfg)
        m.submodules.gsum = gsum = GlobalSumUnit(cfg)
        m.submodules.serializer = ser = SumSerializer(cfg, nx.LOGIT_BITS)
        m.submodules.add = add = BypassAddUnit(cfg, b_bits=cfg.act_bits)
        m.d.comb += [add.mult_a.eq(op.conv.mult), add.mult_b.eq(op.unit.mult_b),
                     add.shift.eq(op.conv.shift)]
        m.d.comb += [reader.base.eq(op.in_base), reader.count.eq(op.in_words),
                     reader.pairs.eq(op.kind == OpKind.ADD),
                     writer.base.eq(op.out_base), writer.count.eq(op.out_words),
                     maxpool.in_h.eq(op.conv.in_h), maxpool.in_w.eq(op.conv.in_w),
                     maxpool.out_h.eq(op.conv.out_h), maxpool.out_w.eq(op.conv.out_w),
                     maxpool.two.eq(op.conv.kernel == 2),
                     gsum.pixels.eq(op.unit.frame_pixels)]
        wiring.connect(m, gsum.o, ser.i)
        pooling = Signal()                # the stream path (reader -> unit -> writer) runs
        summing = Signal()
        adding = Signal()
        m.d.comb += [summing.eq(op.kind == OpKind.GLOBAL_SUM), adding.eq(op.kind == OpKind.ADD)]
        # reader -> (max pool | global sum -> serializer | pairs -> add) -> writer
        # An ADD's reader beats alternate: a pair's first word waits in ``held`` for its second.
        held = Signal()
        first_word = Signal(pixel_layout(cfg))
        with m.If(adding & reader.o.valid & ~held):
            m.d.sync += [held.eq(1), first_word.eq(reader.o.payload)]
        with m.If(add.b.valid & add.b.ready):
            m.d.sync += held.eq(0)
        m.d.comb += [add.a.payload.eq(first_word), add.a.valid.eq(adding & held),
                     add.b.valid.eq(adding & held & reader.o.valid)]
        m.d.comb += [add.b.payload[t].eq(reader.o.payload[t]) for t in range(pc)]
        m.d.comb += [maxpool.i.payload.eq(reader.o.payload), gsum.i.payload.eq(reader.o.payload),
                     maxpool.i.valid.eq(reader.o.valid & ~summing & ~adding),
                     gsum.i.valid.eq(reader.o.valid & summing),
                     reader.o.ready.eq(Mux(adding, ~held | add.b.ready,
                                           Mux(summing, gsum.i.ready, maxpool.i.ready))),
                     writer.i.valid.eq(Mux(adding, add.o.valid,
                                           Mux(summing, ser.o.valid, maxpool.o.valid))),
                     writer.i.payload.eq(Mux(adding, add.o.payload,
                                             Mux(summing, ser.o.payload, maxpool.o.payload))),
                     maxpool.o.ready.eq(writer.i.ready & ~summing & ~adding),
                     ser.o.ready.eq(writer.i.ready & summing),
                     add.o.ready.eq(writer.i.ready & adding)]

        # ---- the DMA queue and its units: a DMA unit per on-chip memory -------------------------
        entry = data.StructLayout({"store": 1, "dma": op_layout(cfg).members["dma"]})
        m.submodules.dma_queue = queue = SyncFIFOBuffered(width=entry.size, depth=DMA_QUEUE)
        cur = Signal(entry)              # the transfer being carried out
        active = Signal()
        cb_bits = address_bits(cfg.codebook_tables * cfg.codebook_entries)
        bias_bits = cfg.bias_addr_bits + address_bits(cfg.po)
        # ``cur.dma.target`` one-hot, a register per DMA unit set with ``cur``: it gives its
        # unit the controller's port and the start.
        owner = {t: Signal(name=f"owner_{t.name.lower()}", init=t == DMATarget(0))
                 for t in DMATarget}   # as cur's reset value, target 0
        dmas = {}
        for target, bits in ((DMATarget.FEATURE, fa), (DMATarget.WEIGHTS, cfg.weight_addr_bits),
                             (DMATarget.CODEBOOK, cb_bits), (DMATarget.BIAS, bias_bits),
                             (DMATarget.SQUEEZE, address_bits(cfg.squeeze_depth))):
            dma = dmas[target] = FeatureDMA(cfg, bits, target)
            m.submodules[f"dma_{target.name.lower()}"] = dma
            d = cur.dma
            m.d.comb += [dma.to_sdram.eq(cur.store), dma.sdram_base.eq(d.sdram_base),
                         dma.buffer_base.eq(d.buffer_base), dma.run_words.eq(d.run_words),
                         dma.runs.eq(d.runs), dma.sdram_stride.eq(d.sdram_stride),
                         dma.buffer_stride.eq(d.buffer_stride)]
            with m.If(owner[target]):
                wiring.connect(m, dma.sdram_cmd, wiring.flipped(self.sdram_cmd))
                wiring.connect(m, dma.sdram_wdata, wiring.flipped(self.sdram_wdata))
                wiring.connect(m, wiring.flipped(self.sdram_rdata), dma.sdram_rdata)
        dma_start = Signal()
        dma_done = Signal()
        m.d.comb += dma_done.eq(Cat(d.done for d in dmas.values()).any())
        for target, dma in dmas.items():
            m.d.comb += dma.start.eq(dma_start & owner[target])
        # The head of the queue becomes the current transfer when none is active; it starts
        # the cycle after.
        # Which memory the current transfer fills (or whether it drains B) is a register per
        # memory, set with ``cur``: each is ``active & (cur's direction and target)``, but it
        # selects its memory's writer straight from a flip-flop (through the compare, the
        # target's wide fan-out was the dense device's critical path).
        loading = {t: Signal(name=f"loading_{t.name.lower()}") for t in dmas}
        storing = Signal()
        head = Signal(entry)
        m.d.comb += head.eq(queue.r_data)
        starting = Signal()
        with m.If(~active & queue.r_rdy):
            m.d.comb += queue.r_en.eq(1)
            m.d.sync += [cur.eq(queue.r_data), active.eq(1), starting.eq(1)]
            m.d.sync += [sig.eq(~head.store & (head.dma.target == t))
                         for t, sig in loading.items()]
            m.d.sync += storing.eq(head.store)
            m.d.sync += [sig.eq(head.dma.target == t) for t, sig in owner.items()]
        with m.Elif(starting):
            m.d.comb += dma_start.eq(1)
            m.d.sync += starting.eq(0)
        with m.Elif(active & dma_done):
            m.d.sync += active.eq(0)
            m.d.sync += [sig.eq(0) for sig in (*loading.values(), storing)]
        # Transfers not yet finished, as of the cycle before: the sequencer's decision to start
        # a pass reads a register, not the queue's logic (a count a cycle old is never below
        # the true one while an op waits: only the sequencer adds transfers).
        outstanding = Signal(range(DMA_QUEUE + 2))
        m.d.sync += outstanding.eq(queue.level + active)

        # The parameter memories: the host's writes, or a LOAD's.
        w_dma, cb_dma, b_dma = (dmas[t] for t in (DMATarget.WEIGHTS, DMATarget.CODEBOOK,
                                                  DMATarget.BIAS))
        with m.If(loading[DMATarget.WEIGHTS]):
            if cfg.codebooks:           # a byte per index
                word = Cat(w_dma.buf_wr_data[t][:cfg.index_bits] for t in range(cfg.lanes))
            else:     # the word's bits, LSB first (hw.layout.skip_units, weight_units)
                word = w_dma.buf_wr_data.as_value()[:len(eng.weight_wr.data)]
            m.d.comb += [eng.weight_wr.addr.eq(w_dma.buf_wr_addr),
                         eng.weight_wr.data.eq(word),
                         eng.weight_wr.en.eq(Mux(w_dma.buf_wr_en, -1, 0))]
        with m.Else():
            m.d.comb += host_params("weight_wr")
        with m.If(loading[DMATarget.CODEBOOK]):
            m.d.comb += [eng.codebook_wr.addr.eq(cb_dma.buf_wr_addr),
                         eng.codebook_wr.data.eq(cb_dma.buf_wr_data.as_value()[:cfg.value_bits]),
                         eng.codebook_wr.en.eq(cb_dma.buf_wr_en)]
        with m.Else():
            m.d.comb += host_params("codebook_wr")
        with m.If(loading[DMATarget.BIAS]):
            m.d.comb += [eng.bias_wr.addr.eq(b_dma.buf_wr_addr),
                         eng.bias_wr.data.eq(b_dma.buf_wr_data.as_value()),
                         eng.bias_wr.en.eq(b_dma.buf_wr_en)]
        with m.Else():
            m.d.comb += host_params("bias_wr")
        f_dma = dmas[DMATarget.FEATURE]

        # ---- feature-map and squeeze-buffer ports ---------------------------------------------
        conv_running = Signal()
        # Every write reaches its memory through a register: the choice of writer (the FSM's
        # state, the op, the DMA queue's head) and the spread of a 16K-word memory's block RAMs
        # across the chip were too long a path for one cycle. A write lands a cycle later;
        # nothing reads a word that soon after it is written (the next op starts
        # OP_OVERHEAD cycles after a unit's ``done``, a STORE DMA_QUEUE_LATENCY after).
        def write_stage(mem, name):
            staged = Signal(mem.signature.members["wr_addr"].shape, name=f"{name}_wr_addr")
            data_ = Signal(pixel_layout(cfg), name=f"{name}_wr_data")
            en = Signal(pc, name=f"{name}_wr_en")
            m.d.sync += [mem.wr_data.eq(data_), mem.wr_en.eq(en)]
            m.d.sync += [mem.wr_addr[t].eq(staged[t]) for t in range(pc)]
            return staged, data_, en

        sq_addr, sq_data, sq_en = write_stage(sq, "squeeze")
        sq_dma = dmas[DMATarget.SQUEEZE]
        # The squeeze buffer takes the address bits it has, bank by bank. It holds a Fire
        # module's squeeze map, or a pass's residual operand (a LOAD puts it there).
        with m.If(loading[DMATarget.SQUEEZE]):
            m.d.comb += [sq_addr[t].eq(sq_dma.buf_wr_addr) for t in range(pc)]
            m.d.comb += [sq_data.eq(sq_dma.buf_wr_data),
                         sq_en.eq(Mux(sq_dma.buf_wr_en, (1 << pc) - 1, 0))]
        with m.Else():
            m.d.comb += [sq_addr[t].eq(eng.fm_wr_addr[t]) for t in range(pc)]
            m.d.comb += [sq_data.eq(eng.fm_wr_data),
                         sq_en.eq(Mux(conv_running & op.dst_squeeze, eng.fm_wr_en, 0))]
        m.d.comb += [sq.rd_addr.eq(Mux(op.src_squeeze, eng.fm_rd_addr, eng.res_rd_addr)),
                     eng.res_rd_data.eq(sq.rd_data),
                     eng.res_mult.eq(op.unit.residual_mult)]
        # The memory a pass reads (A, or B with swap) and the one it writes.
        for i, mem in enumerate((fm_a, fm_b)):
            reads = Signal(name=f"pass_reads_{'ab'[i]}")
            writes = Signal(name=f"pass_writes_{'ab'[i]}")
            m.d.comb += [reads.eq(op.swap == i), writes.eq(op.swap != i)]
            host_here = host["fm_host_addr"][fa] == i
            # read port
            with m.If(conv_running & reads & ~op.src_squeeze):
                m.d.comb += mem.rd_addr.eq(eng.fm_rd_addr)
            with m.Elif(pooling & reads):
                m.d.comb += mem.rd_addr.eq(reader.rd_addr)
            if mem is fm_b:
                with m.Elif(storing):
                    m.d.comb += mem.rd_addr.eq(f_dma.buf_rd_addr)
            with m.Else():
                m.d.comb += mem.rd_addr.eq(host["fm_host_addr"][:fa])
            # write port
            w_addr, w_data, w_en = write_stage(mem, f"fm_{'ab'[i]}")
            if mem is fm_a:
                with m.If(loading[DMATarget.FEATURE]):
                    m.d.comb += [w_data.eq(f_dma.buf_wr_data),
                                 w_en.eq(Mux(f_dma.buf_wr_en, (1 << pc) - 1, 0))]
                    m.d.comb += [w_addr[t].eq(f_dma.buf_wr_addr) for t in range(pc)]
            with (m.Elif if mem is fm_a else m.If)(conv_running & writes):
                # (bank by bank: B may take fewer address bits than the engine's)
                m.d.comb += [w_addr[t].eq(eng.fm_wr_addr[t]) for t in range(pc)]
                m.d.comb += [w_data.eq(eng.fm_wr_data),
                             w_en.eq(Mux(op.dst_squeeze, 0, eng.fm_wr_en))]
            with m.Elif(pooling & writes):
                m.d.comb += [w_data.eq(writer.wr_data),
                             w_en.eq(Mux(writer.wr_en, (1 << pc) - 1, 0))]
                m.d.comb += [w_addr[t].eq(writer.wr_addr) for t in range(pc)]
            with m.Else():
                m.d.comb += [w_data.eq(host["fm_host_wr_data"]),
                             w_en.eq(Mux(host["fm_host_wr_en"] & host_here, (1 << pc) - 1, 0))]
                m.d.comb += [w_addr[t].eq(host["fm_host_addr"][:fa]) for t in range(pc)]
        host_b = host["fm_host_addr"][fa]  # the host's read data: the memory it addressed
        for k in range(FM_READ_LATENCY):
            q = Signal(name=f"host_b_q{k}")
            m.d.sync += q.eq(host_b)
            host_b = q
        m.d.sync += self.fm_host_rd_data.eq(Mux(host_b, fm_b.rd_data, fm_a.rd_data))
        pass_in = Signal(pixel_layout(cfg))
        m.d.comb += [pass_in.eq(Mux(op.swap, fm_b.rd_data, fm_a.rd_data)),
                     reader.rd_data.eq(pass_in), f_dma.buf_rd_data.eq(fm_b.rd_data),
                     eng.fm_rd_data.eq(Mux(op.src_squeeze, sq.rd_data, pass_in))]

        # ---- the sequencer -----------------------------------------------------------------------
        state = Signal(RunState)
        index = Signal.like(self.op_index)
        cycles = Signal(32)
        op_cycles = Signal(32)
        op_wait = Signal(32)
        m.d.comb += [self.state.eq(state), self.op_index.eq(index), self.cycles.eq(cycles),
                     prog_rd.addr.eq(index), cnt_wr.addr.eq(index), cnt_wr.data.eq(op_cycles + 1),
                     wait_wr.addr.eq(index), wait_wr.data.eq(op_wait)]
        with m.If(state == RunState.RUNNING):
            m.d.sync += [cycles.eq(cycles + 1), op_cycles.eq(op_cycles + 1)]
        is_dma = Signal()
        m.d.comb += is_dma.eq((op.kind == OpKind.LOAD) | (op.kind == OpKind.STORE))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run):
                    m.d.sync += [index.eq(0), cycles.eq(0), state.eq(RunState.RUNNING)]
                    m.next = "FETCH"
            with m.State("FETCH"):       # the program memory reads op ``index``
                m.d.sync += [op_cycles.eq(1), op_wait.eq(0)]
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += op.eq(prog_rd.data)
                m.next = "START"
            with m.State("START"):       # wait for the DMA queue, then start the op
                ready = Signal()
                with m.Switch(op.kind):
                    with m.Case(OpKind.LOAD, OpKind.STORE):
                        m.d.comb += ready.eq(queue.w_rdy)
                    with m.Case(OpKind.END):
                        m.d.comb += ready.eq(outstanding == 0)
                    with m.Default():
                        m.d.comb += ready.eq(outstanding <= op.dma_wait)
                with m.If(~ready):
                    m.d.sync += op_wait.eq(op_wait + 1)
                with m.Else():
                    with m.Switch(op.kind):
                        with m.Case(OpKind.CONV):
                            # (the memories' ports follow the engine from the next cycle,
                            # its first read: their multiplexers see the FSM's state, not
                            # the queue's count through ``ready``)
                            m.d.comb += eng.start.eq(1)
                            m.next = "UNIT"
                        with m.Case(OpKind.MAXPOOL, OpKind.GLOBAL_SUM, OpKind.ADD):
                            m.d.comb += [reader.start.eq(1), writer.start.eq(1)]
                            m.next = "UNIT"
                        with m.Case(OpKind.LOAD, OpKind.STORE):
                            m.d.comb += [queue.w_en.eq(1), cnt_wr.en.eq(1), wait_wr.en.eq(1)]
                            m.d.sync += index.eq(index + 1)
                            m.next = "FETCH"
                        with m.Default():
                            m.d.comb += wait_wr.en.eq(1)
                            m.d.sync += state.eq(RunState.DONE)
                            m.next = "IDLE"
            with m.State("UNIT"):            # the engine or the pooling path runs the op
                is_conv = op.kind == OpKind.CONV
                m.d.comb += [conv_running.eq(is_conv), pooling.eq(~is_conv)]
                with m.If(Mux(is_conv, eng.done, writer.done)):
                    with m.If(~op.then_store | queue.w_rdy):
                        m.d.comb += [cnt_wr.en.eq(1), wait_wr.en.eq(1),
                                     queue.w_en.eq(op.then_store)]
                        m.d.sync += index.eq(index + 1)
                        m.next = "FETCH"
                    with m.Else():
                        m.d.sync += op_wait.eq(op_wait + 1)
                        m.next = "THEN_STORE"
            with m.State("THEN_STORE"):      # the op's STORE waits for room in the queue
                with m.If(queue.w_rdy):
                    m.d.comb += [cnt_wr.en.eq(1), wait_wr.en.eq(1), queue.w_en.eq(1)]
                    m.d.sync += index.eq(index + 1)
                    m.next = "FETCH"
                with m.Else():
                    m.d.sync += op_wait.eq(op_wait + 1)
        m.d.comb += queue.w_data.eq(Cat((op.kind == OpKind.STORE) | op.then_store, op.dma))
        return m
