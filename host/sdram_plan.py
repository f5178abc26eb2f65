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

Every op runs after the one before (the sequencer has one op in flight); a LOAD or STORE
enters the DMA queue and runs beside the ops after it, which wait for it only where they read
what it fills or overwrite what it drains (``dma_wait``; reported as ``wait`` by host/board.py
and sqz infer). Written in that order, a node's next parameters and next band load during its
last pass only; the last step (_hoist_loads) queues each LOAD earlier where the cycle model
says the run gets shorter, past the ops that do not touch what it loads, and splits weight
LOADs into pieces that can queue apart.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from golden.network import Bypass, Conv, Fire, GlobalAvgPool, MaxPool
from golden.quantize import QuantizedModel
from hw.config import AcceleratorConfig
from hw.layout import (SKIP_ROWS, DMA_QUEUE, DMA_WAIT_BITS, SUM_WORDS, DMATarget, FieldRangeError, LayerDescriptor, OpKind,
                       codebook_sdram_words, dense_weight_lanes, describe, encode_op, groups,
                       sdram_of_bytes, sdram_unit_words, skip_units, skip_words, weight_units)
from hw.sdram_chip import MT48LC16M16A2
from hw.timing import sequence_cycles

from .program import DeviceProgram, Op, UnsupportedNetworkError, check_pooling

__all__ = ["compile_sdram"]


DMA_WAIT_MOST = (1 << DMA_WAIT_BITS) - 1     # an op's dma_wait that never waits


def _regions(region) -> list:
    """A region, or a list of them (a transfer that fills or drains a whole memory)."""
    return list(region) if isinstance(region, list) else [region]


class _Planner:
    def __init__(self, q: QuantizedModel, cfg: AcceleratorConfig, skip_cache: dict | None = None,
                 pieces: bool = False):
        self.q, self.cfg, self.pieces = q, cfg, pieces
        self.ops: list[Op] = []
        self.blocks: list[tuple[int, np.ndarray]] = []
        self.cursor = 0                            # next free SDRAM word
        self.k = {t: sdram_unit_words(cfg, t) for t in DMATarget}
        self.params: dict[str, dict] = {}          # conv -> where its parameters lie
        self.maps: dict[str, tuple[int, tuple[int, int, int]]] = {}   # node -> (word, shape)
        self.resident: dict = {}                   # on-chip slot -> what it holds
        self.names: dict[str, int] = {}
        # Per on-chip region, the ops of the last transfer that writes it (a LOAD, in pieces
        # or whole) or reads it (a STORE, or a unit op's own). A region is ("A", half),
        # ("B", half), or a parameter slot.
        self.loaded: dict = {}
        self.stored: dict = {}
        self.where: dict = {}                      # (conv, first, count) -> its chunk's slot
        self.slots_of: dict = {}                   # (conv, first) -> its slot as planned
        self.in_use = 0                            # the parameter half the last pass read
        self.half = cfg.fm_depth // 2              # an input tile: half of A
        self.out_tile = cfg.fm_b_depth // 2        # an output tile: half of B
        self.out_half = 0                          # B's half the next output goes to
        self.skip_blocks: dict = {}                # (conv, chunk) -> zero-skipping words
        # Per op: what it reads and writes (on-chip regions, and the SDRAM words a transfer or
        # an op's STORE touches: _hoist_loads) and the ops whose transfers it waits for
        # (_dma_waits counts its dma_wait from them).
        self.effects: list[tuple[set, set]] = []
        self.deps: list[list[int]] = []
        self.skip_cache = {} if skip_cache is None else skip_cache   # shared by the plans

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
        kw, kb = self.k[DMATarget.WEIGHTS], self.k[DMATarget.BIAS]
        if cfg.zero_skipping:          # placed per chunking when first used (_skip_block)
            w_at = None
        else:
            try:
                idx = dense_weight_lanes(qc, cfg, name)
            except FieldRangeError as e:
                raise UnsupportedNetworkError(str(e)) from e
            w_at = self.allocate(len(idx) * kw, kw)
            self.blocks.append((w_at, sdram_of_bytes(weight_units(idx, cfg))))
        cb_at = None          # zero-skipping words, and words of values, hold the values
        if cfg.codebooks:
            cb = np.zeros(cfg.codebook_entries, np.int64)
            cb[:len(qc.codebook)] = qc.codebook
            cb_at = self.allocate(len(cb))
            self.blocks.append((cb_at, codebook_sdram_words(cb)))
        og = groups(qc.spec.out_channels, cfg.po)
        b = np.zeros(og * cfg.po, np.int64)
        b[:qc.spec.out_channels] = qc.bias
        b_at = self.allocate(len(b) * kb, kb)
        self.blocks.append((b_at, sdram_of_bytes(b.astype("<i4").view(np.uint8).reshape(-1, 4))))
        per_group = groups(qc.spec.in_channels, cfg.pc) * qc.spec.kh * qc.spec.kw
        self.params[name] = {"qc": qc}
        # Chunks of half the weight and bias memories when they hold one (the next chunk's
        # parameters load into the other half while this one computes), else of all of them.
        if cfg.zero_skipping:
            # The most output groups a chunk can have (the engine's rows) whose words, for
            # every chunk of the layer, fit half of the weight memory, else all of it.
            def fits(c, depth):
                return max(w for *_, w in self.chunk_words(name, c)) <= depth
            top = min(og, SKIP_ROWS)
            halves = next((c for c in range(min(top, cfg.bias_depth // 2), 0, -1)
                           if fits(c, cfg.weight_depth // 2)), 0)
            chunk = halves or next((c for c in range(min(top, cfg.bias_depth), 0, -1)
                                    if fits(c, cfg.weight_depth)), 0)
        else:
            halves = min(og, cfg.weight_depth // 2 // per_group, cfg.bias_depth // 2)
            chunk = halves or min(og, cfg.weight_depth // per_group, cfg.bias_depth)
        if chunk < 1:
            one = (max(w for *_, w in self.chunk_words(name, 1)) if cfg.zero_skipping
                   else per_group)
            raise UnsupportedNetworkError(
                f"{name}: one output group's weights are {one} words; the weight memory "
                f"holds {cfg.weight_depth} (hw.config: weight_depth)")
        self.params[name] = {"qc": qc, "weights": w_at, "codebook": cb_at, "bias": b_at,
                             "og": og, "per_group": per_group, "chunk": chunk,
                             "double": halves > 0}

    # ---- zero-skipping weights ------------------------------------------------------------------
    def chunk_words(self, conv: str, chunk: int) -> list[tuple[int, int, int, int]]:
        """The layer's output groups in chunks of ``chunk``: (first group, groups, the chunk's
        first word in the layer's block, its words) each (hw.layout.skip_words)."""
        key = (conv, chunk)
        if key not in self.skip_blocks and key in self.skip_cache:
            self.skip_blocks[key] = {**self.skip_cache[key], "at": None}
        if key not in self.skip_blocks:
            qc, cfg = self.params[conv]["qc"], self.cfg
            weights = qc.weights
            og = groups(qc.spec.out_channels, cfg.po)
            parts, words, at = [], [], 0
            for first in range(0, og, chunk):
                n = min(chunk, og - first)
                rows = slice(first * cfg.po, (first + n) * cfg.po)
                try:
                    w = skip_words(weights[rows], cfg, conv)
                except FieldRangeError as e:
                    raise UnsupportedNetworkError(str(e)) from e
                parts.append((first, n, at, w.words))
                words.append(w)
                at += w.words
            self.skip_blocks[key] = {"parts": parts, "words": words, "at": None}
            self.skip_cache[key] = {"parts": parts, "words": words}
        return self.skip_blocks[key]["parts"]

    def skip_block(self, conv: str, chunk: int) -> int:
        """The SDRAM word where the layer's words in chunks of ``chunk`` start (placed on
        first use)."""
        self.chunk_words(conv, chunk)
        block = self.skip_blocks[(conv, chunk)]
        if block["at"] is None:
            units = np.concatenate([skip_units(w, self.cfg) for w in block["words"]])
            kw = self.k[DMATarget.WEIGHTS]
            block["at"] = self.allocate(len(units) * kw, kw)
            self.blocks.append((block["at"], sdram_of_bytes(units)))
        return block["at"]

    def chunk_of(self, conv: str, chunk: int, first: int) -> tuple[int, int]:
        """(offset, words) of the chunk at group ``first`` of a zero-skipping layer."""
        return next((at, w) for f, _, at, w in self.chunk_words(conv, chunk) if f == first)

    # ---- ops --------------------------------------------------------------------------------
    def op(self, name: str, kind: OpKind, fields: dict, desc: LayerDescriptor | None,
           reads=(), writes=(), store=None, extents=None) -> None:
        """Op names are unique (counters are read back by name): a repeat gets ``#n``. A unit
        op that reads regions ``reads`` and writes ``writes`` waits for the transfers that
        fill what it reads and for those that drain what it overwrites; the ones queued
        after them may still run (``dma_wait``, counted by _dma_waits once the order is
        final)."""
        n = self.names.get(name, 0)
        self.names[name] = n + 1
        deps = []
        if kind not in (OpKind.LOAD, OpKind.STORE):
            deps = [i for r in reads for i in self.loaded.get(r, ())]
            deps += [i for r in writes for i in self.stored.get(r, ())]
        if store is not None:             # (dma, region): the STORE it queues as it finishes
            fields = {**fields, "then_store": 1, "dma": store[0]}
        # (the parameter memories' regions as the words they span: ``extents``)
        reads = {(extents or {}).get(r, r) for r in reads}
        writes = {(extents or {}).get(r, r) for r in writes}
        if fields.get("src_squeeze"):     # the squeeze buffer as a whole (no regions named)
            reads.add(("squeeze", None))
        if fields.get("dst_squeeze"):
            writes.add(("squeeze", None))
        if store is not None:
            reads |= set(_regions(store[1]))
            writes.add(self.sdram_span(DMATarget.FEATURE, store[0]))
        self.effects.append((reads, writes))
        self.deps.append(deps)
        self.ops.append(Op(f"{name}#{n}" if n else name, kind, fields, desc))
        if store is not None:
            for region in _regions(store[1]):
                self.stored[region] = [len(self.ops) - 1]

    def sdram_span(self, target: DMATarget, dma: dict) -> tuple:
        """("sdram", first, end): the SDRAM words a transfer reads or writes (its runs' hull)."""
        k = self.k[target]
        first = dma["sdram_base"] * k
        return ("sdram", first,
                first + ((dma["runs"] - 1) * dma["sdram_stride"] + dma["run_words"]) * k)

    def transfer(self, name: str, kind: OpKind, target: DMATarget, sdram: int, buffer: int,
                 run_words: int, runs: int = 1, sdram_stride: int = 0,
                 buffer_stride: int = 0, region=None, piece: bool = False) -> None:
        """``sdram`` in SDRAM words (a whole number of the target's units); ``region`` the
        on-chip region it fills (LOAD) or drains (STORE); ``piece``: the LOAD continues the
        one before into the same region (an op reading it waits for every piece)."""
        dma = self.dma(target, sdram, buffer, run_words, runs, sdram_stride, buffer_stride)
        self.op(name, kind, {"dma": dma}, None)
        span = self.sdram_span(DMATarget.FEATURE if kind == OpKind.STORE else target, dma)
        on_chip = set(_regions(region))
        end = buffer + (runs - 1) * buffer_stride + run_words
        if target == DMATarget.WEIGHTS:
            on_chip = {("weights", buffer, end)}
        elif target == DMATarget.BIAS:           # (bias entries: PO a bias word)
            on_chip = {("bias", buffer // self.cfg.po, -(-end // self.cfg.po))}
        self.effects[-1] = ({span}, on_chip) if kind == OpKind.LOAD else (on_chip, {span})
        for r in _regions(region):
            if piece:        # a piece of one LOAD: an op that reads it waits for them all
                self.loaded[r].append(len(self.ops) - 1)
            else:
                (self.loaded if kind == OpKind.LOAD else self.stored)[r] = [len(self.ops) - 1]

    def load_parameters(self, name: str, conv: str, first: int, count: int, slot: dict) -> dict:
        """Output groups ``first .. first + count - 1`` of ``conv`` on chip, unless they are
        there already; returns where (weight word, bias word, codebook table). A fixed slot
        is a resident node's; a chunk of a node that does not fit goes to the half of the
        weight and bias memories the chunk being computed does not use."""
        p, cfg = self.params[conv], self.cfg
        key = (conv, first, count)
        if slot.get("dynamic"):
            if key in self.where and self.resident.get(
                    ("weights", self.where[key]["weight"])) == key:
                return self.where[key]
            half = (1 - self.in_use) if p["double"] else 0
            bias = (half * (cfg.bias_depth // 2) if slot["conv_bias"] is None
                    else slot["conv_bias"] + first)
            slot = {"weight": half * (cfg.weight_depth // 2), "bias": bias,
                    "table": slot["table"], "count": count, "half": half,
                    "conv_bias": slot["conv_bias"], "partition": slot.get("partition")}
            self.where[key] = slot
        kw = self.k[DMATarget.WEIGHTS]
        if cfg.zero_skipping:
            part = slot["partition"]
            block = self.skip_block(conv, part)
            offset, words = self.chunk_of(conv, part, first)
            whole = sum(w for *_, w in self.chunk_words(conv, part))
            room = cfg.weight_depth // 2 if p["double"] else cfg.weight_depth
            if slot.get("conv_weight") is None and words > room:
                raise UnsupportedNetworkError(
                    f"{conv}: output groups {first}..{first + count - 1} are {words} "
                    f"zero-skipping words; the weight memory has room for {room} "
                    "(hw.config: weight_depth)")
        else:
            block, offset, words = p["weights"], first * p["per_group"], count * p["per_group"]
            whole = p["og"] * p["per_group"]
        if slot.get("conv_weight") is not None:      # a resident node: all of them, once
            at = slot["conv_weight"]
            if self.resident.get(("weights", at)) != conv:
                self.load_weights(name, block, at, whole)
                self.resident[("weights", at)] = conv
        elif self.resident.get(("weights", slot["weight"])) != key:
            self.load_weights(name, block + offset * kw, slot["weight"], words)
            self.resident[("weights", slot["weight"])] = key
        if slot["conv_bias"] is not None:           # all the convolution's biases, once
            at = slot["conv_bias"]
            if self.resident.get(("bias", at)) != conv:
                self.transfer(f"{name}/biases", OpKind.LOAD, DMATarget.BIAS, p["bias"],
                              at * cfg.po, p["og"] * cfg.po, region=("bias", at))
                self.resident[("bias", at)] = conv
        elif self.resident.get(("bias", slot["bias"])) != key:
            self.transfer(f"{name}/biases", OpKind.LOAD, DMATarget.BIAS,
                          p["bias"] + first * cfg.po * self.k[DMATarget.BIAS],
                          slot["bias"] * cfg.po, count * cfg.po, region=("bias", slot["bias"]))
            self.resident[("bias", slot["bias"])] = key
        if cfg.codebooks and self.resident.get(("codebook", slot["table"])) != conv:
            self.transfer(f"{name}/codebook", OpKind.LOAD, DMATarget.CODEBOOK, p["codebook"],
                          slot["table"] * cfg.codebook_entries, cfg.codebook_entries,
                          region=("codebook", slot["table"]))
            self.resident[("codebook", slot["table"])] = conv
        return slot

    def load_weights(self, name: str, sdram: int, at: int, words: int) -> None:
        """Weight words ``at ..`` from SDRAM word ``sdram``: one LOAD, or with ``pieces`` LOADs
        of at most WEIGHT_PIECE words, which _hoist_loads can queue apart (a long LOAD ahead
        in the queue holds up every STORE and band LOAD behind it)."""
        piece = WEIGHT_PIECE if self.pieces else words
        for o in range(0, words, piece):
            self.transfer(f"{name}/weights", OpKind.LOAD, DMATarget.WEIGHTS,
                          sdram + o * self.k[DMATarget.WEIGHTS], at + o, min(piece, words - o),
                          region=("weights", at), piece=o > 0)

    def slots(self, convs: list[str], max_og: dict | None = None) -> dict:
        out = self._slots(convs, max_og)
        self.slots_of.update(out)
        return out

    def _slots(self, convs: list[str], max_og: dict | None = None) -> dict:
        """Where each (conv, chunk) of a node goes on chip: all at once when the node's
        parameters fit (loaded once), else every chunk at the memories' start (loaded before
        each use); a chunk has at most ``max_og[conv]`` output groups (an output tile's
        worth). A codebook table per convolution of the node."""
        cfg = self.cfg
        if cfg.codebooks and len(convs) > cfg.codebook_tables:
            raise UnsupportedNetworkError(f"{convs[0]}: the node has {len(convs)} convolutions; "
                                          f"the device has {cfg.codebook_tables} codebook tables")
        if cfg.zero_skipping:
            # A chunk is at most the engine's rows; resident, the node's chunks as they are
            # (each a chunk's own words), else each at most the chunk that fits a half.
            parts = {c: min(self.params[c]["og"], SKIP_ROWS, (max_og or {}).get(c, SKIP_ROWS))
                     for c in convs}
            sizes = {c: [w for *_, w in self.chunk_words(c, parts[c])] for c in convs}
            weights = sum(sum(v) for v in sizes.values())
        else:
            weights = sum(self.params[c]["og"] * self.params[c]["per_group"] for c in convs)
        bias = sum(self.params[c]["og"] for c in convs)
        biases_fit = bias <= cfg.bias_depth
        whole = weights <= cfg.weight_depth and biases_fit
        out, w_at, b_at = {}, 0, 0
        for t, c in enumerate(convs):
            p = self.params[c]
            chunk = min(p["og"] if whole else p["chunk"], (max_og or {}).get(c, p["og"]))
            if cfg.zero_skipping:
                chunk = parts[c] if whole else min(p["chunk"], parts[c])
            for first in range(0, p["og"], chunk):
                n = min(chunk, p["og"] - first)
                # A convolution's biases load at once when the node's fit ("conv_bias": its
                # first bias word), else with each chunk.
                common = {"table": t if cfg.codebooks else 0, "count": n,
                          "conv_bias": b_at if biases_fit else None}
                if cfg.zero_skipping:
                    common["partition"] = chunk
                if whole:
                    offset = (self.chunk_of(c, chunk, first)[0] if cfg.zero_skipping
                              else first * p["per_group"])
                    out[(c, first)] = {"weight": w_at + offset,
                                       "bias": b_at + first, "conv_weight": w_at, **common}
                else:
                    out[(c, first)] = {"dynamic": True, **common}
            b_at += p["og"]
            if whole:
                w_at += sum(sizes[c]) if cfg.zero_skipping else p["og"] * p["per_group"]
        return out

    def conv_chunks(self, name: str, conv: str, desc: LayerDescriptor, slots: dict, *,
                    in_half: int | None = None, dst_sq: bool = False, node: str | None = None,
                    row0: int = 0, group_offset: int = 0, out_map_rows: int | None = None,
                    only: int | None = None, before_last=None, then=None,
                    residual=None) -> None:
        """The convolution's chunks: parameters, the engine's pass, and for an output that
        goes to the SDRAM (``node``) a STORE of the chunk's rows at channel group
        ``group_offset`` + the chunk's. The input is A's half ``in_half`` (None: the squeeze
        buffer); the output goes to the squeeze buffer (``dst_sq``, the whole squeeze map's
        rows with ``out_map_rows``) or to the next half of B. ``before_last`` runs just before
        the last chunk's pass (a prefetch then overlaps it); ``then`` = (conv, first) is the
        chunk computed after this call's last, whose parameters load during it. ``residual``
        = (map, QAdd): the complex bypass, the convolution's accumulators added to the map's
        bytes at the same pixels and channels (loaded into the squeeze buffer before each
        pass, at the output chunk's own addresses) and requantised together."""
        cfg = self.cfg
        p = self.params[conv]
        qc = p["qc"]
        if not qc.spec.relu and residual is None:
            raise UnsupportedNetworkError(f"{conv}: a convolution without ReLU (its int32 "
                                          "accumulator output) has no device op")
        chunks = [(first, slot) for (c, first), slot in slots.items()
                  if c == conv and (only is None or first == only)]
        for i, (first, slot) in enumerate(chunks):
            n = slot["count"]
            channels = min(n * cfg.po, qc.spec.out_channels - first * cfg.po)
            slot = self.load_parameters(name, conv, first, n, slot)
            self.in_use = slot.get("half", 0)
            # The next chunk's parameters load beside this pass, into the other half (only
            # when there are halves: a single slot is this pass's own).
            following = chunks[i + 1] if i + 1 < len(chunks) else None
            if following and following[1].get("dynamic") and p["double"]:
                self.load_parameters(name, conv, following[0], following[1]["count"],
                                     following[1])
            elif not following and then and self.slots_of[then].get("dynamic") \
                    and self.params[then[0]]["double"]:
                after = self.slots_of[then]
                self.load_parameters(name, then[0], then[1], after["count"], after)
            mult, shift = (qc.mult, qc.shift) if residual is None else (residual[1].mult_b,
                                                                           residual[1].shift)
            d = replace(desc, out_channels=channels, weight_base=slot["weight"],
                        bias_base=slot["bias"], codebook_table=slot["table"], out_channel_base=0,
                        mult=mult, shift=shift,
                        pixel_words=(self.chunk_of(conv, slot["partition"], first)[1]
                                     if cfg.zero_skipping else 0))
            if i == len(chunks) - 1 and before_last:
                before_last()
            bias_region = ("bias", slot["conv_bias"] if slot["conv_bias"] is not None
                           else slot["bias"])
            weight_region = ("weights", slot["conv_weight"] if slot.get("conv_weight") is not None
                             else slot["weight"])
            params = [weight_region, bias_region, ("codebook", slot["table"])]
            if slot.get("conv_weight") is not None:      # the words the pass may read
                extent = (sum(w for *_, w in self.chunk_words(conv, slot["partition"]))
                          if cfg.zero_skipping else p["og"] * p["per_group"])
            else:
                extent = cfg.weight_depth // 2 if p["double"] else cfg.weight_depth
            extents = {weight_region: ("weights", weight_region[1], weight_region[1] + extent),
                       bias_region: ("bias", bias_region[1], bias_region[1] + (
                           p["og"] if slot["conv_bias"] is not None else n))}
            reads = params + ([("A", in_half)] if in_half is not None else [])
            in_base = 0 if in_half is None else in_half * self.half
            if dst_sq:
                plane = (out_map_rows or d.out_h) * d.out_w
                out_base, writes = first * cfg.po // cfg.pc * plane, []
            else:
                half = self.out_half
                self.out_half ^= 1
                out_base, writes = half * self.out_tile, [("B", half)]
            store = None
            if node is not None:
                store = self.store_rows(node, group_offset + first * cfg.po // cfg.pc,
                                        groups(channels, cfg.pc), row0, d.out_h, half)
            unit = {}
            if residual is not None:
                # The residual at the output chunk's own addresses, in the squeeze buffer.
                dma, _ = self.store_rows(residual[0], first * cfg.po // cfg.pc,
                                         groups(channels, cfg.pc), row0, d.out_h, half)
                self.transfer(f"{name}/residual", OpKind.LOAD, DMATarget.SQUEEZE,
                              dma["sdram_base"] * self.k[DMATarget.FEATURE], out_base,
                              dma["run_words"], dma["runs"], dma["sdram_stride"],
                              dma["buffer_stride"], region=("squeeze", half))
                reads = reads + [("squeeze", half)]
                unit = {"residual_mult": residual[1].mult_a}
            self.op(name, OpKind.CONV, {"src_squeeze": int(in_half is None),
                                        "dst_squeeze": int(dst_sq), "unit": unit,
                                        "conv": d.fields(cfg, in_base, out_base,
                                                         out_map_rows)}, d,
                    reads=reads, writes=writes, store=store, extents=extents)

    def store_rows(self, node: str, first_group: int, n_groups: int, row0: int, rows: int,
                   half: int) -> tuple[dict, tuple]:
        """The STORE (dma fields, region) of rows ``row0 .. row0 + rows - 1`` of channel groups
        ``first_group ..`` of the node's map, from B's ``half`` (the groups' planes of
        ``rows`` rows, one after another)."""
        base, (c, h, w) = self.maps[node]
        k = self.k[DMATarget.FEATURE]
        return self.dma(DMATarget.FEATURE, base + (first_group * h * w + row0 * w) * k,
                        half * self.out_tile, rows * w, n_groups, h * w, rows * w), ("B", half)

    def dma(self, target: DMATarget, sdram: int, buffer: int, run_words: int, runs: int = 1,
            sdram_stride: int = 0, buffer_stride: int = 0) -> dict:
        """A transfer's fields; ``sdram`` in SDRAM words (a whole number of units)."""
        k = self.k[target]
        assert sdram % k == 0
        return {"target": int(target), "sdram_base": sdram // k, "buffer_base": buffer,
                "run_words": run_words, "runs": runs, "sdram_stride": sdram_stride,
                "buffer_stride": buffer_stride}

    def load_rows(self, name: str, node: str, row0: int, rows: int, half: int) -> None:
        """Rows ``row0 .. row0 + rows - 1`` of every channel group of the node's map into A's
        ``half``."""
        base, (c, h, w) = self.maps[node]
        k = self.k[DMATarget.FEATURE]
        self.transfer(f"{name}/load", OpKind.LOAD, DMATarget.FEATURE, base + row0 * w * k,
                      half * self.half, rows * w, groups(c, self.cfg.pc), h * w, rows * w,
                      region=("A", half))

    def unit_op(self, name: str, kind: OpKind, in_half: int, fields: dict,
                desc: LayerDescriptor, node: str, first_group: int, groups_: int, row0: int,
                rows: int, before=None) -> None:
        """A pooling op from A's ``in_half`` to B's next half, then its STORE."""
        half = self.out_half
        self.out_half ^= 1
        if before:
            before()
        if kind == OpKind.GLOBAL_SUM:
            base, _ = self.maps[node]
            k = self.k[DMATarget.FEATURE]
            store = (self.dma(DMATarget.FEATURE, base + first_group * SUM_WORDS * k,
                              half * self.out_tile, groups_ * SUM_WORDS), ("B", half))
        else:
            store = self.store_rows(node, first_group, groups_, row0, rows, half)
        self.op(name, kind, {**fields, "in_base": in_half * self.half,
                             "out_base": half * self.out_tile}, desc,
                reads=[("A", in_half)], writes=[("B", half)], store=store)


# Output rows a band aims for when a layer's output groups are more than an output tile holds
# for them: fewer rows make more bands (and more halo rows read again), fewer output groups a
# chunk make more passes. compile_sdram tries each and keeps the program that waits least
# among those that fit the program memory.
BAND_ROWS = (3, 4, 5, 6, 8, 12, 16)


def _chunk_og(cfg: AcceleratorConfig, out_tile: int, out_h: int, out_w: int,
              band_rows: int) -> int:
    """Output groups (PO channels) a chunk may have so that ``band_rows`` rows (or all
    ``out_h``, if fewer) fit an output tile (at least one group)."""
    rows = min(out_h, band_rows)
    return max(1, out_tile // (rows * out_w * (cfg.po // cfg.pc)))


def _bands(out_rows: int, fits) -> list[tuple[int, int]]:
    """Equal bands of output rows, as long as ``fits(rows)`` allows."""
    most = max((r for r in range(1, out_rows + 1) if fits(r)), default=0)
    if not most:
        return []
    n = -(-out_rows // most)
    size = -(-out_rows // n)
    return [(r, min(size, out_rows - r)) for r in range(0, out_rows, size)]


def _chunks_outer(plan: _Planner, conv: str, slots: dict, bands: list, input_words: int) -> bool:
    """Whether a convolution of several bands and chunks whose weights do not stay on chip
    moves fewer SDRAM words chunk by chunk (its input read once a chunk) than band by band
    (every chunk's weights loaded once a band). Zero-skipping only: its words are the larger."""
    cfg = plan.cfg
    chunks = [sl for (c, _), sl in slots.items() if c == conv]
    if not cfg.zero_skipping or len(bands) < 2 or len(chunks) < 2 or not chunks[0].get("dynamic"):
        return False
    weights = sum(w for *_, w in plan.chunk_words(conv, chunks[0]["partition"]))
    kw, kf = plan.k[DMATarget.WEIGHTS], plan.k[DMATarget.FEATURE]
    return len(chunks) * input_words * kf + weights * kw < len(bands) * weights * kw + \
        input_words * kf


def _banded(plan: _Planner, name: str, src: str, bands: list, input_rows, body) -> None:
    """Band after band, each band's input rows (``input_rows(band) -> (row0, rows)``) loaded
    into the A half its number gives; the next band's load is queued just before the band's
    last pass (``body(b, band, half, before_last)``), so it runs beside that pass."""
    def load(b):
        row0, rows = input_rows(bands[b])
        plan.load_rows(f"{name}[{b}]", src, row0, rows, b % 2)

    load(0)
    for b, band in enumerate(bands):
        prefetch = (lambda b=b: load(b + 1)) if b + 1 < len(bands) else None
        body(b, band, b % 2, prefetch)


def _whole_squeeze_fire(plan: _Planner, node: Fire, src: str, shapes: dict, slots: dict,
                        chunk_groups: int) -> None:
    """A Fire module whose whole squeeze output fits the squeeze buffer: the squeeze runs band
    by band over the input (no halo: it is 1x1) into the whole squeeze map; then each expand
    chunk's parameters are loaded once and its output computed band by band from that map
    and stored."""
    cfg = plan.cfg
    pc = cfg.pc
    name = node.name
    sq, e1, e3 = node.convs()
    c, h, w = shapes[src]
    cg = groups(c, pc)
    sq_bands = _bands(h, lambda r: r * w * cg <= plan.half)
    bands = _bands(h, lambda r: chunk_groups * r * w <= plan.out_tile)
    if chunk_groups * max(r for _, r in sq_bands) * w <= plan.out_tile:
        bands = sq_bands          # an expand band a squeeze band: one of each every step
    if not bands:
        raise UnsupportedNetworkError(f"{name}: not even one output row of an expand chunk "
                                      f"fits an output tile ({plan.out_tile} words a bank)")
    order = [key for key in slots if key[0] != sq.name]      # e1's chunks, then e3's

    def expand(b, r0, rows, cv, first, then=None, before_last=None):
        conv, offset = (e1, 0) if cv == e1.name else (e3, e1.out_channels // pc)
        d = replace(describe(conv, h, w), out_h=rows, out_row0=r0)   # the whole squeeze map
        plan.conv_chunks(f"{name}[{b}]/{conv.name.split('/')[-1]}", conv.name, d, slots,
                         only=first, node=name, row0=r0, group_offset=offset, then=then,
                         before_last=before_last)

    if not any(slots[key].get("dynamic") for key in order):
        # Resident parameters: an expand band runs as soon as the squeeze rows it reads (its
        # rows and one on each side) are there, every chunk of it, while the next squeeze
        # band's input loads (queued before the last expand pass, behind the STOREs before
        # it, so that they are not held up by it); expand1x1's STOREs run beside expand3x3's
        # passes.
        pending = list(enumerate(bands))

        def squeeze_then_expand(b, band, half, prefetch):
            r0, rows = band
            done = r0 + rows
            ready = [p for p in pending if p[1][0] + p[1][1] + 1 <= done or done == h]
            plan.conv_chunks(f"{name}[{b}]/squeeze", sq.name, describe(sq, h, w).band(r0, rows),
                             slots, in_half=half, dst_sq=True, out_map_rows=h,
                             before_last=None if ready else prefetch)
            for k, (j, (e0, erows)) in enumerate(ready):
                pending.remove((j, (e0, erows)))
                for i, (cv, first) in enumerate(order):
                    last = k == len(ready) - 1 and i == len(order) - 1
                    expand(j, e0, erows, cv, first, before_last=prefetch if last else None)
        _banded(plan, name, src, sq_bands, lambda band: band, squeeze_then_expand)
        return

    def squeeze(b, band, half, prefetch):
        r0, rows = band
        plan.conv_chunks(f"{name}[{b}]/squeeze", sq.name, describe(sq, h, w).band(r0, rows),
                         slots, in_half=half, dst_sq=True, out_map_rows=h, before_last=prefetch)
    _banded(plan, name, src, sq_bands, lambda band: band, squeeze)
    # Parameters chunk by chunk: each chunk's passes band after band, the next chunk's
    # parameters loading beside the last.
    for j, (cv, first) in enumerate(order):
        for b, (r0, rows) in enumerate(bands):
            last = b == len(bands) - 1 and j + 1 < len(order)
            expand(b, r0, rows, cv, first, then=order[j + 1] if last else None)


def _bypass_add(plan: _Planner, node: Bypass, srcs: list[str], shapes: dict) -> None:
    """The simple bypass: the Fire output and the Fire input, word for word (the add is per
    channel and pixel, and both maps lie in the SDRAM as the same words). A chunk is one LOAD
    of two runs, the same words of both maps, into A (the map at the lower SDRAM address first,
    the other right after it: hw.layout.op_layout's ADD, whose sum is symmetric), one ADD into
    B and its STORE. A chunk takes all of A and B, so chunks are few (every op counts against
    the program memory); their transfers do not overlap the add, which is short beside them."""
    cfg, name = plan.cfg, node.name
    c, h, w = shapes[srcs[0]]
    words = groups(c, cfg.pc) * h * w
    plan.map_of(name, shapes[name])
    per = min(cfg.fm_depth // 2, cfg.fm_b_depth)
    qa = plan.q.adds[name]
    k = plan.k[DMATarget.FEATURE]
    (lo, m_lo), (hi, m_hi) = sorted(((plan.maps[srcs[0]][0], qa.mult_a),
                                     (plan.maps[srcs[1]][0], qa.mult_b)))
    out_map, _ = plan.maps[name]
    whole_a, whole_b = [("A", 0), ("A", 1)], [("B", 0), ("B", 1)]
    for j, o in enumerate(range(0, words, per)):
        n = min(per, words - o)
        plan.transfer(f"{name}[{j}]/load", OpKind.LOAD, DMATarget.FEATURE, lo + o * k, 0, n,
                      2, (hi - lo) // k, n, region=whole_a)
        store = (plan.dma(DMATarget.FEATURE, out_map + o * k, 0, n), whole_b)
        plan.op(f"{name}[{j}]", OpKind.ADD, {
            "in_base": 0, "out_base": 0, "in_words": n, "out_words": n,
            "unit": {"mult_b": m_hi}, "conv": {"mult": m_lo, "shift": qa.shift}}, None,
            reads=whole_a, writes=whole_b, store=store)


def compile_sdram(q: QuantizedModel, cfg: AcceleratorConfig) -> DeviceProgram:
    """The program for ``cfg``: of the plans for each of BAND_ROWS, the one whose cycle model
    waits least for memory among those that fit the program memory; if none fits, the plan
    that gives every node the band height with which it needs the fewest ops, in segments
    (DeviceProgram.segments). Then that plan with its LOADs queued where the cycle model
    says they pay most (_hoist_loads), if that is shorter."""
    plans, error = {}, None
    cache: dict = {}
    for band_rows in (SKIP_BAND_ROWS if cfg.zero_skipping else BAND_ROWS):
        try:
            plans[band_rows] = _compile(q, cfg, band_rows, cache)
        except UnsupportedNetworkError as e:
            error = error or e
    if not plans:
        raise error
    if cfg.zero_skipping:
        key, best = _fastest(q, cfg, plans, cache)
    else:
        fitting = {r: p for r, p in plans.items() if not p.segments}
        if fitting:
            key = min(fitting, key=lambda r: sum(fitting[r].timeline()[1].values()))
            best = fitting[key]
        else:
            # Longer than the program memory whichever the band height: the plan that gives
            # every node the band height with which it needs the fewest ops (the fewest
            # segments, each one more program upload per image), run as segments.
            nodes = next(iter(plans.values())).node_ops
            key = {node: min(plans, key=lambda r: (len(plans[r].node_ops[node]), r))
                   for node in nodes}
            best = _compile(q, cfg, key, cache)
    # Weights in pieces make more ops: kept only if they need no more segments, else the
    # LOADs are moved whole (a program in segments keeps them whole to begin with).
    candidates = [best]
    for pieces in ((True, False) if not best.segments else (False,)):
        hoisted = _compile(q, cfg, key, cache, hoist=True, pieces=pieces)
        if len(hoisted.segment_ranges()) <= len(best.segment_ranges()):
            candidates.append(hoisted)
            break
    return min(candidates, key=lambda p: p.timeline()[2])


# Zero-skipping: a chunk's rows are output groups computed together, so a band of fewer rows
# (a smaller output tile per group) can pay for itself in passes of more rows.
SKIP_BAND_ROWS = (1, 2) + BAND_ROWS


def _fastest(q: QuantizedModel, cfg: AcceleratorConfig, plans: dict, cache: dict
             ) -> tuple[int | dict[str, int], DeviceProgram]:
    """Of the single-height plans and the plan that gives every node the band height with which
    its ops take the fewest cycles, the one whose cycle model is shortest (in segments if it
    is longer than the program memory): (its band rows, the program)."""
    figures = {r: {f["name"]: f["cycles"] for f in p.node_figures(*p.timeline()[:2])}
               for r, p in plans.items()}
    nodes = next(iter(plans.values())).node_ops
    best = {node: min(plans, key=lambda r: (figures[r][node], r)) for node in nodes}
    candidates = list(plans.items()) + [(best, _compile(q, cfg, best, cache))]
    return min(candidates, key=lambda kp: kp[1].timeline()[2])


def _compile(q: QuantizedModel, cfg: AcceleratorConfig,
             band_rows: int | dict[str, int], cache: dict | None = None,
             hoist: bool = False, pieces: bool = True) -> DeviceProgram:
    """One plan: every Conv and Fire node's bands aim for ``band_rows`` output rows (or the
    node's own entry), in segments if it is longer than the program memory."""
    rows_of = band_rows.get if isinstance(band_rows, dict) else (lambda _: band_rows)
    net = q.network
    shapes = net.shapes()
    pc, po = cfg.pc, cfg.po
    plan = _Planner(q, cfg, cache, hoist and pieces)
    tile, out_tile = plan.half, plan.out_tile
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
            f"({tile} input and {out_tile} output feature words a bank, "
            f"{cfg.squeeze_depth} in the squeeze buffer)")

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
            slots = plan.slots([spec.name],
                               {spec.name: _chunk_og(cfg, out_tile, oh, ow, rows_of(name))})
            chunk_groups = max(s["count"] for s in slots.values()) * po // pc

            def fits(r, spec=spec, chunk_groups=chunk_groups, ow=ow):
                rows_in = min(h, (r - 1) * spec.stride + spec.kernel)   # a band in the middle
                return rows_in * w * cg <= tile and chunk_groups * r * ow <= out_tile
            bands = _bands(oh, fits)
            if not bands:
                raise too_big(name, "input and output")

            def conv_band(b, band, half, prefetch, full=full, spec=spec, slots=slots,
                          only=None, then=None):
                r0, rows = band
                plan.conv_chunks(f"{name}[{b}]", spec.name, full.band(r0, rows), slots,
                                 in_half=half, node=name, row0=r0, before_last=prefetch,
                                 only=only, then=then if b == len(bands) - 1 else None)
            rows_of_band = (lambda band, full=full: full.band(*band).band_input_rows)
            firsts = sorted(f for (c, f), sl in slots.items() if c == spec.name)
            if _chunks_outer(plan, spec.name, slots, bands, cg * w * h):
                # Each chunk's weights once, the input once per chunk: cheaper than every
                # chunk's weights once per band when they are larger than the input.
                for i, first in enumerate(firsts):
                    nxt = (spec.name, firsts[i + 1]) if i + 1 < len(firsts) else None
                    _banded(plan, name, src, bands, rows_of_band,
                            lambda b, band, half, prefetch, first=first, nxt=nxt: conv_band(
                                b, band, half, prefetch, only=first, then=nxt))
            else:
                _banded(plan, name, src, bands, rows_of_band, conv_band)
        elif isinstance(node, Fire):
            sq, e1, e3 = node.convs()
            if e1.out_channels % pc:
                raise UnsupportedNetworkError(f"{name}: expand1x1 has {e1.out_channels} "
                                              f"channels; the concat needs a multiple of {pc}")
            plan.map_of(name, shapes[name])
            sq_groups = groups(sq.out_channels, po) * po // pc
            full3 = describe(e3, h, w)
            whole_sq = sq_groups * h * w <= cfg.squeeze_depth
            # The input tile limits a band's rows (a squeeze band's, or a band with its halo);
            # the chunk takes what then fits.
            if whole_sq:
                rows = rows_of(name)
            else:
                rows = max([r for r in range(1, h + 1) if min(h, r + 2) * w * cg <= tile
                            and sq_groups * min(h, r + 2) * w <= cfg.squeeze_depth] or [1])
            limit = _chunk_og(cfg, out_tile, min(h, rows), w, rows_of(name))
            slots = plan.slots([sq.name, e1.name, e3.name], {e1.name: limit, e3.name: limit})
            chunk_groups = max(s["count"] for (cv, _), s in slots.items()
                               if cv != sq.name) * po // pc
            if whole_sq:
                _whole_squeeze_fire(plan, node, src, shapes, slots, chunk_groups)
                node_ops[name] = list(range(first_op, len(plan.ops)))
                continue

            def fits(r, chunk_groups=chunk_groups, sq_groups=sq_groups):
                rows_in = min(h, r + 2)      # a band in the middle: a halo row on each side
                return (rows_in * w * cg <= tile and chunk_groups * r * w <= out_tile
                        and sq_groups * rows_in * w <= cfg.squeeze_depth)
            bands = _bands(h, fits)
            if not bands:
                raise too_big(name, "input, squeeze and output")

            def fire_band(b, band, half, prefetch, sq=sq, e1=e1, e3=e3, full3=full3,
                          slots=slots):
                r0, rows = band
                d3 = full3.band(r0, rows)
                s0, srows = d3.band_input_rows
                plan.conv_chunks(f"{name}[{b}]/squeeze", sq.name, describe(sq, h, w).band(
                    s0, srows), slots, in_half=half, dst_sq=True)
                d1 = replace(describe(e1, h, w), out_h=rows, out_row0=r0, in_row0=s0,
                             band_rows=0 if s0 + srows == h else srows)
                plan.conv_chunks(f"{name}[{b}]/expand1x1", e1.name, d1, slots, node=name,
                                 row0=r0)
                plan.conv_chunks(f"{name}[{b}]/expand3x3", e3.name, d3, slots, node=name,
                                 row0=r0, group_offset=e1.out_channels // pc,
                                 before_last=prefetch)
            _banded(plan, name, src, bands,
                    lambda band, full3=full3: full3.band(*band).band_input_rows, fire_band)
        elif isinstance(node, MaxPool):
            check_pooling(node)
            k = node.kernel
            _, oh, ow = shapes[name]
            plan.map_of(name, shapes[name])
            # Pooling is per channel: bands of channel groups and rows, the split with the
            # fewest bands.
            def split(per, ow=ow):
                return [(g0, min(per, cg - g0), r0, rows) for g0 in range(0, cg, per)
                        for r0, rows in _bands(oh, lambda r: min(h, 2 * r + k - 2) * w * per <= tile
                                               and r * ow * per <= out_tile)]
            options = [split(per) for per in range(1, cg + 1)]
            options = [o for o in options if o]
            if not options:
                raise too_big(name, "input")
            bands = min(options, key=len)

            def pool_rows(band):
                g0, n, r0, rows = band
                return 2 * r0, min(2 * rows + k - 2, h - 2 * r0)

            def pool_load(b):
                g0, n, _, _ = bands[b]
                row0, rows = pool_rows(bands[b])
                base, _ = plan.maps[src]
                k = plan.k[DMATarget.FEATURE]
                plan.transfer(f"{name}[{b}]/load", OpKind.LOAD, DMATarget.FEATURE,
                              base + (g0 * h * w + row0 * w) * k, (b % 2) * tile, rows * w, n,
                              h * w, rows * w, region=("A", b % 2))
            pool_load(0)
            for b, band in enumerate(bands):
                g0, n, r0, rows = band
                in_rows = pool_rows(band)[1]
                desc = LayerDescriptor(n * pc, n * pc, in_rows, w, rows, ow, k, 2, 0, 0, 0)
                plan.unit_op(f"{name}[{b}]", OpKind.MAXPOOL, b % 2, {
                    "in_words": n * in_rows * w, "out_words": n * rows * ow,
                    "conv": desc.fields(cfg)}, desc, name, g0, n, r0, rows,
                    before=(lambda b=b: pool_load(b + 1)) if b + 1 < len(bands) else None)
        elif isinstance(node, GlobalAvgPool):
            result = plan.map_of(name, shapes[name], cg * SUM_WORDS)
            per = min(tile // (h * w), out_tile // SUM_WORDS)
            if per < 1:
                raise too_big(name, "channel group")
            base, _ = plan.maps[src]
            k = plan.k[DMATarget.FEATURE]
            chunks = [(g0, min(per, cg - g0)) for g0 in range(0, cg, per)]

            def load_groups(j):
                g0, n = chunks[j]
                plan.transfer(f"{name}[{j}]/load", OpKind.LOAD, DMATarget.FEATURE,
                              base + g0 * h * w * k, (j % 2) * tile, n * h * w,
                              region=("A", j % 2))
            load_groups(0)
            for j, (g0, n) in enumerate(chunks):
                desc = LayerDescriptor(n * pc, n * pc, h, w, 1, 1, 1, 1, 0, 0, 0)
                plan.unit_op(f"{name}[{j}]", OpKind.GLOBAL_SUM, j % 2, {
                    "in_words": n * h * w, "out_words": n * SUM_WORDS, "unit": {"frame_pixels": h * w},
                    "conv": desc.fields(cfg)}, desc, name, g0, n, 0, 0,
                    before=(lambda j=j: load_groups(j + 1)) if j + 1 < len(chunks) else None)
        elif isinstance(node, Bypass) and node.complex:
            # The bypass convolution over the Fire's input, banded like any convolution, each
            # pass adding the Fire's output (its residual) before requantising.
            fire_out, src = net.node_inputs(i)
            spec = node.convs()[0]
            c, h, w = shapes[src]
            cg = groups(c, pc)
            plan.map_of(name, shapes[name])
            full = describe(spec, h, w)
            slots = plan.slots([spec.name],
                               {spec.name: _chunk_og(cfg, out_tile, h, w, rows_of(name))})
            chunk_groups = max(s["count"] for s in slots.values()) * po // pc

            def fits(r, chunk_groups=chunk_groups):
                return (r * w * cg <= tile and chunk_groups * r * w <= out_tile
                        and chunk_groups * r * w <= cfg.squeeze_depth // 2)
            bands = _bands(h, fits)
            if not bands:
                raise too_big(name, "input, residual and output")

            def bypass_band(b, band, half, prefetch, full=full, spec=spec, slots=slots,
                            fire_out=fire_out, qa=q.adds[name]):
                r0, rows = band
                plan.conv_chunks(f"{name}[{b}]", spec.name, full.band(r0, rows), slots,
                                 in_half=half, node=name, row0=r0, before_last=prefetch,
                                 residual=(fire_out, qa))
            _banded(plan, name, src, bands,
                    lambda band, full=full: full.band(*band).band_input_rows, bypass_band)
        elif isinstance(node, Bypass):
            _bypass_add(plan, node, net.node_inputs(i), shapes)
        else:
            raise UnsupportedNetworkError(f"{name}: {type(node).__name__} has no device op")
        node_ops[name] = list(range(first_op, len(plan.ops)))

    if not isinstance(net.nodes[-1], GlobalAvgPool):
        raise UnsupportedNetworkError("the device reads its result from a global average pool; "
                                      f"{net.output_node} is a {type(net.nodes[-1]).__name__}")
    order = list(range(len(plan.ops)))
    if hoist:
        # A program in one segment: LOADs may move into the node before (its ops stay
        # counted as their own node's); in segments, each node's are placed among its own.
        if _segments(node_ops, len(plan.ops), cfg.program_depth - 1):
            order = []
            for indices in node_ops.values():
                order += _hoist_loads(plan, indices[0], indices[-1] + 1) if indices else []
        else:
            order = _hoist_loads(plan, 0, len(plan.ops))
        assert sorted(order) == list(range(len(plan.ops)))
        at = {i: k for k, i in enumerate(order)}
        node_ops = {node: sorted(at[i] for i in indices) for node, indices in node_ops.items()}
    waits = _dma_waits(plan, order)
    plan.ops = [replace(plan.ops[i], fields={**plan.ops[i].fields, "dma_wait": waits[i]})
                if i in waits else plan.ops[i] for i in order]
    ops = plan.ops
    segments = _segments(node_ops, len(ops), cfg.program_depth - 1)
    try:
        words = [encode_op({"kind": op.kind, **op.fields}, cfg, op.name) for op in ops]
    except FieldRangeError as e:
        raise UnsupportedNetworkError(str(e)) from e
    words.append(encode_op({"kind": OpKind.END}, cfg, "END"))
    return DeviceProgram(cfg, q.index_bits, ops, words, [], np.zeros(0, np.int64), [], 0,
                         shapes["input"], 0, 0, shapes[net.output_node][0], net.output_node,
                         node_ops, sdram_blocks=plan.blocks, input_sdram=input_sdram,
                         result_sdram=result, sdram_maps=plan.maps, segments=segments)


# Moving a LOAD earlier (_hoist_loads): how many unit ops back it may go, and how many ops
# around it the cycle model runs to compare the places (the queue taken as empty before them).
HOIST_REACH = 8
WEIGHT_PIECE = 128               # weight words a LOAD moves when the LOADs are placed so
HOIST_CONTEXT = 4
HOIST_AFTER = 16


def _conflict(a: tuple, b: tuple) -> bool:
    """Whether two effects touch the same memory: SDRAM spans that overlap, or the same
    on-chip region (None: the whole of that memory)."""
    if a[0] != b[0]:
        return False
    if len(a) != len(b):
        return True
    if len(a) == 3:                   # SDRAM and parameter memories: word spans
        return a[1] < b[2] and b[1] < a[2]
    return a[1] is None or b[1] is None or a[1] == b[1]


def _blocks(plan: _Planner, op: int, load: int) -> bool:
    """Whether op ``op`` must stay before LOAD ``load``: it reads or writes what the LOAD
    writes, or writes what the LOAD reads."""
    reads, writes = plan.effects[op]
    l_reads, l_writes = plan.effects[load]
    return (any(_conflict(x, w) for w in l_writes for x in reads | writes)
            or any(_conflict(x, r) for r in l_reads for x in writes))


def _dma_waits(plan: _Planner, order: list[int]) -> dict[int, int]:
    """Each unit op's dma_wait when the ops run in ``order``: the transfers queued between the
    last one it depends on and itself (a dependency not in ``order`` counts as finished)."""
    queued, n, out = {}, 0, {}
    for i in order:
        op = plan.ops[i]
        if op.is_transfer:
            queued[i], n = n, n + 1
            continue
        deps = [queued[d] for d in plan.deps[i] if d in queued]
        out[i] = min(DMA_WAIT_MOST, n - 1 - max(deps)) if deps else DMA_WAIT_MOST
        if op.fields.get("then_store"):
            queued[i], n = n, n + 1
    return out


def _hoist_loads(plan: _Planner, lo: int, hi: int) -> list[int]:
    """Ops ``lo .. hi - 1`` (one node's) in the order that queues each LOAD where the cycle
    model says the run is shortest: as written, or earlier, behind up to HOIST_REACH unit ops
    that do not touch what it loads (a later chunk's weights beside an earlier band's pass,
    say). The LOADs are placed one by one, in program order, each right after a unit op."""
    timed = {i: (plan.ops[i].kind, *plan.ops[i].timed(plan.cfg)) for i in range(lo, hi)}

    def cycles(window: list[int]) -> int:
        waits = _dma_waits(plan, window)
        return sequence_cycles([(timed[i][0], timed[i][1], waits.get(i, 0), timed[i][2])
                                for i in window], DMA_QUEUE)[1]

    order = list(range(lo, hi))
    for load in range(lo, hi):
        if plan.ops[load].kind != OpKind.LOAD:
            continue
        at = order.index(load)
        places, e, units = [], at, 0
        while e > 0 and units < HOIST_REACH and not _blocks(plan, order[e - 1], load):
            e -= 1
            if not plan.ops[order[e]].is_transfer:
                units += 1
                places.append(e)              # queued just before that unit op
        if not places:
            continue
        start, end = max(0, min(places) - 1 - HOIST_CONTEXT), min(len(order), at + HOIST_AFTER)
        rest = order[:at] + order[at + 1:]
        best, best_cycles = at, cycles(order[start:end])
        for p in places:
            trial = rest[:p] + [load] + rest[p:]
            c = cycles(trial[start:end])
            if c < best_cycles:
                best, best_cycles = p, c
        if best != at:
            order = rest[:best] + [load] + rest[best:]
    return order


def _segments(node_ops: dict[str, list[int]], count: int, room: int) -> list[tuple[int, int]]:
    """Op ranges of at most ``room`` ops (the program memory less END): whole nodes while they
    fit, a node longer than a segment split where the segment is full. [] when one does."""
    if count <= room:
        return []
    out, start = [], 0
    for indices in node_ops.values():
        end = indices[-1] + 1 if indices else start
        while end - start > room:
            # The node does not fit beside what the segment holds: close the segment at the
            # node's start (if it holds anything), else cut the node.
            first = indices[0] if indices else start
            cut = first if first > start else start + room
            out.append((start, cut))
            start = cut
    # ...and the last segment; then every range is checked to hold at most ``room`` ops.
    out.append((start, count))
    assert all(0 < b - a <= room for a, b in out), out
    return out
