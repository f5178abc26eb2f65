"""The program of a device whose maps live in the SDRAM (``AcceleratorConfig.maps_in_sdram``):
every layer band by band through the on-chip tiles.

What lives where (docs/ARCHITECTURE.md, "Memory hierarchy"):

- SDRAM: every node's output map (hw.layout's feature words, a unit of PC bytes each), the
  image, the result (the global sums), and each convolution's weights (one byte per index),
  codebook (one word per entry) and biases (two words each): hw.layout.sdram_unit_words;
- feature-map memory (``fm_depth`` words a bank): the *input tile* from word 0 (the rows of the
  node's input that one band of output rows reads, every channel group) and the *output tile*
  after it (one output chunk's groups of the band);
- squeeze buffer: a Fire band's squeeze output, every channel, the rows its expand3x3 reads;
- weight memory, biases, codebook tables: a node's parameters when they all fit at once
  (loaded once per node), else one output chunk's (loaded before each use).

A node is computed in bands of output rows, as many rows as the tiles hold (equal bands): LOAD
the input rows; then per convolution of the node and per output chunk (output-channel groups
whose weights fit the weight memory) the parameters' LOADs if they are not resident, the
CONV, and a STORE of the chunk's rows to the output map. A Fire band is LOAD, squeeze into the
squeeze buffer, expand1x1 and expand3x3 from it, each chunk stored at its channel offset (the
concat). A max pooling band LOADs 2R + 1 input rows and pools them whole; a global sum LOADs
as many channel groups as fit and stores their sums to the result.

Every op runs after the one before (the sequencer has one op in flight), so a LOAD's or a
STORE's cycles are the engine's wait for memory: ``DeviceProgram``'s transfer ops, reported as
``wait`` by host/board.py and sqz infer.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from golden.network import Bypass, Conv, Fire, GlobalAvgPool, MaxPool
from golden.quantize import QuantizedModel
from hw.config import AcceleratorConfig
from hw.layout import (SUM_WORDS, DMATarget, FieldRangeError, LayerDescriptor, OpKind,
                       codebook_sdram_words, describe, encode_op, groups, sdram_of_bytes,
                       sdram_unit_words, weight_lanes)
from hw.sdram_chip import MT48LC16M16A2

from .program import DeviceProgram, Op, UnsupportedNetworkError

__all__ = ["compile_sdram"]


class _Planner:
    def __init__(self, q: QuantizedModel, cfg: AcceleratorConfig):
        self.q, self.cfg = q, cfg
        self.ops: list[Op] = []
        self.blocks: list[tuple[int, np.ndarray]] = []
        self.cursor = 0                            # next free SDRAM word
        self.k = {t: sdram_unit_words(cfg, t) for t in DMATarget}
        self.params: dict[str, dict] = {}          # conv -> where its parameters lie
        self.maps: dict[str, tuple[int, tuple[int, int, int]]] = {}   # node -> (word, shape)
        self.resident: dict = {}                   # on-chip slot -> what it holds
        self.names: dict[str, int] = {}

    # ---- the SDRAM --------------------------------------------------------------------------
    def allocate(self, words: int, align: int = 1) -> int:
        base = -(-self.cursor // align) * align
        self.cursor = base + words
        if self.cursor > MT48LC16M16A2.words:
            raise UnsupportedNetworkError(
                f"the network's maps and parameters need {self.cursor:,} SDRAM words; the "
                f"SDRAM has {MT48LC16M16A2.words:,}")
        return base

    def map_of(self, node: str, shape: tuple[int, int, int], words: int | None = None) -> int:
        c, h, w = shape
        units = words if words is not None else groups(c, self.cfg.pc) * h * w
        k = self.k[DMATarget.FEATURE]
        base = self.allocate(units * k, k)
        self.maps[node] = (base, shape)
        return base

    def place_parameters(self, name: str, qc) -> None:
        """The convolution's weights, codebook and biases into the SDRAM."""
        cfg = self.cfg
        try:
            idx = weight_lanes(qc.indices, cfg, name)
        except FieldRangeError as e:
            raise UnsupportedNetworkError(str(e)) from e
        kw, kb = self.k[DMATarget.WEIGHTS], self.k[DMATarget.BIAS]
        w_at = self.allocate(len(idx) * kw, kw)
        self.blocks.append((w_at, sdram_of_bytes(idx.astype(np.uint8))))
        cb = np.zeros(cfg.codebook_entries, np.int64)
        cb[:len(qc.codebook)] = qc.codebook
        cb_at = self.allocate(len(cb))
        self.blocks.append((cb_at, codebook_sdram_words(cb)))
        og = groups(qc.spec.out_channels, cfg.po)
        b = np.zeros(og * cfg.po, np.int64)
        b[:qc.spec.out_channels] = qc.bias
        b_at = self.allocate(len(b) * kb, kb)
        self.blocks.append((b_at, sdram_of_bytes(b.astype("<i4").view(np.uint8).reshape(-1, 4))))
        k = qc.spec.kernel
        per_group = groups(qc.spec.in_channels, cfg.pc) * k * k
        chunk = min(og, cfg.weight_depth // per_group, cfg.bias_depth)
        if chunk < 1:
            raise UnsupportedNetworkError(
                f"{name}: one output group's weights are {per_group} words; the weight memory "
                f"holds {cfg.weight_depth} (hw.config: weight_depth)")
        self.params[name] = {"qc": qc, "weights": w_at, "codebook": cb_at, "bias": b_at,
                             "og": og, "per_group": per_group, "chunk": chunk}

    # ---- ops --------------------------------------------------------------------------------
    def op(self, name: str, kind: OpKind, fields: dict, desc: LayerDescriptor | None) -> None:
        """Op names are unique (counters are read back by name): a repeat gets ``#n``."""
        n = self.names.get(name, 0)
        self.names[name] = n + 1
        self.ops.append(Op(f"{name}#{n}" if n else name, kind, fields, desc))

    def transfer(self, name: str, kind: OpKind, target: DMATarget, sdram: int, buffer: int,
                 run_words: int, runs: int = 1, sdram_stride: int = 0,
                 buffer_stride: int = 0) -> None:
        """``sdram`` in SDRAM words (a whole number of the target's units)."""
        k = self.k[target]
        assert sdram % k == 0
        dma = {"target": int(target), "sdram_base": sdram // k, "buffer_base": buffer,
               "run_words": run_words, "runs": runs, "sdram_stride": sdram_stride,
               "buffer_stride": buffer_stride}
        self.op(name, kind, {"dma": dma}, None)

    def load_parameters(self, name: str, conv: str, first: int, count: int, slot: dict) -> None:
        """Output groups ``first .. first + count - 1`` of ``conv`` into ``slot`` (weight
        word, bias word, codebook table), unless they are there already."""
        p, cfg = self.params[conv], self.cfg
        key = (conv, first, count)
        if self.resident.get(("weights", slot["weight"])) != key:
            words = count * p["per_group"]
            self.transfer(f"{name}/weights", OpKind.LOAD, DMATarget.WEIGHTS,
                          p["weights"] + first * p["per_group"] * self.k[DMATarget.WEIGHTS],
                          slot["weight"], words)
            self.resident[("weights", slot["weight"])] = key
        if self.resident.get(("bias", slot["bias"])) != key:
            self.transfer(f"{name}/biases", OpKind.LOAD, DMATarget.BIAS,
                          p["bias"] + first * cfg.po * self.k[DMATarget.BIAS],
                          slot["bias"] * cfg.po, count * cfg.po)
            self.resident[("bias", slot["bias"])] = key
        if self.resident.get(("codebook", slot["table"])) != conv:
            self.transfer(f"{name}/codebook", OpKind.LOAD, DMATarget.CODEBOOK, p["codebook"],
                          slot["table"] * cfg.codebook_entries, cfg.codebook_entries)
            self.resident[("codebook", slot["table"])] = conv

    def slots(self, convs: list[str]) -> dict:
        """Where each (conv, chunk) of a node goes on chip: all at once when the node's
        parameters fit (loaded once), else every chunk at the memories' start (loaded before
        each use). A codebook table per convolution of the node."""
        cfg = self.cfg
        if len(convs) > cfg.codebook_tables:
            raise UnsupportedNetworkError(f"{convs[0]}: the node has {len(convs)} convolutions; "
                                          f"the device has {cfg.codebook_tables} codebook tables")
        weights = sum(self.params[c]["og"] * self.params[c]["per_group"] for c in convs)
        bias = sum(self.params[c]["og"] for c in convs)
        whole = weights <= cfg.weight_depth and bias <= cfg.bias_depth
        out, w_at, b_at = {}, 0, 0
        for t, c in enumerate(convs):
            p = self.params[c]
            chunk = p["og"] if whole else p["chunk"]
            for first in range(0, p["og"], chunk):
                n = min(chunk, p["og"] - first)
                out[(c, first)] = {"weight": w_at, "bias": b_at, "table": t, "count": n}
                if whole:
                    w_at += n * p["per_group"]
                    b_at += n
        return out

    def conv_chunks(self, name: str, conv: str, desc: LayerDescriptor, slots: dict, *,
                    in_base: int, out_base: int, src_sq: bool = False, dst_sq: bool = False,
                    store=None, out_map_rows: int | None = None, only: int | None = None) -> None:
        """The convolution's chunks: parameters, the engine's pass (output at ``out_base``
        of its memory, a chunk's groups from there), and ``store(first_group, groups)`` after
        each when its output goes to the SDRAM."""
        cfg = self.cfg
        p = self.params[conv]
        qc = p["qc"]
        if not qc.spec.relu:
            raise UnsupportedNetworkError(f"{conv}: a convolution without ReLU (its int32 "
                                          "accumulator output) has no device op")
        for (c, first), slot in slots.items():
            if c != conv or (only is not None and first != only):
                continue
            n = slot["count"]
            channels = min(n * cfg.po, qc.spec.out_channels - first * cfg.po)
            self.load_parameters(name, conv, first, n, slot)
            d = replace(desc, out_channels=channels, weight_base=slot["weight"],
                        bias_base=slot["bias"], codebook_table=slot["table"], out_channel_base=0,
                        mult=qc.mult, shift=qc.shift)
            plane = (out_map_rows or d.out_h) * d.out_w
            chunk_base = out_base if store else out_base + first * cfg.po // cfg.pc * plane
            self.op(name, OpKind.CONV, {"src_squeeze": int(src_sq), "dst_squeeze": int(dst_sq),
                                        "conv": d.fields(cfg, in_base, chunk_base,
                                                         out_map_rows)}, d)
            if store:
                store(first * cfg.po // cfg.pc, groups(channels, cfg.pc))

    def store_rows(self, name: str, node: str, first_group: int, n_groups: int, row0: int,
                   rows: int, buffer: int) -> None:
        """Rows ``row0 .. row0 + rows - 1`` of channel groups ``first_group ..`` of the node's
        map, from ``buffer`` (the groups' planes of ``rows`` rows, one after another)."""
        base, (c, h, w) = self.maps[node]
        k = self.k[DMATarget.FEATURE]
        self.transfer(f"{name}/store", OpKind.STORE, DMATarget.FEATURE,
                      base + (first_group * h * w + row0 * w) * k, buffer, rows * w, n_groups,
                      h * w, rows * w)

    def load_rows(self, name: str, node: str, row0: int, rows: int) -> None:
        """Rows ``row0 .. row0 + rows - 1`` of every channel group of the node's map into the
        input tile (word 0)."""
        base, (c, h, w) = self.maps[node]
        k = self.k[DMATarget.FEATURE]
        self.transfer(f"{name}/load", OpKind.LOAD, DMATarget.FEATURE, base + row0 * w * k, 0,
                      rows * w, groups(c, self.cfg.pc), h * w, rows * w)


def _bands(out_rows: int, fits) -> list[tuple[int, int]]:
    """Equal bands of output rows, as long as ``fits(rows)`` allows."""
    most = max((r for r in range(1, out_rows + 1) if fits(r)), default=0)
    if not most:
        return []
    n = -(-out_rows // most)
    size = -(-out_rows // n)
    return [(r, min(size, out_rows - r)) for r in range(0, out_rows, size)]


def _whole_squeeze_fire(plan: _Planner, node: Fire, src: str, shapes: dict, slots: dict,
                        chunk_groups: int) -> None:
    """A Fire module whose whole squeeze output fits the squeeze buffer: the squeeze runs band
    by band over the input (no halo: it is 1x1) into the whole squeeze map; then each expand
    chunk's parameters are loaded once and its output computed band by band from that map
    into the feature-map memory (the input tile is no longer needed) and stored."""
    cfg = plan.cfg
    pc = cfg.pc
    name = node.name
    sq, e1, e3 = node.convs()
    c, h, w = shapes[src]
    cg = groups(c, pc)
    tile = cfg.fm_depth
    for b, (r0, rows) in enumerate(_bands(h, lambda r: r * w * cg <= tile)):
        band = f"{name}[{b}]"
        plan.load_rows(band, src, r0, rows)
        plan.conv_chunks(f"{band}/squeeze", sq.name, describe(sq, h, w).band(r0, rows), slots,
                         in_base=0, out_base=0, dst_sq=True, out_map_rows=h)
    bands = _bands(h, lambda r: chunk_groups * r * w <= tile)
    if not bands:
        raise UnsupportedNetworkError(f"{name}: not even one output row of an expand chunk "
                                      f"fits the feature-map memory ({tile} words a bank)")
    for conv, offset in ((e1, 0), (e3, e1.out_channels // pc)):
        whole = describe(conv, h, w)
        short = conv.name.split("/")[-1]
        for (cv, first), slot in slots.items():
            if cv != conv.name:
                continue
            for b, (r0, rows) in enumerate(bands):
                d = replace(whole, out_h=rows, out_row0=r0)     # reads the whole squeeze map
                plan.conv_chunks(
                    f"{name}[{b}]/{short}", conv.name, d, slots, in_base=0, out_base=0,
                    src_sq=True, only=first,
                    store=lambda g, n, r0=r0, rows=rows, off=offset, nm=f"{name}[{b}]":
                    plan.store_rows(nm, name, off + g, n, r0, rows, 0))


def compile_sdram(q: QuantizedModel, cfg: AcceleratorConfig) -> DeviceProgram:
    net = q.network
    shapes = net.shapes()
    pc, po = cfg.pc, cfg.po
    plan = _Planner(q, cfg)
    tile = cfg.fm_depth
    for name, (c, h, w) in shapes.items():
        if max(h, w) > cfg.max_side or c > cfg.max_channels:
            raise UnsupportedNetworkError(
                f"{name}: a {c} x {h} x {w} feature map; the device takes at most "
                f"{cfg.max_channels} channels and {cfg.max_side} pixels a side (hw/config.py)")
    input_sdram = plan.map_of("input", shapes["input"])
    for conv in net.convs():
        plan.place_parameters(conv.name, q.convs[conv.name])
    node_ops: dict[str, list[int]] = {}
    result = None

    def too_big(node, what):
        return UnsupportedNetworkError(
            f"{node}: not even one output row's {what} fits the on-chip tiles "
            f"({tile} feature words a bank, {cfg.squeeze_depth} in the squeeze buffer)")

    for i, node in enumerate(net.nodes):
        src = net.node_inputs(i)[0]
        c, h, w = shapes[src]
        cg = groups(c, pc)
        first_op = len(plan.ops)
        name = node.name
        if isinstance(node, Conv):
            spec = node.convs()[0]
            _, oh, ow = shapes[name]
            plan.map_of(name, shapes[name])
            full = describe(spec, h, w)
            slots = plan.slots([spec.name])
            chunk_groups = max(s["count"] for s in slots.values()) * po // pc

            def fits(r, spec=spec, chunk_groups=chunk_groups, ow=ow):
                rows_in = min(h, (r - 1) * spec.stride + spec.kernel)   # a band in the middle
                return rows_in * w * cg + chunk_groups * r * ow <= tile
            bands = _bands(oh, fits)
            if not bands:
                raise too_big(name, "input and output")
            for b, (r0, rows) in enumerate(bands):
                d = full.band(r0, rows)
                in_words = d.buffer_rows * w * cg
                plan.load_rows(f"{name}[{b}]", src, d.in_row0, d.buffer_rows)
                plan.conv_chunks(
                    f"{name}[{b}]", spec.name, d, slots, in_base=0, out_base=in_words,
                    store=lambda g, n, r0=r0, rows=rows, at=in_words, nm=f"{name}[{b}]":
                    plan.store_rows(nm, name, g, n, r0, rows, at))
        elif isinstance(node, Fire):
            sq, e1, e3 = node.convs()
            if e1.out_channels % pc:
                raise UnsupportedNetworkError(f"{name}: expand1x1 has {e1.out_channels} "
                                              f"channels; the concat needs a multiple of {pc}")
            plan.map_of(name, shapes[name])
            sq_groups = groups(sq.out_channels, po) * po // pc
            full3 = describe(e3, h, w)
            slots = plan.slots([sq.name, e1.name, e3.name])
            chunk_groups = max(s["count"] for (cv, _), s in slots.items()
                               if cv != sq.name) * po // pc

            if sq_groups * h * w <= cfg.squeeze_depth:
                _whole_squeeze_fire(plan, node, src, shapes, slots, chunk_groups)
                node_ops[name] = list(range(first_op, len(plan.ops)))
                continue

            def fits(r, chunk_groups=chunk_groups, sq_groups=sq_groups):
                rows_in = min(h, r + 2)      # a band in the middle: a halo row on each side
                return (rows_in * w * cg + chunk_groups * r * w <= tile
                        and sq_groups * rows_in * w <= cfg.squeeze_depth)
            bands = _bands(h, fits)
            if not bands:
                raise too_big(name, "input, squeeze and output")
            for b, (r0, rows) in enumerate(bands):
                band = f"{name}[{b}]"
                d3 = full3.band(r0, rows)
                s0, srows = d3.band_input_rows
                in_words = srows * w * cg
                plan.load_rows(band, src, s0, srows)
                dsq = describe(sq, h, w).band(s0, srows)
                plan.conv_chunks(f"{band}/squeeze", sq.name, dsq, slots, in_base=0, out_base=0,
                                 dst_sq=True)
                d1 = replace(describe(e1, h, w), out_h=rows, out_row0=r0, in_row0=s0,
                             band_rows=0 if s0 + srows == h else srows)
                for conv, d, offset in ((e1, d1, 0), (e3, d3, e1.out_channels // pc)):
                    plan.conv_chunks(
                        f"{band}/{conv.name.split('/')[-1]}", conv.name, d, slots, in_base=0,
                        out_base=in_words, src_sq=True,
                        store=lambda g, n, r0=r0, rows=rows, at=in_words, off=offset, nm=band:
                        plan.store_rows(nm, name, off + g, n, r0, rows, at))
        elif isinstance(node, MaxPool):
            if (node.kernel, node.stride) != (3, 2):
                raise UnsupportedNetworkError(f"{name}: max pooling {node.kernel}x{node.kernel}"
                                              f"/{node.stride}; the device pools 3x3/2")
            _, oh, ow = shapes[name]
            plan.map_of(name, shapes[name])
            bands = _bands(oh, lambda r: (min(h, 2 * r + 1) * w + r * ow) * cg <= tile)
            if not bands:
                raise too_big(name, "input and output")
            for b, (r0, rows) in enumerate(bands):
                band = f"{name}[{b}]"
                in_rows = min(2 * rows + 1, h - 2 * r0)
                plan.load_rows(band, src, 2 * r0, in_rows)
                in_words, out_words = cg * in_rows * w, cg * rows * ow
                desc = LayerDescriptor(cg * pc, cg * pc, in_rows, w, rows, ow, 3, 2, 0, 0, 0)
                plan.op(band, OpKind.MAXPOOL, {"in_base": 0, "out_base": in_words,
                                               "in_words": in_words, "out_words": out_words,
                                               "conv": desc.fields(cfg)}, desc)
                plan.store_rows(band, name, 0, cg, r0, rows, in_words)
        elif isinstance(node, GlobalAvgPool):
            result = plan.map_of(name, shapes[name], cg * SUM_WORDS)
            per = tile // (h * w + SUM_WORDS)
            if per < 1:
                raise too_big(name, "channel group")
            base, _ = plan.maps[src]
            k = plan.k[DMATarget.FEATURE]
            for b, g0 in enumerate(range(0, cg, per)):
                n = min(per, cg - g0)
                band = f"{name}[{b}]"
                plan.transfer(f"{band}/load", OpKind.LOAD, DMATarget.FEATURE,
                              base + g0 * h * w * k, 0, n * h * w)
                desc = LayerDescriptor(n * pc, n * pc, h, w, 1, 1, 1, 1, 0, 0, 0)
                plan.op(band, OpKind.GLOBAL_SUM, {
                    "in_base": 0, "out_base": n * h * w, "in_words": n * h * w,
                    "out_words": n * SUM_WORDS, "frame_pixels": h * w,
                    "conv": desc.fields(cfg)}, desc)
                plan.transfer(f"{band}/store", OpKind.STORE, DMATarget.FEATURE,
                              result + g0 * SUM_WORDS * k, n * h * w, n * SUM_WORDS)
        elif isinstance(node, Bypass):
            raise UnsupportedNetworkError(f"{name}: the bypass add is not a device op yet; "
                                          "run bypass variants with --device golden")
        else:
            raise UnsupportedNetworkError(f"{name}: {type(node).__name__} has no device op")
        node_ops[name] = list(range(first_op, len(plan.ops)))

    if not isinstance(net.nodes[-1], GlobalAvgPool):
        raise UnsupportedNetworkError("the device reads its result from a global average pool; "
                                      f"{net.output_node} is a {type(net.nodes[-1]).__name__}")
    ops = plan.ops
    if len(ops) + 1 > cfg.program_depth:
        raise UnsupportedNetworkError(f"the network needs {len(ops) + 1} program ops; the device "
                                      f"has {cfg.program_depth} (hw.config: program_depth)")
    try:
        words = [encode_op({"kind": op.kind, **op.fields}, cfg, op.name) for op in ops]
    except FieldRangeError as e:
        raise UnsupportedNetworkError(str(e)) from e
    words.append(encode_op({"kind": OpKind.END}, cfg, "END"))
    return DeviceProgram(cfg, q.index_bits, ops, words, [], np.zeros(0, np.int64), [], 0,
                         shapes["input"], 0, 0, shapes[net.output_node][0], net.output_node,
                         node_ops, sdram_blocks=plan.blocks, input_sdram=input_sdram,
                         result_sdram=result, sdram_maps=plan.maps)
