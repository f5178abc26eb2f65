"""The sparse entry code of Deep Compression: the one encoder and decoder of the project.

A layer's weight indices, flattened in some order, are stored as *entries*: every non-zero
index (its *code*) with the number of zero positions skipped before it (its *gap*, at most
``2**GAP_BITS - 1``). A run of zeros longer than the gap field holds is bridged by *filler*
entries of code 0 placed ``2**GAP_BITS`` positions on. Entry i sits at position
``p(i) = p(i-1) + gap(i) + 1`` with ``p(-1) = -1``.

The authors' ``.net`` file, the project's ``.sqz`` file (golden/formats) and the device's
weight stream (hw/layout.py, in the engine's weight order) all use it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAP_BITS", "MAX_GAP", "encode", "positions", "decode"]

GAP_BITS = 4
MAX_GAP = (1 << GAP_BITS) - 1


def encode(flat: np.ndarray, gap_bits: int = GAP_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(codes, gaps) of a flat index array: its non-zero entries with fillers in between."""
    span = 1 << gap_bits
    flat = np.asarray(flat).ravel()
    nz = np.flatnonzero(flat)
    prev = np.concatenate([[-1], nz[:-1]])
    run = nz - prev - 1                            # zeros before each non-zero entry
    fillers = run // span                          # filler entries needed before it
    total = len(nz) + int(fillers.sum())
    codes = np.zeros(total, np.uint16)
    gaps = np.full(total, span - 1, np.uint8)
    at = np.arange(len(nz)) + np.cumsum(fillers)   # where each real entry lands
    codes[at] = flat[nz]
    gaps[at] = run - fillers * span
    return codes, gaps


def positions(gaps: np.ndarray, start: int = 0) -> np.ndarray:
    """Where each entry lands, the first entry's gap counted from ``start``."""
    return start + np.cumsum(np.asarray(gaps, np.int64) + 1) - 1


def decode(codes: np.ndarray, gaps: np.ndarray, size: int, where: str = "entries") -> np.ndarray:
    """The dense flat array of ``size`` indices the entries describe (unnamed positions 0).
    Entries that run past ``size`` are an error naming ``where``."""
    pos = positions(gaps)
    if len(pos) and pos[-1] >= size:
        raise ValueError(f"{where}: an entry lands at position {int(pos[-1])} of {size}; the "
                         "data is corrupt")
    flat = np.zeros(size, np.asarray(codes).dtype if len(codes) else np.uint8)
    flat[pos] = codes
    return flat
