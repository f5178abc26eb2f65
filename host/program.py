"""What a compiled network is: the device program (ops, op words, the parameters and where
they go) that host/compiler.py and host/sdram_plan.py produce and the driver uploads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.config import AcceleratorConfig
from hw.layout import (SUM_WORDS, LayerDescriptor, OpKind, feature_words, groups,
                       sdram_unit_words, sums_of_words)
from hw.timing import END_CYCLES, ideal_cycles, op_cycles, transfer_bounds, transfer_cycles

__all__ = ["DeviceProgram", "Op", "WeightStream", "UnsupportedNetworkError"]


class UnsupportedNetworkError(ValueError):
    """A network the device cannot run (named node, reason, what to do)."""


@dataclass
class Op:
    name: str
    kind: OpKind
    fields: dict                     # op_layout fields; "conv" the descriptor's
    desc: LayerDescriptor | None     # the engine's descriptor (pooling ops: their frame sizes)

    def cycles(self, cfg: AcceleratorConfig) -> int:
        if self.kind in (OpKind.LOAD, OpKind.STORE):
            return transfer_cycles(cfg, self.kind, self.fields["dma"]["target"],
                                   self.fields["dma"])
        return op_cycles(self.kind, cfg, self.desc, self.fields.get("in_words", 0),
                         self.fields.get("out_words", 0))

    @property
    def is_transfer(self) -> bool:
        return self.kind in (OpKind.LOAD, OpKind.STORE)

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

    def input_words(self, pixels: np.ndarray) -> bytes:
        """The image in feature-memory word order: PC bytes per word."""
        if pixels.shape != self.input_shape or pixels.dtype != np.uint8:
            raise ValueError(f"the program takes uint8 pixels of shape {self.input_shape}, got "
                             f"{pixels.dtype} {pixels.shape}")
        return feature_words(pixels, self.cfg).tobytes()

    def input_bytes(self, pixels: np.ndarray) -> tuple[bytes, int]:
        """(data, bytes a word) of the image on the link: with fewer channels than lanes,
        each pixel's channels alone (a packed FEATURE write: the device pads the lanes);
        otherwise whole feature words. An image for the SDRAM goes as whole feature words."""
        words = self.input_words(pixels)          # checks the shape and type
        c = self.input_shape[0]
        if c < self.cfg.pc and self.input_sdram is None:
            return np.frombuffer(words, np.uint8).reshape(-1, self.cfg.pc)[:, :c].tobytes(), c
        return words, self.cfg.pc

    @property
    def result_words(self) -> int:
        return groups(self.classes, self.cfg.pc) * SUM_WORDS

    def logits(self, data: bytes) -> np.ndarray:
        """The global sums from the result words (hw.layout.sum_words)."""
        return sums_of_words(np.frombuffer(data, np.uint8), self.classes, self.cfg)

    def expected_cycles(self) -> dict[str, int]:
        """Cycles per op from the cycle model, keyed by op name, plus ``total`` (a LOAD's or
        STORE's are the model's estimate: hw.timing.transfer_bounds gives its bound)."""
        per = {op.name: op.cycles(self.cfg) for op in self.ops}
        return {**per, "total": sum(per.values()) + END_CYCLES}

    def cycle_bounds(self) -> dict[str, tuple[int, int]]:
        """(fewest, most) cycles per op, keyed by op name: the model's exact count for an op
        of the chip's own units, hw.timing.transfer_bounds for a LOAD or STORE; plus
        ``total``."""
        out = {}
        for op in self.ops:
            if op.is_transfer:
                d = op.fields["dma"]
                lo, _, hi = transfer_bounds(self.cfg, op.kind, d["target"], d)
            else:
                lo = hi = op.cycles(self.cfg)
            out[op.name] = (lo, hi)
        out["total"] = (sum(lo for lo, _ in out.values()) + END_CYCLES,
                        sum(hi for _, hi in out.values()) + END_CYCLES)
        return out

    def wait_cycles(self, counters: dict[str, int]) -> int:
        """Cycles of a run's LOADs and STOREs: the sequencer runs one op at a time, so the
        engine waits through every one."""
        return sum(counters[op.name] for op in self.ops if op.is_transfer)

    def sdram_bytes(self) -> dict[str, int]:
        """Bytes each op moves to or from the SDRAM, keyed by op name."""
        from hw.sdram_chip import MT48LC16M16A2
        out = {}
        for op in self.ops:
            if op.is_transfer:
                d = op.fields["dma"]
                target = d["target"] if op.kind == OpKind.LOAD else 0
                out[op.name] = (d["runs"] * d["run_words"] * sdram_unit_words(self.cfg, target)
                                * MT48LC16M16A2.dq_bits // 8)
        return out

    def ideal_cycles(self) -> float:
        """Multiply-accumulates / MAC units over the program's convolutions."""
        return sum(op.ideal_cycles(self.cfg) or 0 for op in self.ops)
