"""Convolution engine: codebook-decoded weights, a PO x PC MAC array, requantisation, ReLU.

One engine computes one convolution layer (1x1, 3x3 with padding, k x k with stride) from a
banked input feature map into a banked output feature map, exactly as golden/reference_int.py
``conv`` (docs/NUMERICS.md). It is output-stationary: for each group of PO output channels and
each output pixel, it steps through the input-channel groups (PC channels at a time) and kernel
taps, accumulating PO sums, then requantises them.

Feature maps are split into PC banks by channel: channel c lives in bank ``c % PC`` at word
``(c // PC) * H * W + y * W + x``. So the PC input channels of one step are one word address
read from every bank, and PO output channels (PO a multiple of PC) are written PC at a time.

Weights are codebook indices, PO*PC per word, word ``weight_base + ((og * CG + cg) * k + i) * k
+ j`` holding index ``[po * PC + t]`` for output channel ``og*PO + po``, input channel
``cg*PC + t``, tap (i, j). Channels beyond the layer's count hold index 0; every codebook's
entry 0 is 0, so they contribute nothing whatever the bank holds there. Without codebook
tables (``AcceleratorConfig.codebook_tables`` 0) the words hold the signed values themselves
(the host looks the codebook up): no codebook copy per multiplier, whose block RAMs are what
keeps more multipliers off the chip.

Pipeline (one step per cycle, throughput 1 step/cycle; latency from the step's issue to its
output bytes being written: ``ENGINE_LATENCY`` cycles plus the drain position; every latency
is stated in hw/timing.py):

    S0  counters -> feature-map and weight addresses (memories read synchronously; the
        feature-map buffer answers ``FM_READ_LATENCY`` cycles later, so the weight address
        is delayed to match)
    S1  feature-map bytes (zero outside the image) and the weight word, registered
    S1b both registered again (the weight word fans out to every codebook memory)
    S2  codebook reads (one per multiplier; without codebooks the value is registered)
    S3  codebook values registered
    S4  the multipliers' input registers (hw/dsp.py: inside the hard multipliers on the ECP5)
    S4b PO*PC products in the multipliers' output registers
    S4c the products registered again in the fabric, beside the adder tree; bias read
    S5  PC-input adder tree per output lane; bias registered
    S6  accumulate (first step of a pixel starts from the bias); last step snapshots PO sums
    D0..    the drain's residual read (RESIDUAL_READ_LATENCY cycles; the sums wait beside it)
    R0..R4  PC requantisation lanes (``Requantizer``, R3 in two stages) drain the PO sums,
            PO/PC cycles; then PC bytes are written

If a pixel has fewer steps than the drain needs (CG*k*k < PO/PC), the counters insert idle
cycles so that sums never arrive faster than they drain; ``cycles`` counts them.

With ``AcceleratorConfig.zero_skipping`` the same pipeline reads the zero-skipping format
(hw.layout.skip_words): a run is one chunk of output groups (its rows), words carry values
(no codebook memories), each multiplier picks its activation and adds into its own row's
partial sum, and the drain takes a row at a time (``_skip_accumulate``; docs/ARCHITECTURE.md,
"Zero-weight skipping").
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig, address_bits
from .dsp import RegisteredMultiplier
from .layout import SKIP_ROWS, descriptor_layout, pixel_layout, skip_entry_layout
from .timing import FM_READ_LATENCY, REQUANT_LATENCY, RESIDUAL_READ_LATENCY, SKIP_DRAIN_LATENCY

__all__ = ["ConvEngine", "Requantizer", "parameter_signatures"]


def parameter_signatures(cfg: AcceleratorConfig) -> dict:
    """The engine's parameter memories as write ports (a top level passes them through with
    ``wiring.connect(m, wiring.flipped(self.weight_wr), engine.weight_wr)``). The signature is
    amaranth.lib.memory's, written from the memory's side, so a component that takes the writes
    has it as an ``Out`` member:

    - ``weight_wr``: word ``addr`` of PO*PC indices (hw.layout.weight_lanes; without codebook
      tables, values), ``en`` one bit per entry (all ones writes a whole word; the device's
      sparse decoder sets one); with
      zero-skipping a word of PO*PC entries and the ``last`` granule
      (hw.layout.skip_word_bits), written whole;
    - ``codebook_wr``: entry ``table * 2**index_bits + index``, a signed value;
    - ``bias_wr``: bias ``word * PO + lane``, a signed accumulator value.
    """
    granule = skip_entry_layout(cfg).size if cfg.zero_skipping else cfg.weight_bits
    # A zero-skipping word: PO*PC entries, and a last granule whose bit 0 marks a step's last
    # word (hw.layout.skip_word_values).
    word = granule * (cfg.lanes + cfg.zero_skipping)
    return {
        "weight_wr": Out(memory.WritePort.Signature(
            addr_width=cfg.weight_addr_bits, shape=word, granularity=granule)),
        "codebook_wr": Out(memory.WritePort.Signature(
            addr_width=address_bits(cfg.codebook_tables * cfg.codebook_entries),
            shape=signed(cfg.value_bits))),
        "bias_wr": Out(memory.WritePort.Signature(
            addr_width=cfg.bias_addr_bits + address_bits(cfg.po), shape=signed(cfg.acc_bits))),
    }


class Requantizer(wiring.Component):
    """y = clamp((acc * M + res * Mr + 2**(S-1)) >> S, 0, 2**ACT_BITS - 1) (docs/NUMERICS.md;
    ``res_mult`` = 0 for a plain convolution, a residual byte and its multiplier for the
    complex bypass's add), one value per cycle, ``REQUANT_LATENCY`` cycles from ``acc`` (and
    ``res``) to ``y`` (``mult``/``shift``/``res_mult`` held).

    The ACC_BITS x MULT_BITS product is split in two halves that each fit one 18x18 hard
    multiplier: R0-R1 the registered multipliers (hw/dsp.py), R1b both products registered again
    in the fabric (the route out of the multiplier column in a cycle of its own), R2 their sum,
    R3a add the rounding constant (with the residual's product: a third registered multiplier,
    summed with the constant at R2), R3b shift, R4 clamp. Verified for every signed 32-bit
    ``acc``, 16-bit ``mult`` and shift 1..47 against golden.reference_int.requantize
    (tests/test_hw_conv.py)."""

    LO_BITS = 16

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        super().__init__({"acc": In(signed(cfg.acc_bits)), "mult": In(cfg.mult_bits),
                          "shift": In(cfg.shift_bits), "res": In(cfg.act_bits),
                          "res_mult": In(cfg.mult_bits), "y": Out(cfg.act_bits)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lo_bits, hi_bits = self.LO_BITS, cfg.acc_bits - self.LO_BITS
        width = cfg.requant_product_bits + 2
        m.submodules.lo = mul_lo = RegisteredMultiplier(unsigned(lo_bits), unsigned(cfg.mult_bits),
                                                        cfg.dsp_primitives)
        m.submodules.hi = mul_hi = RegisteredMultiplier(signed(hi_bits), unsigned(cfg.mult_bits),
                                                        cfg.dsp_primitives)
        m.submodules.res = mul_res = RegisteredMultiplier(unsigned(cfg.act_bits),
                                                          unsigned(cfg.mult_bits),
                                                          cfg.dsp_primitives)
        m.d.comb += [mul_lo.a.eq(self.acc[:lo_bits]), mul_lo.b.eq(self.mult),
                     mul_hi.a.eq(self.acc[lo_bits:].as_signed()), mul_hi.b.eq(self.mult),
                     mul_res.a.eq(self.res), mul_res.b.eq(self.res_mult)]
        p_res = Signal.like(mul_res.p, reset_less=True)
        m.d.sync += p_res.eq(mul_res.p)                                                  # R1b
        p_lo = Signal(lo_bits + cfg.mult_bits, reset_less=True)
        p_hi = Signal.like(mul_hi.p, reset_less=True)
        m.d.sync += [p_lo.eq(mul_lo.p[:lo_bits + cfg.mult_bits]), p_hi.eq(mul_hi.p)]   # R1b
        product = Signal(signed(width), reset_less=True)
        m.d.sync += product.eq((p_hi << lo_bits) + p_lo)                                 # R2
        # The shift is held for a whole layer: its rounding constant and the shift itself
        # come from registers beside the lane, not from the descriptor across the chip.
        shift = Signal.like(self.shift, reset_less=True)
        half = Signal(width, reset_less=True)
        m.d.sync += [shift.eq(self.shift), half.eq((Const(1, width) << self.shift) >> 1)]
        constant = Signal(width, reset_less=True)       # the rounding constant + residual
        m.d.sync += constant.eq(half + p_res)                                            # R2
        rounded = Signal(signed(width), reset_less=True)
        m.d.sync += rounded.eq(product + constant)                                       # R3a
        shifted = Signal(signed(width), reset_less=True)
        m.d.sync += shifted.eq(rounded >> shift)                                         # R3b
        top = (1 << cfg.act_bits) - 1
        y = Signal(cfg.act_bits, reset_less=True)
        m.d.sync += y.eq(Mux(shifted < 0, 0, Mux(shifted > top, top, shifted[:cfg.act_bits])))
        m.d.comb += self.y.eq(y)                                                         # R4
        return m


class ConvEngine(wiring.Component):
    """Ports (direction from the engine's side):

    - ``desc`` (In, hw.layout.descriptor_layout, held while ``busy``): channels, sizes,
      kernel/stride/pad, requantisation ``mult``/``shift``, ``weight_base``,
      ``codebook_table``, ``bias_base``, ``out_channel_base`` (a multiple of PC: where the
      output channels start, for the Fire concat), and the host-derived increments;
    - ``start`` (In, one cycle) / ``busy``, ``done`` (Out, ``done`` one cycle at the end);
    - ``fm_rd_addr`` (Out) / ``fm_rd_data`` (In, PC bytes, valid ``FM_READ_LATENCY`` cycles
      after the address: hw/conv_layer.py FeatureBuffer);
    - ``fm_wr_addr``/``fm_wr_data``/``fm_wr_en`` (Out, per bank);
    - ``res_mult`` (In, held while ``busy``) and ``res_rd_addr`` (Out) / ``res_rd_data`` (In):
      with ``res_mult`` set, the byte of output lane t at the output word's address of a
      buffer is added, times ``res_mult``, before requantisation (``Requantizer``);
    - ``weight_wr``, ``codebook_wr``, ``bias_wr`` (``parameter_signatures``): load the
      parameter memories;
    - ``cycles`` (Out): cycles of the last run, from ``start`` to ``done``.
    """

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        pc = cfg.pc
        fa = cfg.fm_addr_bits
        self.fm_addr_bits = fa
        super().__init__({
            "desc": In(descriptor_layout(cfg)),
            "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32),
            "fm_rd_addr": Out(fa), "fm_rd_data": In(pixel_layout(cfg)),
            "fm_wr_addr": Out(data.ArrayLayout(fa, pc)),
            "fm_wr_data": Out(pixel_layout(cfg)),
            "fm_wr_en": Out(pc),
            # The residual operand of a pass (the complex bypass): word ``res_rd_addr`` of a
            # buffer answers FM_READ_LATENCY cycles on; byte t is output lane t's.
            "res_mult": In(cfg.mult_bits),
            "res_rd_addr": Out(fa), "res_rd_data": In(pixel_layout(cfg)),
            **parameter_signatures(cfg),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        po, pc, ib, vb = cfg.po, cfg.pc, cfg.index_bits, cfg.value_bits
        drain = po // pc

        # ---- parameter memories ------------------------------------------------------------
        desc = self.desc
        skip = cfg.zero_skipping
        eb = skip_entry_layout(cfg).size if skip else cfg.weight_bits
        weights = memory.Memory(shape=eb * po * pc, depth=cfg.weight_depth, init=[])
        m.submodules.weights = weights
        # (zero-skipping words, and words of values, are written whole, by a LOAD: one write
        # enable, so the block RAMs pack the 19- or 12-bit entries without regard to their
        # byte enables: 36 bits a block RAM instead of 24)
        whole = skip or not cfg.codebooks
        w_wr = weights.write_port() if whole else weights.write_port(granularity=eb)
        w_rd = weights.read_port()
        if whole:
            # the entries; a zero-skipping word's last granule's bit goes to ``lasts``
            m.d.comb += [w_wr.addr.eq(self.weight_wr.addr),
                         w_wr.data.eq(self.weight_wr.data[:po * pc * eb]),
                         w_wr.en.eq(self.weight_wr.en[0])]
        else:
            wiring.connect(m, wiring.flipped(self.weight_wr), w_wr)
        if skip:
            # The words' last-of-step bits again, in distributed RAM: the counters must know
            # whether the word they issue ends its step, so the bit is read a word ahead.
            lasts = memory.Memory(shape=1, depth=cfg.weight_depth, init=[],
                                  attrs={"ram_style": "distributed"})
            m.submodules.lasts = lasts
            l_wr = lasts.write_port()
            l_next = lasts.read_port(domain="comb")
            l_first = lasts.read_port(domain="comb")
            m.d.comb += [l_wr.addr.eq(self.weight_wr.addr),
                         l_wr.data.eq(self.weight_wr.data[po * pc * eb]),
                         l_wr.en.eq(self.weight_wr.en[po * pc])]
        # One codebook copy per multiplier: each reads its own entry every cycle. (Zero-skipping
        # words, and dense words without codebook tables, hold the values: no codebook.)
        cb_rd = []
        for lane in range(po * pc if cfg.codebooks else 0):
            cb = memory.Memory(shape=signed(vb), depth=cfg.codebook_tables * cfg.codebook_entries,
                               init=[])
            m.submodules[f"codebook{lane}"] = cb
            wr = cb.write_port()
            m.d.comb += [wr.addr.eq(self.codebook_wr.addr), wr.data.eq(self.codebook_wr.data),
                         wr.en.eq(self.codebook_wr.en)]
            cb_rd.append(cb.read_port())
        # Biases in distributed RAM: a block RAM's 6 ns clock-to-output plus the route from
        # wherever the placer puts 16 small block RAMs left no time in a 100 MHz cycle.
        bias_rd = []
        for lane in range(po):
            bm = memory.Memory(shape=signed(cfg.acc_bits), depth=cfg.bias_depth, init=[],
                               attrs={"ram_style": "distributed"})
            m.submodules[f"bias{lane}"] = bm
            wr = bm.write_port()
            lane_bits = address_bits(po)
            m.d.comb += [wr.addr.eq(self.bias_wr.addr[lane_bits:]), wr.data.eq(self.bias_wr.data),
                         wr.en.eq(self.bias_wr.en & (self.bias_wr.addr[:lane_bits] == lane))]
            # (zero-skipping: read at the drain, a row's address each PO/PC cycles)
            bias_rd.append(bm.read_port(domain="comb") if skip else bm.read_port())

        # ---- S0: loop counters and addresses (adders only; increments come from the host) ---
        cgroups, ogroups, steps = desc.cgroups, desc.ogroups, desc.steps
        og, cg = (Signal(cfg.channel_bits, name=n) for n in ("og", "cg"))
        oy, ox = (Signal(cfg.side_bits, name=n) for n in ("oy", "ox"))
        ki, kj = (Signal(cfg.kernel_bits, name=n) for n in ("ki", "kj"))
        # A pixel's drain: PO/PC cycles an output group; a zero-skipping run drains its chunk's
        # ``ogroups`` rows of a pixel at once.
        drain_len = Signal(range(drain * SKIP_ROWS + 1))
        m.d.comb += drain_len.eq(desc.ogroups * drain if skip else drain)
        gap = Signal(range(drain * SKIP_ROWS + 1))   # idle cycles still owed before the next pixel
        running = Signal()
        s0_valid = Signal()
        m.d.comb += s0_valid.eq(running & (gap == 0))
        # Top-left input coordinate of the current output pixel, and its word address.
        # (Coordinates: the side, the overhang of padding and kernel, the sign. Addresses wrap
        # at the memory's address bits, which AcceleratorConfig makes a power of two.)
        coord = signed(cfg.side_bits + 3)
        y0 = Signal(coord)
        x0 = Signal(coord)
        row_addr = Signal(signed(cfg.fm_offset_bits))  # address of (y0, 0) in channel group 0
        fm_addr = Signal(signed(cfg.fm_offset_bits))   # of (y0 + ki, x0 + kj) in group cg
        og_weight = Signal(cfg.weight_addr_bits)  # weight word where the output group starts
        w_addr = Signal(cfg.weight_addr_bits)     # the weight word being read
        pixel = Signal(cfg.plane_bits)            # oy * out_w + ox, counted

        yy = Signal(coord)
        xx = Signal(coord)
        m.d.comb += [yy.eq(y0 + ki), xx.eq(x0 + kj)]
        inside = Signal()
        m.d.comb += inside.eq((yy >= 0) & (yy < desc.in_h) & (xx >= 0) & (xx < desc.in_w))
        # The weight memory answers the cycle after its address, the feature-map buffer
        # FM_READ_LATENCY cycles after: the weight address waits for the difference.
        w_addr_late = w_addr
        for k in range(FM_READ_LATENCY - 1):
            q = Signal.like(w_addr, name=f"w_addr_q{k}")
            m.d.sync += q.eq(w_addr_late)
            w_addr_late = q
        m.d.comb += [self.fm_rd_addr.eq(fm_addr), w_rd.addr.eq(w_addr_late)]
        # Whether the issued word ends its step (dense: every word does).
        word_last = Signal()
        if skip:
            # A register, loaded a cycle ahead: the next word is the one after, or at a pixel's
            # end the chunk's first again (a zero-skipping run's words start at weight_base).
            # So no memory read sits in front of the counters' enables.
            first_last = Signal()
            m.d.comb += [l_next.addr.eq(w_addr + 1), l_first.addr.eq(desc.weight_base)]
        else:
            m.d.comb += word_last.eq(1)
        # The loops' last values, registered at ``start`` (the descriptor is held from then
        # on): the counters compare with registers, not with subtractions of the descriptor,
        # in the enable chain that runs through every counter.
        last_kh, last_kw = Signal.like(ki), Signal.like(kj)
        last_cg, last_og = Signal.like(cg), Signal.like(og)
        last_ox, last_oy = Signal.like(ox), Signal.like(oy)
        # Fewer steps a pixel than the drain's cycles: a comparison with a constant, left as
        # wires (registered at ``start`` like the others, it stops Yosys 0.70's ABC9
        # pass with an internal assertion).
        short_pixel = Signal()
        m.d.comb += short_pixel.eq(steps < drain_len)
        first = Signal()
        last_step = Signal()
        m.d.comb += [first.eq((cg == 0) & (ki == 0) & (kj == 0)),
                     last_step.eq((cg == last_cg) & (ki == last_kh) & (kj == last_kw)
                                  & word_last)]

        cycles = Signal(32)
        busy = Signal()
        m.d.comb += [self.busy.eq(busy), self.cycles.eq(cycles)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        if skip:
            with m.If(self.start & ~busy):
                m.d.sync += [word_last.eq(l_first.data), first_last.eq(l_first.data)]
            with m.Elif(s0_valid):
                m.d.sync += word_last.eq(Mux(last_step, first_last, l_next.data))

        neg_pad = Signal(coord)
        m.d.comb += neg_pad.eq(-desc.pad_w)     # the rows' padding is in y_origin
        og_out = Signal(cfg.fm_addr_bits)   # first output word of the current output group
        with m.If(self.start & ~busy):
            m.d.sync += [busy.eq(1), running.eq(1), cycles.eq(1), og.eq(0), oy.eq(0), ox.eq(0),
                         cg.eq(0), ki.eq(0), kj.eq(0), gap.eq(0),
                         y0.eq(desc.y_origin), x0.eq(neg_pad), og_weight.eq(desc.weight_base),
                         w_addr.eq(desc.weight_base), pixel.eq(0),
                         row_addr.eq(desc.pixel_origin), fm_addr.eq(desc.pixel_origin),
                         og_out.eq(desc.out_base_word)]
            m.d.sync += [last_kh.eq(desc.kernel - 1), last_kw.eq(desc.kernel_w - 1),
                         last_cg.eq(cgroups - 1),
                         # (a zero-skipping run is one chunk: its rows drain together)
                         last_og.eq(0 if skip else ogroups - 1), last_ox.eq(desc.out_w - 1),
                         last_oy.eq(desc.out_h - 1)]
        with m.Elif(running & (gap != 0)):
            m.d.sync += gap.eq(gap - 1)
        with m.Elif(s0_valid):
            m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(word_last & (kj == last_kw)):
                m.d.sync += kj.eq(0)
                with m.If(ki == last_kh):
                    m.d.sync += ki.eq(0)
                    with m.If(cg == last_cg):
                        # Pixel finished: owe idle cycles if the drain is longer than the pixel.
                        m.d.sync += [cg.eq(0), pixel.eq(pixel + 1),
                                     w_addr.eq(og_weight)]
                        with m.If(short_pixel):
                            m.d.sync += gap.eq(drain_len - steps)
                        with m.If(ox == last_ox):
                            m.d.sync += [ox.eq(0), x0.eq(neg_pad)]
                            with m.If(oy == last_oy):
                                m.d.sync += [oy.eq(0), y0.eq(desc.y_origin), pixel.eq(0),
                                             row_addr.eq(desc.pixel_origin),
                                             fm_addr.eq(desc.pixel_origin),
                                             og_weight.eq(og_weight + steps),
                                             w_addr.eq(og_weight + steps),
                                             og_out.eq(og_out + desc.out_group_step)]
                                with m.If(og == last_og):
                                    m.d.sync += running.eq(0)
                                with m.Else():
                                    m.d.sync += og.eq(og + 1)
                            with m.Else():
                                m.d.sync += [oy.eq(oy + 1), y0.eq(y0 + desc.stride),
                                             row_addr.eq(row_addr + desc.step_oy),
                                             fm_addr.eq(row_addr + desc.step_oy)]
                        with m.Else():
                            m.d.sync += [ox.eq(ox + 1), x0.eq(x0 + desc.stride),
                                         fm_addr.eq(row_addr + (x0 + desc.stride + desc.pad_w))]
                    with m.Else():
                        m.d.sync += [cg.eq(cg + 1), fm_addr.eq(fm_addr + desc.step_group)]
                with m.Else():
                    m.d.sync += [ki.eq(ki + 1), fm_addr.eq(fm_addr + desc.step_row)]
            with m.Elif(word_last):
                m.d.sync += [kj.eq(kj + 1), fm_addr.eq(fm_addr + 1)]

        # Control travelling with each step.
        # (``step_end``: the word ends its step; zero-skipping keeps that step's activations)
        ctrl = data.StructLayout({"valid": 1, "inside": 1, "first": 1, "last": 1,
                                  "step_end": 1,
                                  "og": cfg.channel_bits, "out_word": cfg.fm_addr_bits})
        issued = Signal(ctrl)
        m.d.sync += [issued.valid.eq(s0_valid), issued.inside.eq(inside), issued.first.eq(first),
                     issued.last.eq(last_step), issued.step_end.eq(word_last), issued.og.eq(og),
                     issued.out_word.eq(og_out + pixel)]

        def delayed(prev, name):
            nxt_ctrl = Signal(ctrl, name=name)
            m.d.sync += nxt_ctrl.eq(prev)
            return nxt_ctrl

        # The control reaches S1 with the feature-map read's data.
        reading = [issued]
        for k in range(FM_READ_LATENCY - 1):
            reading.append(delayed(reading[-1], f"s0_read{k}"))
        s1 = reading[-1]

        # ---- S1: the weight word and the activations arrive; both are registered ---------------
        # (A memory's output goes straight into a register on every path: the block RAMs'
        # clock-to-output time is a third of a 100 MHz cycle by itself.)
        # Data registers carry no reset: valid bits travel beside them, and a reset would put a
        # multiplexer between each memory output and its register.
        w1 = Signal(len(w_rd.data), reset_less=True)
        m.d.sync += w1.eq(w_rd.data)
        x1 = Signal(pixel_layout(cfg), reset_less=True)
        for t in range(pc):
            m.d.sync += x1[t].eq(Mux(s1.inside, self.fm_rd_data[t], 0))
        s1b = delayed(s1, "s1b")

        # ---- S1b: the weight word registered again, to travel to the codebook memories --------
        # (w1 sits by the weight memory, w1b by the codebooks it fans out to.)
        w1b = Signal.like(w1, reset_less=True)
        m.d.sync += w1b.eq(w1)
        x1b = Signal.like(x1, reset_less=True)
        m.d.sync += x1b.eq(x1)
        s2 = delayed(s1b, "s2")

        # ---- S2: codebook reads ------------------------------------------------------------------
        # (a zero-skipping entry: its value, ``act`` and ``row``, hw.layout.skip_entry_layout;
        # the value is registered here where a codebook would be read)
        entry = skip_entry_layout(cfg)
        acts, rows, read = [], [], []
        for lane in range(po * pc):
            if skip:
                e = entry(w1b[lane * eb:(lane + 1) * eb])
                acts.append(e.act)
                rows.append(e.row)
                v = Signal(signed(vb), name=f"value{lane}_s3", reset_less=True)
                m.d.sync += v.eq(e.value)
                read.append(v)
            elif not cfg.codebooks:
                # the value itself, registered where a codebook would be read
                v = Signal(signed(vb), name=f"value{lane}_s3", reset_less=True)
                m.d.sync += v.eq(w1b[lane * eb:(lane + 1) * eb].as_signed())
                read.append(v)
            else:
                # table * 2**ib + idx, as wires: no adder in front of the codebook memories.
                idx = w1b[lane * eb:lane * eb + ib]
                m.d.comb += cb_rd[lane].addr.eq(Cat(idx, desc.codebook_table))
                read.append(cb_rd[lane].data)
        x2 = Signal.like(x1, reset_less=True)
        m.d.sync += x2.eq(x1b)
        s3 = delayed(s2, "s3")

        # ---- S3: codebook values registered ---------------------------------------------------
        values = [Signal(signed(vb), name=f"value{lane}", reset_less=True)
                  for lane in range(po * pc)]
        m.d.sync += [values[lane].eq(read[lane]) for lane in range(po * pc)]
        x3 = Signal.like(x1, reset_less=True)
        m.d.sync += x3.eq(x2)
        s4 = delayed(s3, "s4")

        # ---- S4, S4b: products, through a registered multiplier (hw/dsp.py: its input
        # registers are S4, its output register S4b); bias read ---------------------------------
        # S4c: the products registered again in the fabric, beside the adder tree: the route
        # out of the multiplier column gets a cycle of its own.
        prod = []
        if skip:
            # The step before's activations, kept as its last word passes: an entry's ``act``
            # picks one of the step's PC bytes or of those (hw.layout.skip_words). Every
            # multiplier selects from all 2*PC bytes, so each output lane group gets its own
            # copy of them (a fan-out of PC multiplexers per bit, as in the dense engine,
            # instead of PO*PC).
            windows = []
            for o in range(po):
                x_now = Signal.like(x3, name=f"x3_{o}", reset_less=True)
                m.d.sync += x_now.eq(x2)
                x_prev = Signal.like(x3, name=f"x_prev{o}", reset_less=True)
                with m.If(s4.valid & s4.step_end):
                    m.d.sync += x_prev.eq(x_now)
                window = Signal(data.ArrayLayout(cfg.act_bits, 2 * pc), name=f"window{o}")
                m.d.comb += window.eq(Cat(x_now, x_prev))
                windows.append(window)
        for lane in range(po * pc):
            mul = RegisteredMultiplier(signed(vb), unsigned(cfg.act_bits), cfg.dsp_primitives)
            m.submodules[f"mac{lane}"] = mul
            if skip:
                # the entry's input lane, registered beside the codebook read (S2, S3)
                act = acts[lane]
                for k in range(2):
                    q = Signal.like(act, name=f"act{lane}_s{3 + k}", reset_less=True)
                    m.d.sync += q.eq(act)
                    act = q
                m.d.comb += [mul.a.eq(values[lane]), mul.b.eq(windows[lane // pc][act])]
            else:
                m.d.comb += [mul.a.eq(values[lane]), mul.b.eq(x3[lane % pc])]
            p = Signal.like(mul.p, name=f"prod{lane}", reset_less=True)
            m.d.sync += p.eq(mul.p)
            prod.append(p)
        s4b = delayed(s4, "s4b")
        s4c = delayed(s4b, "s4c")
        if not skip:
            for o in range(po):
                m.d.comb += bias_rd[o].addr.eq(desc.bias_base + s4c.og)
        s5 = delayed(s4c, "s5")
        if skip:
            drain_regs, drain_valid, drain_at, in_drain, s6 = self._skip_accumulate(
                m, prod, rows, s5, delayed, bias_rd)
        else:
            drain_regs, drain_valid, drain_at, in_drain, s6 = self._dense_accumulate(
                m, prod, s5, delayed, bias_rd)

        # ---- R0..R4: PC requantisation lanes ---------------------------------------------------
        # Lane t takes the sum in drain_regs[t] (output lane d*PC + t, bank t, ``drain_word``);
        # the valid bit and the address travel beside the lanes' pipelines.
        # The residual's word is read first (its address registered, then the buffer's
        # read: RESIDUAL_READ_LATENCY cycles); the sums wait for it on their way to the lanes.
        stages = RESIDUAL_READ_LATENCY + REQUANT_LATENCY
        stage_valid = [Signal(name=f"rq_valid{k}") for k in range(stages)]
        stage_addr = [Signal(self.fm_addr_bits, name=f"rq_addr{k}") for k in range(stages)]
        m.d.sync += [stage_valid[0].eq(drain_valid), stage_addr[0].eq(drain_at)]
        for k in range(1, stages):
            m.d.sync += [stage_valid[k].eq(stage_valid[k - 1]), stage_addr[k].eq(stage_addr[k - 1])]
        res_addr = Signal(self.fm_addr_bits)
        m.d.sync += res_addr.eq(drain_at)
        m.d.comb += self.res_rd_addr.eq(res_addr)
        out_bytes = Signal(pixel_layout(cfg))
        for t in range(pc):
            rq = Requantizer(cfg)
            m.submodules[f"requant{t}"] = rq
            waiting = drain_regs[t]
            for k in range(RESIDUAL_READ_LATENCY):
                q = Signal.like(waiting, name=f"drain{t}_wait{k}", reset_less=True)
                m.d.sync += q.eq(waiting)
                waiting = q
            m.d.comb += [rq.acc.eq(waiting), rq.mult.eq(desc.mult), rq.shift.eq(desc.shift),
                         rq.res.eq(self.res_rd_data[t]), rq.res_mult.eq(self.res_mult),
                         out_bytes[t].eq(rq.y)]
        m.d.comb += [self.fm_wr_addr.eq(Cat(stage_addr[-1] for _ in range(pc))),
                     self.fm_wr_data.eq(out_bytes),
                     self.fm_wr_en.eq(Mux(stage_valid[-1], (1 << pc) - 1, 0))]

        # ---- done: nothing left in flight -------------------------------------------------------
        idle = Signal()
        steps_in_flight = (*reading, s1b, s2, s3, s4, s4b, s4c, s5, s6)
        m.d.comb += idle.eq(~running & ~Cat(st.valid for st in steps_in_flight).any()
                            & ~in_drain & ~Cat(stage_valid).any())
        # ``done`` is registered: a combinational pulse would glitch in event-driven simulators
        # while ``busy`` and ``running`` update in the same time step.
        done = Signal()
        m.d.comb += self.done.eq(done)
        m.d.sync += done.eq(0)
        with m.If(busy & idle):
            m.d.sync += [busy.eq(0), done.eq(1)]
        return m

    def _dense_accumulate(self, m, prod, s5, delayed, bias_rd):
        """S5, S6 and the drain of the dense engine. Returns (the drain's PO sums, whose first
        PC the requantisation lanes read; valid; the output word; whether it is draining)."""
        cfg = self.cfg
        po, pc, drain, desc = cfg.po, cfg.pc, cfg.po // cfg.pc, self.desc
        # ---- S5: adder tree over the PC input lanes; bias registered ------------------------
        sums = [Signal(signed(cfg.acc_bits), name=f"sum{o}", reset_less=True) for o in range(po)]
        for o in range(po):
            m.d.sync += sums[o].eq(sum(prod[o * pc + t] for t in range(pc)))
        bias_q = [Signal(signed(cfg.acc_bits), name=f"bias{o}", reset_less=True) for o in range(po)]
        m.d.sync += [bias_q[o].eq(bias_rd[o].data) for o in range(po)]
        s6 = delayed(s5, "s6")

        # ---- S6: accumulate; the last step of a pixel hands the sums to the drain ------------
        acc = [Signal(signed(cfg.acc_bits), name=f"acc{o}") for o in range(po)]
        nxt = [Signal(signed(cfg.acc_bits), name=f"acc_next{o}") for o in range(po)]
        for o in range(po):
            m.d.comb += nxt[o].eq(Mux(s6.first, bias_q[o], acc[o]) + sums[o])
            with m.If(s6.valid):
                m.d.sync += acc[o].eq(nxt[o])

        # The drain is a shift register: the last step of a pixel loads its PO sums; each
        # drain cycle moves them down by PC, so requantisation lane t always reads entry t
        # (no multiplexer in front of the multipliers).
        drain_regs = [Signal(signed(cfg.acc_bits), name=f"drain{o}") for o in range(po)]
        drain_word = Signal(cfg.fm_addr_bits)   # output word of drain step d: one per bank
        draining = Signal()
        d = Signal(range(drain + 1))
        with m.If(s6.valid & s6.last):
            m.d.sync += [drain_regs[o].eq(nxt[o]) for o in range(po)]
            m.d.sync += [drain_word.eq(s6.out_word), draining.eq(1), d.eq(0)]
        with m.Elif(draining):
            m.d.sync += [drain_regs[o].eq(drain_regs[o + pc]) for o in range(po - pc)]
            m.d.sync += drain_word.eq(drain_word + desc.out_plane)
            with m.If(d == drain - 1):
                m.d.sync += draining.eq(0)
            with m.Else():
                m.d.sync += d.eq(d + 1)

        return drain_regs, draining, drain_word, draining, s6

    def _skip_accumulate(self, m, prod, rows, s5, delayed, bias_rd):
        """S5, S6 and the drain of the zero-skipping engine.

        Each multiplier adds its product to its own partial sum of the entry's row, in a
        file of 2 x SKIP_ROWS sums (distributed RAM, read and written in S6): one bank for the
        pixel being accumulated, the other for the pixel draining. A ``touched`` bit per sum
        says whether this pixel wrote it yet (a sum not touched reads as 0), so no cycle is
        spent clearing. The drain takes a row every PO/PC cycles: each lane's PC partial sums
        of that row plus the row's bias make its PO sums, which then shift out PC a cycle as
        in the dense drain, SKIP_DRAIN_LATENCY cycles later than there (the reads registered,
        then the sums in two adder stages)."""
        cfg = self.cfg
        po, pc, drain, desc = cfg.po, cfg.pc, cfg.po // cfg.pc, self.desc
        row_bits = (SKIP_ROWS - 1).bit_length()
        sub_bits = (drain - 1).bit_length()
        # S5: the products and their rows registered (the dense engine's adder tree stage).
        s6 = delayed(s5, "s6")
        p6 = []
        row5s, row6 = [], []
        for lane, p in enumerate(prod):
            q = Signal.like(p, name=f"prod{lane}_s6", reset_less=True)
            m.d.sync += q.eq(p)
            p6.append(q)
            r = rows[lane]
            for k in range(6):       # S2 -> S6: S3, S4, S4b, S4c, S5, S6
                nr = Signal.like(r, name=f"row{lane}_s{k}", reset_less=True)
                m.d.sync += nr.eq(r)
                r = nr
                if k == 4:
                    row5s.append(r)
            row6.append(r)

        bank = Signal()                 # the bank the accumulating pixel writes
        draining = Signal()
        d = Signal(range(drain * SKIP_ROWS + 1))
        drain_bank = Signal()
        drain_word = Signal(cfg.fm_addr_bits)
        last_d = Signal.like(d)
        m.d.comb += last_d.eq(desc.ogroups * drain - 1)
        drain_row = Signal(row_bits)
        m.d.comb += drain_row.eq(d >> sub_bits)
        row_start = Signal()            # a drain cycle that reads a row's partial sums
        m.d.comb += row_start.eq(draining & (d[:sub_bits] == 0) if sub_bits else draining)

        # S6: read-modify-write of each multiplier's partial sum. Each bank is its own memory
        # with one read port: the bank accumulating reads at the product's row, the bank
        # draining at the drain's row (they never swap while a drain is in flight: a pixel
        # takes at least the drain's cycles, hw.timing.engine_cycles), so each partial sum is
        # stored once. Whether a sum was touched this pixel is looked up a cycle early (S5,
        # from the bits as they will be after S6's write and the drain's clear), so the loop
        # through S6 is only the distributed RAM's read, an AND and the add.
        partial = [[None] * pc for _ in range(po)]
        for lane in range(po * pc):
            reads, masks = [], []
            row5, r6 = row5s[lane], row6[lane]
            for b in range(2):
                sums = memory.Memory(shape=signed(cfg.acc_bits), depth=SKIP_ROWS, init=[],
                                     attrs={"ram_style": "distributed"})
                m.submodules[f"partial{lane}_{b}"] = sums
                wr = sums.write_port()
                rd = sums.read_port(domain="comb")
                here = bank == b
                touched = Signal(SKIP_ROWS, name=f"touched{lane}_{b}")
                nxt = Signal(SKIP_ROWS, name=f"touched{lane}_{b}_next")
                set_bit = Mux(s6.valid & here, Const(1, SKIP_ROWS) << r6, 0)
                clear_bit = Mux(row_start & (drain_bank == b), Const(1, SKIP_ROWS) << drain_row, 0)
                m.d.comb += nxt.eq((touched | set_bit) & ~clear_bit)
                m.d.sync += touched.eq(nxt)
                was = Signal(name=f"was_touched{lane}_{b}", reset_less=True)
                m.d.sync += was.eq(nxt.bit_select(row5, 1))
                m.d.comb += [rd.addr.eq(Mux(here, r6, drain_row)),
                             wr.addr.eq(r6),
                             wr.data.eq(Mux(was, rd.data, 0) + p6[lane]),
                             wr.en.eq(s6.valid & here)]
                reads.append(rd.data)
                masks.append(touched.bit_select(drain_row, 1))
            # (``was`` is looked up in both banks; S6 writes with its own bank's.)
            value = Signal(signed(cfg.acc_bits), name=f"partial{lane}_out")
            m.d.comb += value.eq(Mux(Mux(drain_bank, masks[1], masks[0]),
                                     Mux(drain_bank, reads[1], reads[0]), 0))
            partial[lane // pc][lane % pc] = value
        with m.If(s6.valid & s6.last):
            m.d.sync += bank.eq(~bank)

        # The drain's control: a pixel's last word in S6 starts it on the bank it finished.
        with m.If(s6.valid & s6.last):
            m.d.sync += [draining.eq(1), d.eq(0), drain_bank.eq(bank), drain_word.eq(s6.out_word)]
        with m.Elif(draining):
            m.d.sync += drain_word.eq(drain_word + desc.out_plane)
            with m.If(d == last_d):
                m.d.sync += draining.eq(0)
            with m.Else():
                m.d.sync += d.eq(d + 1)
        for o in range(po):
            m.d.comb += bias_rd[o].addr.eq(desc.bias_base + drain_row)
        # A row's partial sums and biases are registered as they are read (the distributed
        # RAMs' outputs go straight into registers), summed in groups the cycle after and the
        # groups' sums the cycle after that (no more than two adder levels a cycle): drain step
        # d's sums are in drain_regs SKIP_DRAIN_LATENCY cycles after it, a row's loaded at its
        # first step, shifted by PC at the others.
        part_q = [[Signal(signed(cfg.acc_bits), name=f"partial{o}_{t}_q", reset_less=True)
                   for t in range(pc)] for o in range(po)]
        bias_q = [Signal(signed(cfg.acc_bits), name=f"drain_bias{o}", reset_less=True)
                  for o in range(po)]
        with m.If(row_start):
            m.d.sync += [part_q[o][t].eq(partial[o][t]) for o in range(po) for t in range(pc)]
            m.d.sync += [bias_q[o].eq(bias_rd[o].data) for o in range(po)]
        operands = pc + 1
        size = -(-operands // max(1, round(operands ** 0.5)))
        group_q = []
        for o in range(po):
            terms = [bias_q[o], *part_q[o]]
            groups_o = []
            for g, k in enumerate(range(0, operands, size)):
                q = Signal(signed(cfg.acc_bits), name=f"drain_group{o}_{g}", reset_less=True)
                m.d.sync += q.eq(sum(terms[k:k + size]))
                groups_o.append(q)
            group_q.append(groups_o)
        row_start_q = [Signal(name=f"row_start_q{k}") for k in range(SKIP_DRAIN_LATENCY - 1)]
        draining_q = [Signal(name=f"draining_q{k}") for k in range(SKIP_DRAIN_LATENCY - 1)]
        drain_word_q = [Signal.like(drain_word, name=f"drain_word_q{k}")
                        for k in range(SKIP_DRAIN_LATENCY - 1)]
        for k, (a, b, c) in enumerate(zip(row_start_q, draining_q, drain_word_q)):
            m.d.sync += [a.eq(row_start_q[k - 1] if k else row_start),
                         b.eq(draining_q[k - 1] if k else draining),
                         c.eq(drain_word_q[k - 1] if k else drain_word)]
        drain_regs = [Signal(signed(cfg.acc_bits), name=f"drain{o}") for o in range(po)]
        with m.If(row_start_q[-1]):
            m.d.sync += [drain_regs[o].eq(sum(group_q[o])) for o in range(po)]
        with m.Elif(draining_q[-1]):
            m.d.sync += [drain_regs[o].eq(drain_regs[o + pc]) for o in range(po - pc)]
        drain_valid = Signal()
        drain_at = Signal(cfg.fm_addr_bits)
        m.d.sync += [drain_valid.eq(draining_q[-1]), drain_at.eq(drain_word_q[-1])]
        return (drain_regs, drain_valid, drain_at,
                draining | Cat(draining_q).any() | drain_valid, s6)
