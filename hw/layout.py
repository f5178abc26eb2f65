"""Every layout the hardware reads or writes, each with its inverse beside it.

The hardware defines these layouts; the host packs what the hardware reads and unpacks what it
writes; the golden device, the benches and the tests import them from here and re-derive
none. Nothing here is a hardware component (only ``amaranth.lib.data`` layouts), so the host
loads it without the gateware.

- **Descriptor** (``descriptor_layout``, ``LayerDescriptor``): what the convolution engine
  reads for one layer, field widths from ``AcceleratorConfig``; ``pack_struct`` refuses by name
  any value that does not fit its field.
- **Op** (``op_layout``, ``encode_op`` / ``decode_op``): one program op of the layer sequencer.
- **Feature maps** (``feature_words`` / ``feature_map``): PC banks, channel ``c`` in bank
  ``c % PC`` at word ``(c // PC) * H * W + y * W + x``; a word is the PC bytes of one address.
- **Weights** (``weight_lanes`` / ``weight_tensor``): codebook indices (without codebook
  tables, the values) in the engine's step order, PO*PC per word; in the SDRAM
  (``weight_units`` / ``weight_lanes_of_units``) a byte per index, or the values packed.
- **Sums** (``sum_words`` / ``sums_of_words``): a global sum's 32-bit results, byte k of every
  lane of channel group g in word ``SUM_WORDS * g + k``.
- **Weight entries on the link** (``weight_entries``, ``pack_entries`` / ``unpack_entries``):
  golden.sparse's entry code in the engine's weight order, GAP_BITS then the index, packed LSB
  first.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import IntEnum

import numpy as np
from amaranth.hdl import Shape, signed
from numba import njit
from amaranth.lib import data

from golden import numerics as nx
from golden import sparse

from .config import AcceleratorConfig

__all__ = ["groups", "FieldRangeError", "pack_struct", "unpack_struct",
           "descriptor_layout", "LayerDescriptor", "describe",
           "OpKind", "DMATarget", "DMA_QUEUE", "DMA_WAIT_BITS", "dma_layout", "dma_buffer_bits",
           "op_layout", "op_bytes", "encode_op", "decode_op",
           "sdram_unit_words", "sdram_of_bytes", "bytes_of_sdram", "codebook_sdram_words",
           "codebook_of_sdram",
           "pixel_layout", "feature_words", "feature_map",
           "weight_lanes", "weight_tensor", "dense_weight_lanes", "weight_units",
           "weight_lanes_of_units", "value_unit_bytes",
           "SKIP_ROWS", "skip_entry_layout", "SkipWords",
           "skip_words", "skip_word_values", "skip_word_bits", "skip_unit_bytes", "skip_units",
           "skip_words_of_units", "skip_tensor",
           "SUM_BYTES", "SUM_WORDS", "sum_words", "sums_of_words",
           "GAP_BITS", "entry_bits", "weight_entries", "entry_span", "pack_entries",
           "unpack_entries", "memtest_pattern", "memtest_address_word"]

GAP_BITS = sparse.GAP_BITS


def groups(n: int, size: int) -> int:
    """Groups of ``size`` that hold ``n`` (channel groups, output groups)."""
    return -(-n // size)


# ---- packing a struct, with every value checked against its field -------------------------------

class FieldRangeError(ValueError):
    """A value that does not fit its hardware field (names where, the field, value, limit)."""


def pack_struct(layout: data.StructLayout, values: dict, where: str = "value") -> int:
    """``values`` (nested dicts for nested layouts; missing fields are 0; of a union's members
    one at most) as the integer the hardware reads. A value outside its field's range is a
    FieldRangeError, never truncated."""
    for name in values:
        if name not in layout.members:
            raise KeyError(f"{where}: {name!r} is not a field of {layout}")
    if isinstance(layout, data.UnionLayout) and sum(1 for v in values.values() if v) > 1:
        raise FieldRangeError(f"{where}: {sorted(values)} share the bits of one union; "
                              "set one of them")
    bits = 0
    for name, fld in layout:
        value = values.get(name, 0)
        if isinstance(fld.shape, (data.StructLayout, data.UnionLayout)):
            raw = pack_struct(fld.shape, value or {}, where)
        else:
            shape = Shape.cast(fld.shape)
            value = int(value)
            lo, hi = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
                      else (0, (1 << shape.width) - 1))
            if not lo <= value <= hi:
                raise FieldRangeError(
                    f"{where}: {name} = {value} does not fit its {shape.width}-bit "
                    f"{'signed ' if shape.signed else ''}field ({lo}..{hi}); the layer is "
                    "larger than this AcceleratorConfig describes (hw/config.py)")
            raw = value & ((1 << shape.width) - 1)
        bits |= raw << fld.offset
    return bits


def unpack_struct(layout: data.StructLayout, bits: int) -> dict:
    """The inverse of ``pack_struct``: nested dicts of ints (signed fields sign-extended)."""
    view = layout.from_bits(bits)
    out = {}
    for name, fld in layout:
        if isinstance(fld.shape, (data.StructLayout, data.UnionLayout)):
            out[name] = unpack_struct(fld.shape, view[name].as_bits())
        else:
            out[name] = int(view[name])
    return out


# ---- the engine's layer descriptor ----------------------------------------------------------------

def descriptor_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """The convolution engine's descriptor (hw/conv_engine.py): the layer's sizes, and the
    increments the host derives so that no address needs a multiplier."""
    ch, side, off = cfg.channel_bits, cfg.side_bits, signed(cfg.fm_offset_bits)
    return data.StructLayout({
        "in_channels": ch, "out_channels": ch,
        "in_h": side, "in_w": side, "out_h": side, "out_w": side,
        # The top input row of the first output row (a row band starts below the map's top).
        "y_origin": signed(cfg.side_bits + 3),
        # The kernel's rows and columns; the padding of the rows (the host's: it is in y_origin)
        # and of the columns (the engine's x origin). A pooling op's window is ``kernel``.
        "kernel": cfg.kernel_bits, "kernel_w": cfg.kernel_bits, "stride": cfg.stride_bits,
        "pad": cfg.pad_bits, "pad_w": cfg.pad_bits,
        "mult": cfg.mult_bits, "shift": cfg.shift_bits,
        "cgroups": cfg.cgroup_bits, "ogroups": cfg.ogroup_bits, "steps": cfg.steps_bits,
        "pixel_origin": off, "step_row": off, "step_group": off, "step_oy": off,
        "out_plane": cfg.plane_bits, "out_base_word": cfg.fm_addr_bits,
        "out_group_step": cfg.fm_addr_bits,
        "weight_base": cfg.weight_addr_bits, "codebook_table": cfg.codebook_table_bits,
        "bias_base": cfg.bias_addr_bits, "out_channel_base": ch,
    })


# LayerDescriptor's fields that say where a band sits: the host's, not the engine's (the
# engine reads them as y_origin and the increments).
_BAND_FIELDS = ("out_row0", "in_row0", "band_rows", "pixel_words")


@dataclass(frozen=True)
class LayerDescriptor:
    """One convolution as the engine sees it; ``fields(cfg)`` adds the derived increments.

    A *row band* computes output rows ``out_row0 .. out_row0 + out_h - 1`` of a map whose
    input has ``in_h`` rows, reading from a buffer that holds input rows from ``in_row0`` on
    (``band_rows`` of them; 0: all from ``in_row0`` to the last). A whole layer is the band
    with both at 0. Padding stays where the whole map has it: rows outside 0..in_h-1 read as
    zero, whichever band asks."""

    in_channels: int
    out_channels: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel: int
    stride: int
    pad: int
    mult: int
    shift: int
    weight_base: int = 0
    codebook_table: int = 0
    bias_base: int = 0
    out_channel_base: int = 0
    out_row0: int = 0
    in_row0: int = 0
    band_rows: int = 0
    kernel_w: int = 0        # the kernel's columns; 0: as ``kernel`` (its rows)
    pad_w: int = -1          # the columns' padding; -1: as ``pad`` (the rows')
    # Zero-skipping weights (AcceleratorConfig.zero_skipping): the words of one output pixel
    # (hw.layout.skip_words), which the engine reads in the ``steps`` field; 0: dense.
    pixel_words: int = 0

    def __post_init__(self):
        # Always concrete, so that a descriptor and its round trip through fields() compare equal.
        if self.kernel_w == 0:
            object.__setattr__(self, "kernel_w", self.kernel)
        if self.pad_w < 0:
            object.__setattr__(self, "pad_w", self.pad)

    @property
    def buffer_rows(self) -> int:
        """Input rows the band's buffer holds (a channel group's plane is these x in_w)."""
        return self.band_rows or self.in_h - self.in_row0

    def fields(self, cfg: AcceleratorConfig, in_base: int = 0, out_base: int = 0,
               out_map_rows: int | None = None) -> dict:
        """Every descriptor field, the input starting at word ``in_base`` and the output at
        ``out_base`` of their buffers. The engine adds these increments instead of
        multiplying (hw/conv_engine.py, S0). With ``out_map_rows``, the output buffer holds a
        map of that many rows and the band's rows land at their own rows of it (the engine
        writes a group's pixels consecutively from the band's first row)."""
        kh, kw, w, plane = self.kernel, self.kernel_w, self.in_w, self.buffer_rows * self.in_w
        out_plane = (out_map_rows or self.out_h) * self.out_w
        if out_map_rows:
            out_base += self.out_row0 * self.out_w
        y_origin = self.out_row0 * self.stride - self.pad
        names = [f.name for f in fields(self) if f.name not in _BAND_FIELDS]
        return {**{n: getattr(self, n) for n in names}, "y_origin": y_origin,
                "cgroups": groups(self.in_channels, cfg.pc),
                "ogroups": groups(self.out_channels, cfg.po),
                "steps": self.pixel_words or groups(self.in_channels, cfg.pc) * kh * kw,
                "pixel_origin": in_base + (y_origin - self.in_row0) * w - self.pad_w,
                "step_row": w - (kw - 1), "step_group": plane - (kh - 1) * w - (kw - 1),
                "step_oy": self.stride * w, "out_plane": out_plane,
                "out_base_word": out_base + self.out_channel_base // cfg.pc * out_plane,
                "out_group_step": cfg.po // cfg.pc * out_plane}

    @staticmethod
    def of_fields(f: dict, cfg: AcceleratorConfig) -> tuple["LayerDescriptor", int, int]:
        """The inverse of ``fields``: (descriptor, in_base, out_base). The band's buffer is
        taken to start at the band's first row (``in_row0`` = that row, clipped at 0), which
        is how host.compiler and sim.loads place it; a whole layer comes back as itself."""
        kh, kw, w = f["kernel"], f["kernel_w"], f["in_w"]
        plane = f["step_group"] + (kh - 1) * w + (kw - 1)
        y_origin = f["y_origin"]
        if (y_origin + f["pad"]) % f["stride"]:
            raise ValueError(f"y_origin {y_origin} is not a row a stride-{f['stride']} layer "
                             f"with pad {f['pad']} starts on")
        in_row0 = max(0, y_origin)
        band_rows = plane // w
        names = [x.name for x in fields(LayerDescriptor) if x.name not in _BAND_FIELDS]
        desc = LayerDescriptor(**{n: f[n] for n in names},
                               out_row0=(y_origin + f["pad"]) // f["stride"], in_row0=in_row0,
                               band_rows=0 if in_row0 + band_rows == f["in_h"] else band_rows,
                               pixel_words=f["steps"] if cfg.zero_skipping else 0)
        in_base = f["pixel_origin"] - (y_origin - in_row0) * w + desc.pad_w
        out_base = f["out_base_word"] - desc.out_channel_base // cfg.pc * desc.out_h * desc.out_w
        return desc, in_base, out_base

    def band(self, out_row0: int, out_rows: int) -> "LayerDescriptor":
        """Output rows ``out_row0 .. out_row0 + out_rows - 1`` of this layer, from a buffer
        that holds exactly the input rows they read (clipped to the map)."""
        top = out_row0 * self.stride - self.pad
        bottom = (out_row0 + out_rows - 1) * self.stride - self.pad + self.kernel - 1
        in_row0, last = max(0, top), min(self.in_h - 1, bottom)
        rows = last - in_row0 + 1
        return replace(self, out_h=out_rows, out_row0=out_row0, in_row0=in_row0,
                       band_rows=0 if in_row0 + rows == self.in_h else rows)

    @property
    def band_input_rows(self) -> tuple[int, int]:
        """(first, count) of the input rows this band's buffer holds."""
        return self.in_row0, self.buffer_rows

    def pack(self, cfg: AcceleratorConfig, where: str = "layer", **bases) -> int:
        """The descriptor word (``descriptor_layout``), every field checked."""
        return pack_struct(descriptor_layout(cfg), self.fields(cfg, **bases), where)

    @property
    def macs(self) -> int:
        return (self.out_channels * self.in_channels * self.kernel * self.kernel_w
                * self.out_h * self.out_w)


def describe(spec, in_h: int, in_w: int, mult: int = 1 << (nx.MULT_BITS - 1),
             shift: int = nx.MULT_BITS, **bases) -> LayerDescriptor:
    """The descriptor of convolution ``spec`` (golden.network.ConvSpec) on an in_h x in_w
    input; ``mult``/``shift`` default to a ratio of 1/2, for cycle counting."""
    oh, ow = spec.output_size(in_h, in_w)
    return LayerDescriptor(spec.in_channels, spec.out_channels, in_h, in_w, oh, ow, spec.kh,
                           spec.stride, spec.ph, mult, shift, kernel_w=spec.kw, pad_w=spec.pw,
                           **bases)


# ---- the sequencer's op -------------------------------------------------------------------------

class OpKind(IntEnum):
    END = 0
    CONV = 1
    MAXPOOL = 2
    GLOBAL_SUM = 3
    LOAD = 4          # SDRAM -> an on-chip memory (``dma``)
    STORE = 5         # the feature-map memory -> SDRAM (``dma``)
    ADD = 6           # the bypass add of two maps in the feature-map memory


# Transfers the runner's DMA queue holds beside the one being carried out, and the width of an
# op's ``dma_wait`` (a value above the queue's depth never waits).
DMA_QUEUE = 4
DMA_WAIT_BITS = 3


class DMATarget(IntEnum):
    """The on-chip memory a LOAD fills (a STORE drains the feature-map memory only)."""
    FEATURE = 0       # feature-map words, PC bytes
    WEIGHTS = 1       # weight words, PO*PC indices (without codebook tables, values)
    CODEBOOK = 2      # codebook entries, one a word
    BIAS = 3          # biases (bias word * PO + lane), one a unit
    SQUEEZE = 4       # the squeeze buffer's feature-map words (a pass's residual operand)


def dma_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """A LOAD or STORE: ``runs`` runs of ``run_words`` units; run r starts at unit
    ``sdram_base + r * sdram_stride`` of the SDRAM (a unit is ``sdram_unit_words`` SDRAM
    words) and at word ``buffer_base + r * buffer_stride`` of the target memory
    (hw/dma.py)."""
    from .config import address_bits
    from .sdram_chip import MT48LC16M16A2
    buf = dma_buffer_bits(cfg)
    return data.StructLayout({
        "target": 3, "sdram_base": MT48LC16M16A2.addr_bits, "buffer_base": buf,
        # (a feature transfer's runs are channel groups, the most there are)
        "run_words": buf + 1, "runs": address_bits(groups(cfg.max_channels, cfg.pc) + 1),
        "sdram_stride": MT48LC16M16A2.addr_bits,
        "buffer_stride": buf + 1,
    })


def dma_buffer_bits(cfg: AcceleratorConfig) -> int:
    """Address bits of the largest memory a LOAD or STORE names."""
    from .config import address_bits
    return max(cfg.fm_addr_bits, cfg.weight_addr_bits,
               address_bits(cfg.codebook_tables * cfg.codebook_entries),
               cfg.bias_addr_bits + address_bits(cfg.po))


def op_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """One program op (hw/runner.py). ``conv`` is the engine's descriptor (its sizes also
    describe a pooling op's frames); ``in_base``/``out_base`` and ``in_words``/``out_words``
    are a pooling op's words in the feature-map memory, ``unit.frame_pixels`` a global sum's
    pixels per channel group; an ADD reads ``in_words`` word pairs, word i of the Fire output
    at ``in_base + i`` and of the bypassed map right after it (``in_base + in_words + i``),
    and writes clamp((a * conv.mult + b * unit.mult_b + 2**(conv.shift-1)) >> conv.shift) to
    ``out_base + i`` (hw/bypass.py); a pass with ``unit.residual_mult`` set adds
    ``unit.residual_mult`` x the squeeze buffer's byte at its output word's address (the same
    lane) before requantising (the complex bypass); ``src_squeeze``/``dst_squeeze`` send a convolution's input or output
    through the Fire unit's squeeze buffer instead; ``dma`` is a LOAD's or STORE's
    transfer.

    The feature-map memory is two memories, A and B (``fm_depth`` words a bank each): an
    engine pass or a pooling op reads A and writes B, or with ``swap`` reads B and writes A;
    a LOAD of features writes A, a STORE reads B. LOAD and STORE go into the DMA queue
    (``DMA_QUEUE`` deep, carried out in order while later ops run); any other op, and END,
    first waits until at most ``dma_wait`` of the transfers queued before it are unfinished
    (END: none). A pass or pooling op with ``then_store`` queues the STORE its ``dma``
    describes as it finishes (waiting for room in the queue), which saves the STORE op that
    follows every output chunk."""
    return data.StructLayout({
        "kind": 3, "src_squeeze": 1, "dst_squeeze": 1, "swap": 1,
        "dma_wait": DMA_WAIT_BITS, "then_store": 1,
        "in_base": cfg.fm_addr_bits, "out_base": cfg.fm_addr_bits,
        "in_words": cfg.fm_count_bits, "out_words": cfg.fm_count_bits,
        # (one op's unit reads one of them: a union costs no program memory width)
        "unit": data.UnionLayout({
            "frame_pixels": cfg.plane_bits, "mult_b": cfg.mult_bits,
            "residual_mult": cfg.mult_bits,
        }),
        "conv": descriptor_layout(cfg),
        "dma": dma_layout(cfg),
    })


def op_bytes(cfg: AcceleratorConfig) -> int:
    return (op_layout(cfg).size + 7) // 8


def encode_op(fields: dict, cfg: AcceleratorConfig, where: str = "op") -> int:
    """An op's fields (``conv`` a dict of descriptor fields) as its program word."""
    return pack_struct(op_layout(cfg), fields, where)


def decode_op(word: int, cfg: AcceleratorConfig) -> dict:
    """A program word back into its fields, as the sequencer sees them."""
    return unpack_struct(op_layout(cfg), word)


# ---- feature maps -------------------------------------------------------------------------------

def pixel_layout(cfg: AcceleratorConfig, bits: int | None = None) -> data.ArrayLayout:
    """One feature-map word, or one beat of a pixel stream: PC lanes of ``bits`` (default
    ACT_BITS, unsigned), lane t the channel in bank t."""
    return data.ArrayLayout(bits or cfg.act_bits, cfg.pc)


def feature_words(x: np.ndarray, cfg: AcceleratorConfig) -> np.ndarray:
    """(C, H, W) uint8 -> (groups * H * W, PC) words; channels past C hold 0."""
    c, h, w = x.shape
    g = groups(c, cfg.pc)
    padded = np.zeros((g * cfg.pc, h, w), np.uint8)
    padded[:c] = x
    return padded.reshape(g, cfg.pc, h * w).transpose(0, 2, 1).reshape(-1, cfg.pc)


def feature_map(words: np.ndarray, shape: tuple[int, int, int],
                cfg: AcceleratorConfig) -> np.ndarray:
    """The inverse of ``feature_words``: the first groups * H * W words -> (C, H, W) uint8."""
    c, h, w = shape
    g = groups(c, cfg.pc)
    words = np.asarray(words, np.uint8).reshape(-1, cfg.pc)[:g * h * w]
    full = words.reshape(g, h * w, cfg.pc).transpose(0, 2, 1).reshape(g * cfg.pc, h, w)
    return full[:c]


# ---- weights ---------------------------------------------------------------------------------------

def weight_lanes(indices: np.ndarray, cfg: AcceleratorConfig, where: str = "layer") -> np.ndarray:
    """A layer's indices (out, in, kh, kw) in engine order, (words, PO*PC): row
    ((og*CG + cg)*kh + i)*kw + j, lane po*PC + t holds the index of output og*PO+po, input
    cg*PC+t, tap (i, j); channels beyond the layer's count hold 0. Without codebook tables
    (``cfg.codebook_tables`` 0) the entries are signed values (``dense_weight_lanes``)."""
    oc, ic, kh, kw = indices.shape
    po, pc = cfg.po, cfg.pc
    og_n, cg_n = groups(oc, po), groups(ic, pc)
    idx = np.zeros((og_n * po, cg_n * pc, kh, kw), np.int64)
    idx[:oc, :ic] = indices
    if cfg.codebook_tables:
        if idx.max(initial=0) >= 1 << cfg.index_bits:
            raise FieldRangeError(f"{where}: index {int(idx.max())} needs more than the "
                                  f"configuration's {cfg.index_bits} index bits")
    else:
        top = 1 << (cfg.value_bits - 1)
        if not -top <= idx.min(initial=0) <= idx.max(initial=0) < top:
            raise FieldRangeError(f"{where}: a weight of {int(np.abs(idx).max())} does not fit "
                                  f"the configuration's {cfg.value_bits}-bit values")
    # (og, po, cg, t, i, j) -> (og, cg, i, j, po, t)
    blocks = idx.reshape(og_n, po, cg_n, pc, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    return blocks.reshape(-1, po * pc)


def dense_weight_lanes(qc, cfg: AcceleratorConfig, where: str = "layer") -> np.ndarray:
    """A quantized convolution's dense weight words as the engine holds them: its codebook
    indices, or without codebook tables the values they stand for (``weight_lanes``)."""
    if cfg.codebook_tables:
        return weight_lanes(qc.dense_indices, cfg, where)
    return weight_lanes(np.asarray(qc.codebook, np.int64)[qc.dense_indices], cfg, where)


def weight_units(lanes: np.ndarray, cfg: AcceleratorConfig) -> np.ndarray:
    """Dense weight words (words, PO*PC) -> their SDRAM units (words, bytes) uint8: a byte per
    index, or without codebook tables the values' ``value_bits`` each, two's complement, LSB
    first and packed, in whole SDRAM words (``sdram_unit_words``)."""
    lanes = np.asarray(lanes, np.int64)
    if cfg.codebook_tables:
        return lanes.astype(np.uint8)
    vb = cfg.value_bits
    bits = ((lanes[:, :, None] >> np.arange(vb)) & 1).reshape(len(lanes), -1).astype(np.uint8)
    width = value_unit_bytes(cfg) * 8
    bits = np.concatenate([bits, np.zeros((len(lanes), width - bits.shape[1]), np.uint8)], 1)
    return np.packbits(bits, axis=1, bitorder="little")


def weight_lanes_of_units(units: np.ndarray, cfg: AcceleratorConfig) -> np.ndarray:
    """The inverse of ``weight_units``, as the weight memory keeps them: ``index_bits`` of
    each byte, or the signed values."""
    units = np.asarray(units, np.uint8)
    if cfg.codebook_tables:
        return units.astype(np.int64) & ((1 << cfg.index_bits) - 1)
    vb = cfg.value_bits
    bits = np.unpackbits(units, axis=1, bitorder="little")[:, :cfg.lanes * vb]
    v = (bits.reshape(len(units), cfg.lanes, vb).astype(np.int64) << np.arange(vb)).sum(-1)
    return np.where(v >= 1 << (vb - 1), v - (1 << vb), v)


def value_unit_bytes(cfg: AcceleratorConfig) -> int:
    """Bytes of a weight word of values in the SDRAM: PO*PC values of ``value_bits``, in whole
    SDRAM words."""
    from .sdram_chip import MT48LC16M16A2
    dq = MT48LC16M16A2.dq_bits
    return -(-cfg.lanes * cfg.value_bits // dq) * dq // 8


def weight_tensor(words: np.ndarray, out_groups: int, in_groups: int, kernel: int,
                  cfg: AcceleratorConfig, kernel_w: int = 0) -> np.ndarray:
    """The inverse of ``weight_lanes``: (words, PO*PC) -> (out_groups*PO, in_groups*PC, kh, kw)
    (``kernel_w`` 0: square)."""
    po, pc, kh, kw = cfg.po, cfg.pc, kernel, kernel_w or kernel
    idx = np.asarray(words).reshape(out_groups, in_groups, kh, kw, po, pc).transpose(
        0, 4, 1, 5, 2, 3)
    return idx.reshape(out_groups * po, in_groups * pc, kh, kw)


# ---- zero-skipping weights -------------------------------------------------------------------------
#
# The zero-skipping form of a layer's weights (docs/ARCHITECTURE.md, "Zero-weight skipping"): a
# *chunk* of up to SKIP_ROWS output groups, lane l of the PO output lanes owning channel
# (og0 + r) * PO + l of each row r. For each step (cg, i, j), in the dense order, the words of
# that step: lane l's non-zero weights of the step, over every row r and input lane t, fill its
# PC multipliers in (r, t) order, PC to a word, so a step takes as many words as its fullest
# lane needs (at least one). Each entry holds its weight's value (the host looks the codebook
# up: the engine then needs no codebook copy per multiplier), ``act``, whose activation it
# multiplies (0..PC-1 the step's PC bytes, PC..2PC-1 the step before's: a step may leave
# weights to the next one's words, which evens out the lanes' loads), and the row ``row`` whose
# sum it adds to; value 0 pads. ``last`` marks a step's last word. The dense form is the special case of every
# entry present.

SKIP_ROWS = 16


def skip_entry_layout(cfg: AcceleratorConfig) -> data.StructLayout:
    """One multiplier's entry of a zero-skipping weight word."""
    return data.StructLayout({"value": signed(cfg.value_bits),
                              "act": (2 * cfg.pc - 1).bit_length(),
                              "row": (SKIP_ROWS - 1).bit_length()})


@dataclass(frozen=True)
class SkipWords:
    """A chunk's zero-skipping words: ``value``, ``act``, ``row`` (words, PO*PC) and ``last``
    (words,); ``step_words`` (steps,) the words of each step."""

    value: np.ndarray
    act: np.ndarray
    row: np.ndarray
    last: np.ndarray
    step_words: np.ndarray

    @property
    def words(self) -> int:
        return len(self.last)


def skip_words(weights: np.ndarray, cfg: AcceleratorConfig, where: str = "layer") -> SkipWords:
    """The zero-skipping words of one chunk: ``weights`` (rows * PO or fewer outputs, in, kh,
    kw) the signed values the codebook gives (QConv.weights); a 0 is skipped. Of the two
    packings (``_pack``: each step's weights in its own words, or some left to the next
    step's words, which read the step before through ``act`` >= PC), the one of fewer words."""
    oc, ic, kh, kw = weights.shape
    po, pc = cfg.po, cfg.pc
    rows, cg_n = groups(oc, po), groups(ic, pc)
    if rows > SKIP_ROWS:
        raise FieldRangeError(f"{where}: a zero-skipping chunk holds at most {SKIP_ROWS} output "
                              f"groups ({SKIP_ROWS * po} channels), not {rows}")
    top = 1 << (cfg.value_bits - 1)
    if weights.size and not -top <= int(weights.min()) <= int(weights.max()) < top:
        raise FieldRangeError(f"{where}: a weight of {int(np.abs(weights).max())} does not fit "
                              f"the configuration's {cfg.value_bits}-bit values")
    val = np.zeros((rows * po, cg_n * pc, kh, kw), np.int64)
    val[:oc, :ic] = weights
    # (r, l, cg, t, i, j) -> (step = (cg, i, j), l, (r, t))
    val_s = val.reshape(rows, po, cg_n, pc, kh, kw).transpose(2, 4, 5, 1, 0, 3).reshape(
        cg_n * kh * kw, po, rows * pc)
    return min((_pack(val_s, pc, defer) for defer in (False, True)), key=lambda w: w.words)


def _pack(val_s: np.ndarray, pc: int, defer: bool) -> SkipWords:
    """Lane by lane, step by step: the weights left from the step before (``defer``) go first,
    then the step's own, PC to a word. A step has as many words as its fullest lane needs for
    what it must place (what was left to it) and, when leaving is allowed, half of what it has
    (so the two steps share the load); the last step leaves nothing."""
    steps, po, slots = val_s.shape
    nz_s = val_s != 0
    out_words, step_words = [], []
    carry = [np.zeros((0, 2), np.int64) for _ in range(po)]     # (k, step) left to this step
    for s in range(steps):
        own = [np.flatnonzero(nz_s[s, lane]) for lane in range(po)]
        left = np.array([len(c) for c in carry])
        mine = np.array([len(o) for o in own])
        if not defer or s == steps - 1:
            n = max(1, int(max(-(-(left + mine) // pc))))
        else:
            n = max(1, int(max(-(-left // pc))), int(max(-(-(left + mine) // (2 * pc)))))
        value = np.zeros((n, po * pc), np.int64)
        act = np.zeros((n, po * pc), np.int64)
        row = np.zeros((n, po * pc), np.int64)
        for lane in range(po):
            entries = [(k, s - 1) for k, _ in carry[lane]] + [(k, s) for k in own[lane]]
            placed = entries[:n * pc]
            carry[lane] = np.array(entries[n * pc:], np.int64).reshape(-1, 2)
            for slot, (k, at) in enumerate(placed):
                word, mult = slot // pc, lane * pc + slot % pc
                value[word, mult] = val_s[at, lane, k]
                act[word, mult] = k % pc + (pc if at < s else 0)
                row[word, mult] = k // pc
        last = np.zeros(n, bool)
        last[-1] = True
        out_words.append((value, act, row, last))
        step_words.append(n)
    cat = [np.concatenate([w[i] for w in out_words]) for i in range(4)]
    return SkipWords(*cat, np.array(step_words, np.int64))


def skip_word_bits(cfg: AcceleratorConfig) -> int:
    """Bits of a zero-skipping weight word as ``weight_wr`` writes it: PO*PC entries, then a
    granule whose bit 0 is ``last`` (the engine keeps that bit apart)."""
    return skip_entry_layout(cfg).size * (cfg.lanes + 1)


def skip_unit_bytes(cfg: AcceleratorConfig) -> int:
    """Bytes of a zero-skipping weight word in the SDRAM: its bits, LSB first, in whole SDRAM
    words (hw/dma.py moves units of any number of them)."""
    from .sdram_chip import MT48LC16M16A2
    return -(-skip_word_bits(cfg) // MT48LC16M16A2.dq_bits) * MT48LC16M16A2.dq_bits // 8


def _skip_bits(w: SkipWords, cfg: AcceleratorConfig) -> np.ndarray:
    layout = skip_entry_layout(cfg)
    e, lanes = layout.size, cfg.lanes
    bits = np.zeros((w.words, skip_unit_bytes(cfg) * 8), np.uint8)
    entries = bits[:, :lanes * e].reshape(w.words, lanes, e)
    for name, fld in layout:
        value = getattr(w, name)              # two's complement for the signed value
        for b in range(Shape.cast(fld.shape).width):
            entries[:, :, fld.offset + b] = (value >> b) & 1
    bits[:, lanes * e] = w.last
    return bits


def skip_units(w: SkipWords, cfg: AcceleratorConfig) -> np.ndarray:
    """The words as SDRAM units (words, ``skip_unit_bytes``) uint8: ``skip_word_bits`` bits
    LSB first (hw/runner.py loads them into the engine's weight memory)."""
    return np.packbits(_skip_bits(w, cfg), axis=1, bitorder="little")


def skip_word_values(w: SkipWords, cfg: AcceleratorConfig) -> list[int]:
    """The words as integers on ``weight_wr.data`` (a bench's writes)."""
    return [int.from_bytes(bytes(u), "little") for u in skip_units(w, cfg)]


def skip_words_of_units(units: np.ndarray, cfg: AcceleratorConfig) -> SkipWords:
    """The inverse of ``skip_units``: (words, unit bytes) uint8 -> SkipWords (``step_words``
    counted from the ``last`` bits)."""
    layout = skip_entry_layout(cfg)
    e, lanes = layout.size, cfg.lanes
    bits = np.unpackbits(np.asarray(units, np.uint8), axis=1, bitorder="little")
    entries = bits[:, :lanes * e].reshape(len(units), lanes, e).astype(np.int64)
    got = {}
    for name, fld in layout:
        shape = Shape.cast(fld.shape)
        v = (entries[:, :, fld.offset:fld.offset + shape.width]
             << np.arange(shape.width, dtype=np.int64)).sum(-1)
        if shape.signed:
            v = np.where(v >= 1 << (shape.width - 1), v - (1 << shape.width), v)
        got[name] = v
    last = bits[:, lanes * e].astype(bool)
    step_words = np.diff(np.concatenate([[-1], np.flatnonzero(last)]))
    return SkipWords(got["value"], got["act"], got["row"], last, step_words)


def skip_tensor(w: SkipWords, rows: int, in_groups: int, kernel: int, cfg: AcceleratorConfig,
                kernel_w: int = 0) -> np.ndarray:
    """The inverse of ``skip_words``: the chunk's weights (rows*PO, in_groups*PC, kh, kw), 0
    where no entry names one."""
    po, pc, kh, kw = cfg.po, cfg.pc, kernel, kernel_w or kernel
    steps = in_groups * kh * kw
    step = np.cumsum(np.concatenate([[0], w.last[:-1]])) if w.words else np.zeros(0, np.int64)
    if w.words and (step[-1] != steps - 1 or not w.last[-1]):
        raise ValueError(f"the words hold {int(step[-1]) + 1 if w.words else 0} steps, not "
                         f"{steps}")
    out = np.zeros((steps, po, rows, pc), np.int64)
    word, mult = np.nonzero(w.value)
    act = w.act[word, mult]                  # act >= PC: the step before's activation
    at = step[word] - (act >= pc)
    if (at < 0).any():
        raise ValueError("a first step's entry reads the step before it")
    out[at, mult // pc, w.row[word, mult], act % pc] = w.value[word, mult]
    # (step = (cg, i, j), l, r, t) -> (r, l, cg, t, i, j)
    return out.reshape(in_groups, kh, kw, po, rows, pc).transpose(4, 3, 0, 5, 1, 2).reshape(
        rows * po, in_groups * pc, kh, kw)


# ---- global sums ----------------------------------------------------------------------------------

SUM_BYTES = nx.LOGIT_BITS // 8
SUM_WORDS = SUM_BYTES            # feature-map words per channel group of sums: one per byte


def sum_words(sums: np.ndarray, cfg: AcceleratorConfig) -> np.ndarray:
    """uint32 sums (groups * PC) -> (groups * SUM_WORDS, PC) words, byte k of every lane of
    group g in word SUM_WORDS * g + k (hw/runner.py's SumSerializer)."""
    g = len(sums) // cfg.pc
    b = np.asarray(sums).astype("<u4").view(np.uint8).reshape(g, cfg.pc, SUM_BYTES)
    return b.transpose(0, 2, 1).reshape(g * SUM_WORDS, cfg.pc)


def sums_of_words(words: np.ndarray, count: int, cfg: AcceleratorConfig) -> np.ndarray:
    """The inverse of ``sum_words``: the first ``count`` sums (uint32)."""
    b = np.asarray(words, np.uint8).reshape(-1, SUM_BYTES, cfg.pc).transpose(0, 2, 1)
    return np.ascontiguousarray(b).view("<u4").reshape(-1)[:count].astype(np.uint32)


# ---- weight entries on the link ------------------------------------------------------------------

def weight_entries(words: np.ndarray) -> np.ndarray:
    """A layer's ``weight_lanes`` -> (n, 2) entries (gap, index), fillers included."""
    codes, gaps = sparse.encode(np.asarray(words).reshape(-1))
    return np.stack([gaps.astype(np.int64), codes.astype(np.int64)], axis=1).reshape(-1, 2)


def entry_bits(index_bits: int) -> int:
    """Bits of one entry on the link: the gap, then the index."""
    return GAP_BITS + index_bits


def entry_span(entries: np.ndarray) -> int:
    """Weight positions a run of entries advances over."""
    return int((np.asarray(entries)[:, 0] + 1).sum())


def pack_entries(entries: np.ndarray, index_bits: int) -> bytes:
    """Entries packed LSB first, GAP_BITS + index_bits bits each: what the device's weight
    decoder reads."""
    width = entry_bits(index_bits)
    entries = np.asarray(entries, np.int64).reshape(-1, 2)
    values = entries[:, 0] | (entries[:, 1] << GAP_BITS)
    bits = ((values[:, None] >> np.arange(width)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_entries(data: bytes, count: int, index_bits: int) -> np.ndarray:
    """The inverse of ``pack_entries``: the first ``count`` entries of ``data``."""
    width = entry_bits(index_bits)
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    if count * width > len(bits):
        raise ValueError(f"{count} entries of {width} bits need {count * width} bits; the data "
                         f"has {len(bits)}")
    values = (bits[:count * width].reshape(count, width).astype(np.int64)
              << np.arange(width)).sum(axis=1)
    return np.stack([values & ((1 << GAP_BITS) - 1), values >> GAP_BITS], axis=1)


# ---- units in the SDRAM ------------------------------------------------------------------------------
# What a LOAD or STORE moves, as it lies in the SDRAM: a unit is ``sdram_unit_words`` 16-bit
# words, its low bits in the first, so a unit's bytes are the on-chip word's in order.
# - FEATURE: a feature word, its PC bytes (lane 0 first): a map lies in the SDRAM as it lies in
#   the feature-map memory (``feature_words``);
# - WEIGHTS: a weight word, one byte per index (lane 0 first; the memory keeps index_bits of
#   each), or without codebook tables the values' bits, packed (``weight_units``);
# - CODEBOOK: a codebook entry, one word, the signed value sign-extended;
# - BIAS: a bias, its ACC_BITS as two words (little-endian).

def sdram_unit_words(cfg: AcceleratorConfig, target: "DMATarget") -> int:
    """16-bit SDRAM words of one unit of ``target``."""
    from .sdram_chip import MT48LC16M16A2
    dq_bytes = MT48LC16M16A2.dq_bits // 8
    if DMATarget(target) == DMATarget.WEIGHTS and cfg.zero_skipping:
        return skip_unit_bytes(cfg) // dq_bytes
    unit_bytes = {DMATarget.FEATURE: cfg.pc, DMATarget.SQUEEZE: cfg.pc,
                  DMATarget.WEIGHTS: cfg.lanes if cfg.codebook_tables
                                     else value_unit_bytes(cfg),
                  DMATarget.CODEBOOK: dq_bytes,
                  DMATarget.BIAS: nx.ACC_BITS // 8}[DMATarget(target)]
    if unit_bytes % dq_bytes:
        raise ValueError(f"a {DMATarget(target).name.lower()} unit of {unit_bytes} bytes is not "
                         f"a whole number of SDRAM words: the SDRAM path needs PC >= "
                         f"{dq_bytes} ({dq_bytes * 16} MAC units or more)")
    return unit_bytes // dq_bytes


def sdram_of_bytes(units: np.ndarray) -> np.ndarray:
    """(n, bytes) uint8 units -> their SDRAM words (uint16, little-endian)."""
    return np.ascontiguousarray(np.asarray(units, np.uint8)).reshape(-1).view("<u2").astype(
        np.uint16)


def bytes_of_sdram(words: np.ndarray, unit_bytes: int) -> np.ndarray:
    """The inverse of ``sdram_of_bytes``: SDRAM words -> (n, unit_bytes) uint8."""
    return np.asarray(words, "<u2").view(np.uint8).reshape(-1, unit_bytes)


def codebook_sdram_words(values: np.ndarray) -> np.ndarray:
    """Codebook values (signed) -> their SDRAM words, one each, sign-extended to 16 bits."""
    return (np.asarray(values, np.int64) & 0xFFFF).astype(np.uint16)


def codebook_of_sdram(words: np.ndarray, value_bits: int) -> np.ndarray:
    """The inverse of ``codebook_sdram_words``, as the codebook memory keeps a value: its low
    ``value_bits``, signed."""
    v = np.asarray(words, np.int64) & ((1 << value_bits) - 1)
    return v - ((v >> (value_bits - 1)) << value_bits)


# ---- the SDRAM self-test's data (hw/memtest.py generates it) ---------------------------------------

def memtest_pattern(seed: int, count: int) -> np.ndarray:
    """The random phase's words: a 32-bit xorshift (x ^= x << 13; x ^= x >> 17; x ^= x << 5)
    from ``seed`` (0 is taken as 1), stepped once per word, its low 16 bits."""
    out = np.empty(count, np.uint16)
    _xorshift_words((seed & 0xFFFFFFFF) or 1, out)
    return out


@njit(cache=True)
def _xorshift_words(x, out):        # sequential by nature: compiled (32 MB is 16 Mi words)
    mask = (1 << 32) - 1
    for i in range(len(out)):
        x = (x ^ (x << 13)) & mask
        x ^= x >> 17
        x = (x ^ (x << 5)) & mask
        out[i] = x & 0xFFFF


def memtest_address_word(k: int) -> int:
    """The address phase's word at the first word + 2**k (``k`` = -1: at the first word): a
    different one for every address line."""
    return (0xA500 | (k + 1)) & 0xFFFF
