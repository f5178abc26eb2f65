"""The integer contract written plainly in NumPy int64: slow, obviously correct, independent.

Each function is one hardware unit of docs/NUMERICS.md. The fast kernels (golden/kernels.py)
must equal these bit for bit; tests hold them against each other on random and real layers.
"""

from __future__ import annotations

import numpy as np

from . import numerics as nx
from .network import pool_output_size

__all__ = ["conv_accumulate", "requantize", "conv", "maxpool", "bypass_add",
           "global_sum"]


def conv_accumulate(x: np.ndarray, weights: np.ndarray, bias: np.ndarray, stride: int,
                    pad: int | tuple[int, int]) -> np.ndarray:
    """acc[o, y, x] = bias[o] + sum over (c, i, j) of w[o, c, i, j] * in[c, y*s + i - ph, x*s + j - pw],
    with out-of-range inputs zero (``pad`` one value or (ph, pw); w (O, C, kh, kw), dense).
    One kernel tap at a time, summed in int64."""
    o_ch, c_in, kh, kw = weights.shape
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    c, h, w = x.shape
    assert c == c_in, (c, c_in)
    xp = np.zeros((c, h + 2 * ph, w + 2 * pw), np.int64)
    xp[:, ph:ph + h, pw:pw + w] = x
    ho = (h + 2 * ph - kh) // stride + 1
    wo = (w + 2 * pw - kw) // stride + 1
    acc = np.zeros((o_ch, ho, wo), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            acc += np.einsum("oc,chw->ohw", weights[:, :, i, j].astype(np.int64), patch)
    acc += bias.astype(np.int64)[:, None, None]
    if acc.size and (acc.min() < nx.ACC_MIN or acc.max() > nx.ACC_MAX):
        raise OverflowError(f"accumulator left the {nx.ACC_BITS}-bit range: "
                            f"[{acc.min()}, {acc.max()}]")
    return acc


def requantize(acc: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """clamp((acc * M + 2**(S-1)) >> S, 0, 255): round half up, ReLU as the lower clamp."""
    y = (acc.astype(np.int64) * mult + (1 << (shift - 1))) >> shift
    return np.clip(y, 0, nx.ACT_MAX).astype(np.uint8)


def conv(x: np.ndarray, qc) -> np.ndarray:
    """A convolution unit: uint8 out after requant+ReLU, or the raw accumulator if no ReLU."""
    acc = conv_accumulate(x, qc.weights, qc.bias, qc.spec.stride, (qc.spec.ph, qc.spec.pw))
    if not qc.spec.relu:
        return acc.astype(np.int32)
    return requantize(acc, qc.mult, qc.shift)


def maxpool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Ceil-mode max pool: a window cut by the edge takes the max of what it covers."""
    c, h, w = x.shape
    ho, wo = pool_output_size(h, kernel, stride), pool_output_size(w, kernel, stride)
    out = np.zeros((c, ho, wo), np.uint8)
    for y in range(ho):
        for xx in range(wo):
            win = x[:, y * stride:min(y * stride + kernel, h), xx * stride:min(xx * stride + kernel, w)]
            out[:, y, xx] = win.max(axis=(1, 2))
    return out


def bypass_add(a: np.ndarray, b: np.ndarray, qa) -> np.ndarray:
    """clamp((a * Ma + b * Mb + 2**(S-1)) >> S, 0, 255), b uint8 or an int32 accumulator."""
    y = (a.astype(np.int64) * qa.mult_a + b.astype(np.int64) * qa.mult_b
         + (1 << (qa.shift - 1))) >> qa.shift
    return np.clip(y, 0, nx.ACT_MAX).astype(np.uint8)


def global_sum(x: np.ndarray) -> np.ndarray:
    """Global average pool as the exact sum over the window, uint32 per channel."""
    return x.astype(np.uint64).sum(axis=(1, 2)).astype(np.uint32)
