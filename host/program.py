"""What a compiled network is: the device program (ops, op words, the parameters and where
they go) that host/compiler.py and host/sdram_plan.py produce and the driver uploads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.config import AcceleratorConfig
from hw.layout import (DMA_QUEUE, SUM_WORDS, LayerDescriptor, OpKind, feature_words, groups,
                       sdram_unit_words, sums_of_words)
from hw.timing import (OP_OVERHEAD, ideal_cycles, op_cycles, sequence_cycles, transfer_bounds,
                       transfer_cycles)

__all__ = ["DeviceProgram", "Op", "WeightStream", "UnsupportedNetworkError"]


class UnsupportedNetworkError(ValueError):
    """A network the device cannot run (named node, reason, what to do)."""


POOL_KERNELS = (2, 3)          # hw/pool.py's windows, stride 2


def check_pooling(node) -> None:
    """Refuse, by name, a max pooling the device's pooling unit does not compute."""
    if node.kernel not in POOL_KERNELS or node.stride != 2:
        raise UnsupportedNetworkError(f"{node.name}: max pooling {node.kernel}x{node.kernel}/"
                                      f"{node.stride}; the device pools 3x3/2 and 2x2/2")


@dataclass
class Op:
    name: str
    kind: OpKind
    fields: dict                     # op_layout fields; "conv" the descriptor's
    desc: LayerDescriptor | None     # the engine's descriptor (pooling ops: their frame sizes)

    def cycles(self, cfg: AcceleratorConfig) -> int:
        """A unit op's cycles (OP_OVERHEAD included, no wait); a transfer's estimated
        duration in the DMA queue."""
        if self.kind in (OpKind.LOAD, OpKind.STORE):
            return transfer_cycles(cfg, self.kind, self.fields["dma"]["target"],
                                   self.fields["dma"])
        return op_cycles(self.kind, cfg, self.desc, self.fields.get("in_words", 0),
                         self.fields.get("out_words", 0))

    @property
    def is_transfer(self) -> bool:
        return self.kind in (OpKind.LOAD, OpKind.STORE)

    def timed(self, cfg: AcceleratorConfig, pick: int = 1) -> tuple[int, int | None]:
        """(cycles, then_store) as hw.timing.sequence_cycles takes them: a unit op's own cycles
        (OP_OVERHEAD less) and its STORE's, or a transfer's; transfers at their fewest (0),
        estimate (1) or most (2) cycles (hw.timing.transfer_bounds)."""
        d = self.fields.get("dma")
        if self.is_transfer:
            return transfer_bounds(cfg, self.kind, d["target"], d)[pick], None
        store = (transfer_bounds(cfg, OpKind.STORE, 0, d)[pick]
                 if self.fields.get("then_store") else None)
        return self.cycles(cfg) - OP_OVERHEAD, store

    def ideal_cycles(self, cfg: AcceleratorConfig) -> float | None:
        """A convolution's multiply-accumulates / MAC units; None for pooling."""
        return ideal_cycles(self.desc, cfg) if self.kind == OpKind.CONV else None


@dataclass
class WeightStream:
    layer: str
    start: int                       # weight position of the stream's first entry's gap
    entries: np.ndarray              # (n, 2): gap, index


@dataclass
class DeviceProgram:
    cfg: AcceleratorConfig
    index_bits: int
    ops: list[Op]
    words: list[int]                 # the op words, END included
    codebooks: list[tuple[int, np.ndarray]]  # (first address, int values)
    biases: np.ndarray               # flat: bias word * PO + lane
    weights: list[WeightStream]
    weight_words: int
    input_shape: tuple[int, int, int]
    input_base: int
    result_base: int
    classes: int
    output_node: str
    node_ops: dict[str, list[int]] = field(default_factory=dict)  # node -> op indices
    # With the maps in the SDRAM: the SDRAM's contents a model brings ((word address, uint16
    # words): weights, codebooks, biases), and where the image and the result lie (SDRAM
    # words). None: the image and the result are in the feature-map memory.
    sdram_blocks: list[tuple[int, np.ndarray]] = field(default_factory=list)
    input_sdram: int | None = None
    result_sdram: int | None = None
    sdram_maps: dict[str, tuple[int, tuple[int, int, int]]] = field(default_factory=dict)
    # A program longer than the program memory runs as segments, (first op, end op) each, one
    # RUN apiece: the driver writes a segment's words, runs it to its END (which waits for the
    # transfers it queued) and writes the next. The maps stay in the SDRAM and the on-chip
    # memories keep their contents between runs, so a boundary may fall between any two ops.
    # Empty: one segment, the whole program.
    segments: list[tuple[int, int]] = field(default_factory=list)

    def segment_ranges(self) -> list[tuple[int, int]]:
        return self.segments or [(0, len(self.ops))]

    def segment_words(self, k: int) -> list[int]:
        """The program memory's words for segment ``k``: its ops, then END."""
        start, end = self.segment_ranges()[k]
        return self.words[start:end] + [self.words[-1]]

    def input_words(self, pixels: np.ndarray) -> bytes:
        """The image in feature-memory word order: PC bytes per word."""
        if pixels.shape != self.input_shape or pixels.dtype != np.uint8:
            raise ValueError(f"the program takes uint8 pixels of shape {self.input_shape}, got "
                             f"{pixels.dtype} {pixels.shape}")
        return feature_words(pixels, self.cfg).tobytes()

    def input_bytes(self, pixels: np.ndarray) -> tuple[bytes, int]:
        """(data, bytes a word) of the image on the link: with fewer channels than lanes,
        each pixel's channels alone (a packed FEATURE write: the device pads the lanes);
        otherwise whole feature words (a packed FEATURE or SDRAM write)."""
        words = self.input_words(pixels)          # checks the shape and type
        c = self.input_shape[0]
        if c < self.cfg.pc:
            return np.frombuffer(words, np.uint8).reshape(-1, self.cfg.pc)[:, :c].tobytes(), c
        return words, self.cfg.pc

    @property
    def result_words(self) -> int:
        return groups(self.classes, self.cfg.pc) * SUM_WORDS

    def logits(self, data: bytes) -> np.ndarray:
        """The global sums from the result words (hw.layout.sum_words)."""
        return sums_of_words(np.frombuffer(data, np.uint8), self.classes, self.cfg)

    def timeline(self, which: str = "estimate") -> tuple[dict[str, int], dict[str, int], int]:
        """(cycles per op, waits per op, total) from the cycle model (hw.timing.
        sequence_cycles), every transfer taking its ``fewest``, ``estimate`` or ``most``
        cycles (hw.timing.transfer_bounds). Waits are keyed by op name plus ``END`` (its wait
        for the last transfers)."""
        pick = {"fewest": 0, "estimate": 1, "most": 2}[which]
        timed = []
        for op in self.ops:
            cycles, store = op.timed(self.cfg, pick)
            timed.append((op.kind, cycles, op.fields.get("dma_wait", 0), store))
        counters, waits, total = {}, {"END": 0}, 0
        # Each segment is a run of its own: it starts with the DMA queue empty, and its END
        # waits for every transfer it queued. "END" sums the segments' END waits.
        for start, end in self.segment_ranges():
            per, cycles, end_wait = sequence_cycles(timed[start:end], DMA_QUEUE)
            for op, (c, w) in zip(self.ops[start:end], per):
                counters[op.name], waits[op.name] = c, w
            waits["END"] += end_wait
            total += cycles
        return counters, {**{op.name: waits[op.name] for op in self.ops}, "END": waits["END"]}, \
            total

    def expected_cycles(self) -> dict[str, int]:
        """Cycles per op from the cycle model, keyed by op name, plus ``total`` (transfers at
        the model's estimate: ``cycle_bounds`` gives the bounds)."""
        per, _, total = self.timeline()
        return {**per, "total": total}

    def busy_cycles(self, op: Op) -> int:
        """An op's counter less its wait, exact: a unit op's cycles (hw.timing.op_cycles), a
        transfer's entry into the queue (OP_OVERHEAD); a unit op's STORE enters the queue in
        its last cycle."""
        return OP_OVERHEAD if op.is_transfer else op.cycles(self.cfg)

    def cycle_bounds(self) -> dict[str, tuple[int, int]]:
        """(fewest, most) of the run's total cycles and of its waits for memory, every transfer
        at its fewest and at its most cycles: ``{"total": ..., "wait": ...}``."""
        lo, hi = self.timeline("fewest"), self.timeline("most")
        return {"total": (lo[2], hi[2]),
                "wait": (sum(lo[1].values()), sum(hi[1].values()))}

    def node_figures(self, counters: dict[str, int], waits: dict[str, int]) -> list[dict]:
        """Per network node (its ops summed): name, ops, cycles, compute (cycles less waits),
        wait and SDRAM bytes, from a run's counters (or the model's: ``timeline``)."""
        moved = self.sdram_bytes()
        out = []
        for node, indices in self.node_ops.items():
            names = [self.ops[i].name for i in indices]
            cycles = sum(counters[n] for n in names)
            wait = sum(waits[n] for n in names)
            out.append({"name": node, "ops": len(names), "cycles": cycles,
                        "compute": cycles - wait, "wait": wait,
                        "sdram_bytes": sum(moved.get(n, 0) for n in names)})
        return out

    def wait_cycles(self, waits: dict[str, int]) -> int:
        """A run's cycles spent waiting for the DMA queue (every op's and END's)."""
        return sum(waits.values())

    def sdram_bytes(self) -> dict[str, int]:
        """Bytes each op moves to or from the SDRAM, keyed by op name."""
        from hw.sdram_chip import MT48LC16M16A2
        out = {}
        for op in self.ops:
            if op.is_transfer or op.fields.get("then_store"):
                d = op.fields["dma"]
                target = d["target"] if op.kind == OpKind.LOAD else 0
                out[op.name] = (d["runs"] * d["run_words"] * sdram_unit_words(self.cfg, target)
                                * MT48LC16M16A2.dq_bits // 8)
        return out

    def ideal_cycles(self) -> float:
        """Multiply-accumulates / MAC units over the program's convolutions."""
        return sum(op.ideal_cycles(self.cfg) or 0 for op in self.ops)
