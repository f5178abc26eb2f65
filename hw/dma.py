"""Feature-map DMA: words between the SDRAM (through hw.sdram's native port) and an on-chip
buffer of PC-byte words, as 2-D transfers.

A transfer is ``runs`` runs of ``run_words`` feature words; run r starts at feature word
``sdram_base + r * sdram_stride`` of the SDRAM's map and at ``buffer_base + r * buffer_stride``
of the buffer. A row band of a map is one run per channel group: the band's rows of a group
are consecutive words of the map (hw.layout.feature_words), the groups a plane apart.

In the SDRAM a feature word of PC bytes is ``PC * 8 / DQ`` consecutive SDRAM words, lane 0 in
the low bits of the first (``hw.layout.sdram_unit_words``): the host's image and the result are
laid out the same way, so the layouts of hw.layout hold in the SDRAM too.

``to_sdram`` chooses the direction. A load issues every read it can (the controller's read
FIFO gives the credit) and writes each feature word into the buffer as its last SDRAM word
arrives; a store reads the buffer ahead into a small FIFO and writes each word's SDRAM words.
``busy`` is high from ``start`` until the last word is whole (load: its buffer write, through a
register, lands in the next cycle) or the last SDRAM write is taken by the controller (store);
``done`` pulses in the cycle after. Throughput: one SDRAM
word per cycle while the controller takes them.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .layout import DMATarget, sdram_unit_words
from .sdram_chip import MT48LC16M16A2, SDRAMModule, cmd_layout, wdata_layout
from .timing import FM_READ_LATENCY

__all__ = ["FeatureDMA"]


class FeatureDMA(wiring.Component):
    """Ports: the transfer (``start``, ``to_sdram``, ``sdram_base``, ``buffer_base``,
    ``run_words``, ``runs``, ``sdram_stride``, ``buffer_stride``; held while ``busy``), ``busy``
    and ``done``; ``sdram_cmd``/``sdram_wdata`` (Out) and ``sdram_rdata`` (In), the controller's
    native port seen from its user; the buffer's read port (``buf_rd_addr``, data
    ``hw.timing.FM_READ_LATENCY`` cycles after: a FeatureBuffer) and write port
    (``buf_wr_*``, every bank at once)."""

    def __init__(self, cfg: AcceleratorConfig, buffer_addr_bits: int,
                 target: DMATarget = DMATarget.FEATURE, module: SDRAMModule = MT48LC16M16A2):
        self.cfg, self.module = cfg, module
        # A unit is a feature word by default; the runner's weight, codebook and bias loads
        # move units of their own: hw.layout.sdram_unit_words says how many SDRAM words.
        self.k = sdram_unit_words(cfg, target)
        self.unit_bytes = self.k * module.dq_bits // 8
        self.unit = data.ArrayLayout(8, self.unit_bytes)
        map_bits = module.addr_bits        # units addressable in the SDRAM, with room
        super().__init__({
            "start": In(1), "to_sdram": In(1),
            "sdram_base": In(map_bits), "buffer_base": In(buffer_addr_bits),
            "run_words": In(buffer_addr_bits + 1), "runs": In(16),
            "sdram_stride": In(map_bits), "buffer_stride": In(buffer_addr_bits + 1),
            "busy": Out(1), "done": Out(1),
            "sdram_cmd": Out(stream.Signature(cmd_layout(module))),
            "sdram_wdata": Out(stream.Signature(wdata_layout(module))),
            "sdram_rdata": In(stream.Signature(module.dq_bits)),
            "buf_rd_addr": Out(buffer_addr_bits), "buf_rd_data": In(self.unit),
            "buf_wr_addr": Out(buffer_addr_bits), "buf_wr_data": Out(self.unit),
            "buf_wr_en": Out(1),
        })

    def _walker(self, m: Module, name: str):
        """A (run, word) counter over the transfer: ``sdram``/``buffer`` feature-word addresses
        of the current word (registers: running addresses, no adder in front of the
        controller), ``step`` advances it, ``last`` marks the transfer's last word and
        ``last_word`` a run's."""
        run = Signal(16, name=f"{name}_run")
        word = Signal.like(self.run_words, name=f"{name}_word")
        sdram_row = Signal.like(self.sdram_base, name=f"{name}_sdram_row")
        buffer_row = Signal.like(self.buffer_base, name=f"{name}_buffer_row")
        sdram = Signal.like(self.sdram_base, name=f"{name}_sdram")
        buffer = Signal.like(self.buffer_base, name=f"{name}_buffer")
        step = Signal(name=f"{name}_step")
        last = Signal(name=f"{name}_last")
        last_word = Signal(name=f"{name}_last_word")
        # The last run and word, registered at ``start`` (the transfer is held from then on):
        # the counters compare with registers, not with subtractions of the transfer's fields,
        # in the logic that enables every address register.
        final_word = Signal.like(word, name=f"{name}_final_word")
        final_run = Signal.like(run, name=f"{name}_final_run")
        m.d.comb += [last_word.eq(word == final_word),
                     last.eq(last_word & (run == final_run))]
        with m.If(self.start & ~self.busy):
            m.d.sync += [run.eq(0), word.eq(0), sdram_row.eq(self.sdram_base),
                         buffer_row.eq(self.buffer_base), sdram.eq(self.sdram_base),
                         buffer.eq(self.buffer_base), final_word.eq(self.run_words - 1),
                         final_run.eq(self.runs - 1)]
        with m.Elif(step):
            with m.If(last_word):
                next_sdram = sdram_row + self.sdram_stride
                next_buffer = buffer_row + self.buffer_stride
                m.d.sync += [word.eq(0), run.eq(run + 1), sdram_row.eq(next_sdram),
                             buffer_row.eq(next_buffer), sdram.eq(next_sdram),
                             buffer.eq(next_buffer)]
            with m.Else():
                m.d.sync += [word.eq(word + 1), sdram.eq(sdram + 1), buffer.eq(buffer + 1)]
        return sdram, buffer, step, last, last_word

    def elaborate(self, platform):
        m = Module()
        k, dq = self.k, self.module.dq_bits
        busy = Signal()
        done = Signal()
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]
        m.d.sync += done.eq(0)
        with m.If(self.start & ~busy):
            m.d.sync += busy.eq(1)
        part = Signal(range(max(k, 2)))           # SDRAM word within the feature word
        issuing = Signal()                          # commands of the transfer still to issue

        with m.If(self.start & ~busy):
            m.d.sync += [issuing.eq(1), part.eq(0)]

        # ---- commands: one per SDRAM word, in (run, word, part) order --------------------
        cmd_sdram, cmd_buffer, cmd_step, cmd_last, cmd_last_word = self._walker(m, "cmd")
        taken = self.sdram_cmd.valid & self.sdram_cmd.ready
        m.d.comb += self.sdram_cmd.payload.we.eq(self.to_sdram)
        if k & (k - 1) == 0:
            # K a power of two: the SDRAM address is the unit's with the part below it.
            m.d.comb += self.sdram_cmd.payload.addr.eq(
                Cat(part[:(k - 1).bit_length()], cmd_sdram) if k > 1 else cmd_sdram)
        else:
            # Any other K (a zero-skipping weight word: hw.layout.skip_unit_bytes): a running
            # SDRAM word address, one up per command, and the next run's first word (its
            # unit's address times K) computed while the run is under way.
            word_addr = Signal(len(self.sdram_cmd.payload.addr))
            run_start = Signal.like(word_addr)
            stride = Signal.like(word_addr)
            m.d.comb += self.sdram_cmd.payload.addr.eq(word_addr)
            with m.If(self.start & ~busy):
                m.d.sync += [word_addr.eq(self.sdram_base * k), run_start.eq(self.sdram_base * k),
                             stride.eq(self.sdram_stride * k)]
            with m.Elif(taken):
                with m.If((part == k - 1) & cmd_last_word):
                    m.d.sync += [word_addr.eq(run_start + stride),
                                 run_start.eq(run_start + stride)]
                with m.Else():
                    m.d.sync += word_addr.eq(word_addr + 1)
        with m.If(taken):
            with m.If(part == k - 1):
                m.d.sync += part.eq(0)
                m.d.comb += cmd_step.eq(1)
                with m.If(cmd_last):
                    m.d.sync += issuing.eq(0)
            with m.Else():
                m.d.sync += part.eq(part + 1)

        # ---- store: buffer words read ahead into a FIFO, their parts written out ------------
        _, fetch_buffer, fetch_step, fetch_last, _ = self._walker(m, "fetch")
        depth = 3 + FM_READ_LATENCY
        m.submodules.ahead = ahead = SyncFIFOBuffered(width=self.unit.size, depth=depth)
        fetching = Signal()
        pending = Signal(FM_READ_LATENCY)     # reads issued 1 .. FM_READ_LATENCY cycles ago
        in_flight = Signal(range(FM_READ_LATENCY + 1))
        fetch = Signal()
        with m.If(self.start & ~busy):
            m.d.sync += fetching.eq(self.to_sdram)
        m.d.comb += [in_flight.eq(sum(pending[k] for k in range(FM_READ_LATENCY))),
                     fetch.eq(fetching & (ahead.level + in_flight < depth)),
                     self.buf_rd_addr.eq(fetch_buffer), fetch_step.eq(fetch),
                     ahead.w_en.eq(pending[-1]), ahead.w_data.eq(self.buf_rd_data)]
        m.d.sync += pending.eq(Cat(fetch, pending[:-1]))
        with m.If(fetch & fetch_last):
            m.d.sync += fetching.eq(0)
        with m.If(self.to_sdram):
            m.d.comb += [self.sdram_cmd.valid.eq(issuing & ahead.r_rdy),
                         self.sdram_wdata.valid.eq(issuing & ahead.r_rdy),
                         self.sdram_wdata.payload.data.eq(ahead.r_data.word_select(part, dq)),
                         self.sdram_wdata.payload.en.eq(-1)]
            with m.If(taken & (part == k - 1)):
                m.d.comb += ahead.r_en.eq(1)
                with m.If(cmd_last):
                    m.d.sync += [busy.eq(0), done.eq(1)]
        with m.Else():
            m.d.comb += self.sdram_cmd.valid.eq(issuing)

        # ---- load: words as they arrive, assembled, into the buffer --------------------------
        _, rd_buffer, rd_step, rd_last, _ = self._walker(m, "rdata")
        got = Signal(range(max(k, 2)))
        assembly = Signal(k * dq)
        arrive = self.sdram_rdata.valid & self.sdram_rdata.ready
        m.d.comb += self.sdram_rdata.ready.eq(busy & ~self.to_sdram)
        whole = Signal(k * dq)
        m.d.comb += whole.eq(Cat(assembly[dq:], self.sdram_rdata.payload) if k > 1
                             else self.sdram_rdata.payload)
        # The buffer's write leaves through registers (a cycle after the word is whole): the
        # read data's arrival no longer runs to a memory across the chip in the same cycle.
        # ``done`` still comes after it: a consumer reads the buffer later than that.
        m.d.sync += self.buf_wr_en.eq(0)
        with m.If(arrive):
            with m.If(got == k - 1):
                m.d.sync += got.eq(0)
                m.d.sync += [self.buf_wr_addr.eq(rd_buffer), self.buf_wr_data.eq(whole),
                             self.buf_wr_en.eq(1)]
                m.d.comb += rd_step.eq(1)
                with m.If(rd_last):
                    m.d.sync += [busy.eq(0), done.eq(1)]
            with m.Else():
                m.d.sync += [got.eq(got + 1), assembly.eq(whole)]
        with m.If(self.start & ~busy):
            m.d.sync += got.eq(0)
        return m
