"""Pooling units on pixel streams: 3x3/2 and 2x2/2 ceil-mode max pooling and the global (sum)
pooling.

Both take a feature map as a stream of pixels, one channel group per frame: each beat is the
``PC`` channels of one pixel (hw.layout.pixel_layout: ``PC`` unsigned bytes), frames in raster
order (row by row, left to right), one frame per channel group, back to back. They implement
golden/reference_int.py ``maxpool`` (kernel 3 or 2, stride 2) and ``global_sum`` bit for bit.

Streams follow amaranth.lib.stream: a beat moves when ``valid`` and ``ready`` are both high;
``valid`` never waits for ``ready``.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .layout import pixel_layout

__all__ = ["MaxPoolUnit", "GlobalSumUnit"]


class MaxPoolUnit(wiring.Component):
    """3x3 (or, with ``two``, 2x2), stride 2, ceil-mode max pooling: ``in_h x in_w`` pixels
    in, ``out_h x out_w`` out per frame (the host computes the output size,
    golden.network.pool_output_size).

    Throughput one input beat per cycle; each input beat completes at most one output pixel.
    Window column j covers input columns 2j..2j+2 (2j..2j+1 with ``two``): the running maximum
    of the current window is kept in a register and emitted when the window's last column
    arrives (or at the row's end, for a window cut by the edge that ceil mode keeps), so a row
    of ``out_w`` horizontal maxima streams out of every input row. The vertical step does the
    same with rows, against a one-row buffer of partial maxima (memory, ``max_width``
    entries). Latency ``hw.timing.POOL_LATENCY`` in both modes.
    """

    def __init__(self, cfg: AcceleratorConfig, max_width: int = 128):
        self.cfg = cfg
        self.max_width = max_width
        super().__init__({
            "in_h": In(cfg.side_bits), "in_w": In(cfg.side_bits),
            "out_h": In(cfg.side_bits), "out_w": In(cfg.side_bits),
            "two": In(1),
            "i": In(stream.Signature(pixel_layout(cfg))),
            "o": Out(stream.Signature(pixel_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        pc = self.cfg.pc
        lanes = pixel_layout(self.cfg)

        def vmax(a, b):
            out = Signal(lanes)
            for t in range(pc):
                m.d.comb += out[t].eq(Mux(a[t] > b[t], a[t], b[t]))
            return out

        # The whole pipeline advances together unless the output holds an unread beat.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        take = Signal()
        m.d.comb += take.eq(self.i.valid & advance)

        # ---- H: horizontal windows ---------------------------------------------------------
        col, row = Signal(10), Signal(10)
        win = Signal(lanes)              # running max of the window that started last
        j_next = Signal(10)              # index of the window that started last
        x = self.i.payload
        last_col = Signal()
        m.d.comb += last_col.eq(col == self.in_w - 1)
        h_emit = Signal()                # this beat completes horizontal window h_j
        h_value = Signal(lanes)
        h_j = Signal(10)
        merged = vmax(win, x)
        with m.If(col == 0):
            # A one-pixel-wide row is its own (cut) window.
            m.d.comb += [h_emit.eq(last_col & (self.out_w > 0)), h_value.eq(x), h_j.eq(0)]
        with m.Elif(~col[0] & self.two):  # 2x2, even column: opens window j (cut at the end)
            m.d.comb += [h_emit.eq(last_col), h_value.eq(x), h_j.eq(j_next + 1)]
        with m.Elif(~col[0]):            # even column >= 2: closes window j-1, opens window j
            m.d.comb += [h_emit.eq(1), h_value.eq(merged), h_j.eq(j_next)]
        with m.Elif(self.two):           # 2x2, odd column: closes window j_next
            m.d.comb += [h_emit.eq(1), h_value.eq(merged), h_j.eq(j_next)]
        with m.Else():                   # odd column: a row that ends here cuts window j_next
            m.d.comb += [h_emit.eq(last_col & (j_next < self.out_w)), h_value.eq(merged),
                         h_j.eq(j_next)]
        with m.If(take):
            with m.If(col == 0):
                m.d.sync += [win.eq(x), j_next.eq(0)]
            with m.Elif(~col[0]):
                m.d.sync += [win.eq(x), j_next.eq(j_next + 1)]
            with m.Else():
                m.d.sync += win.eq(merged)
            with m.If(last_col):
                m.d.sync += col.eq(0)
                m.d.sync += row.eq(Mux(row == self.in_h - 1, 0, row + 1))
            with m.Else():
                m.d.sync += col.eq(col + 1)

        # ---- H -> V register; the row buffer is read here, one cycle ahead ------------------
        # In distributed RAM: its word goes through the max and back into it in one cycle, and
        # a block RAM's 6 ns to its output left no time for that at 75 MHz.
        buf = memory.Memory(shape=lanes, depth=self.max_width, init=[],
                            attrs={"ram_style": "distributed"})
        m.submodules.row_buffer = buf
        wr = buf.write_port()
        rd = buf.read_port(transparent_for=(wr,))
        m.d.comb += [rd.addr.eq(h_j), rd.en.eq(advance)]
        hv_valid, hv_value = Signal(), Signal(lanes)
        hv_j, hv_row, hv_last_row = Signal(10), Signal(10), Signal()
        with m.If(advance):
            m.d.sync += [hv_valid.eq(take & h_emit), hv_value.eq(h_value), hv_j.eq(h_j),
                         hv_row.eq(row), hv_last_row.eq(row == self.in_h - 1)]

        # ---- V: vertical windows against the row buffer -------------------------------------
        partial = Signal(lanes)
        m.d.comb += partial.eq(rd.data)
        v_merged = vmax(partial, hv_value)
        v_emit, v_value = Signal(), Signal(lanes)
        half_row = Signal(10)
        m.d.comb += half_row.eq(hv_row >> 1)
        with m.If(hv_row == 0):
            m.d.comb += [v_emit.eq(hv_last_row & (self.out_h > 0)), v_value.eq(hv_value)]
            m.d.comb += [wr.data.eq(hv_value)]
        with m.Elif(~hv_row[0] & self.two):   # 2x2, even row: opens a window row
            m.d.comb += [v_emit.eq(hv_last_row), v_value.eq(hv_value), wr.data.eq(hv_value)]
        with m.Elif(hv_row[0] & self.two):    # 2x2, odd row: closes it
            m.d.comb += [v_emit.eq(1), v_value.eq(v_merged), wr.data.eq(v_merged)]
        with m.Elif(~hv_row[0]):         # even row >= 2: closes window row r/2-1, opens r/2
            m.d.comb += [v_emit.eq(1), v_value.eq(v_merged), wr.data.eq(hv_value)]
        with m.Else():                   # odd row: the last row cuts window (r-1)/2
            m.d.comb += [v_emit.eq(hv_last_row & (half_row < self.out_h)),
                         v_value.eq(v_merged), wr.data.eq(v_merged)]
        m.d.comb += [wr.addr.eq(hv_j), wr.en.eq(advance & hv_valid)]

        with m.If(advance):
            m.d.sync += [self.o.valid.eq(hv_valid & v_emit), self.o.payload.eq(v_value)]
        return m


class GlobalSumUnit(wiring.Component):
    """Global average pooling as the exact sum: ``pixels`` beats of PC bytes in, one beat of PC
    unsigned ``LOGIT_BITS`` sums out per frame. Latency ``hw.timing.SUM_LATENCY``; throughput one
    beat per cycle."""

    def __init__(self, cfg: AcceleratorConfig):
        from golden import numerics as nx
        self.cfg = cfg
        self.sum_bits = nx.LOGIT_BITS
        super().__init__({
            "pixels": In(20),
            "i": In(stream.Signature(pixel_layout(cfg))),
            "o": Out(stream.Signature(pixel_layout(cfg, self.sum_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        pc = self.cfg.pc
        count = Signal(20)
        # count + 1 kept beside it: the frame's end is an equality of registers, not a
        # subtraction of ``pixels`` in front of the unit's enables.
        count1 = Signal(20, init=1)
        acc = Signal(pixel_layout(self.cfg, self.sum_bits))
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & advance):
            last = count1 == self.pixels
            sums = [Signal(self.sum_bits, name=f"sum{t}") for t in range(pc)]
            for t in range(pc):
                m.d.comb += sums[t].eq(Mux(count == 0, 0, acc[t]) + self.i.payload[t])
                m.d.sync += acc[t].eq(sums[t])
            with m.If(last):
                m.d.sync += [count.eq(0), count1.eq(1), self.o.valid.eq(1)]
                m.d.sync += [self.o.payload[t].eq(sums[t]) for t in range(pc)]
            with m.Else():
                m.d.sync += [count.eq(count + 1), count1.eq(count1 + 1)]
        return m
