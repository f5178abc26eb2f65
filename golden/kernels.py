"""Fast golden kernels: Numba for the element work, float32 BLAS for the dot products, bit-exact.

Why float32 matrix products give exact integer results: every operand is an integer and the
products and all partial sums of a dot product stay within +-2**24, where float32 represents
every integer exactly, so no operation rounds, in whatever order the library sums. Before a
layer runs, ``PreparedConv`` proves that bound per output channel (255 * sum|w| <= 2**24) and,
where it fails, splits the integer weights into a high and a low part (w = hi * 2**s + lo), each
within the bound; the parts' exact sums are recombined in int64. The bias and requantisation are
done in integers afterwards, exactly as docs/NUMERICS.md states them, so the result equals the
plain reference (golden/reference_int.py) bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import numerics as nx

__all__ = ["PreparedConv", "maxpool", "bypass_add", "global_sum", "warm_up"]


def im2col_f32(x: np.ndarray, k: int, stride: int, pad: int, ho: int, wo: int) -> np.ndarray:
    """(C, H, W) uint8 -> (C*k*k, ho*wo) float32, rows in (c, i, j) order, zeros outside:
    one strided slice copy per kernel tap (measured faster here than a Numba gather loop)."""
    c = x.shape[0]
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((c, k, k, ho, wo), np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
    return cols.reshape(c * k * k, ho * wo)


@njit(cache=True)
def combine_requant(parts, factors, bias, mult, shift, out):
    """acc = sum_i int(parts[i]) * factors[i] + bias; out = clamp((acc*M + 2**(S-1)) >> S)."""
    n, o_ch, p = parts.shape
    half = np.int64(1) << (shift - 1)
    acc = np.empty(p, np.int64)
    for o in range(o_ch):
        for q in range(p):
            acc[q] = np.int64(parts[0, o, q]) * factors[0] + bias[o]
        for i in range(1, n):
            f = factors[i]
            for q in range(p):
                acc[q] += np.int64(parts[i, o, q]) * f
        for q in range(p):
            out[o, q] = min(max((acc[q] * mult + half) >> shift, 0), 255)


@njit(cache=True)
def combine_acc(parts, factors, bias, out):
    """acc = sum_i int(parts[i]) * factors[i] + bias, kept as int32 (convolution without ReLU)."""
    n, o_ch, p = parts.shape
    for o in range(o_ch):
        for q in range(p):
            acc = np.int64(bias[o])
            for i in range(n):
                acc += np.int64(parts[i, o, q]) * factors[i]
            out[o, q] = acc


@njit(cache=True)
def add_requant(a, b, mult_a, mult_b, shift):
    out = np.empty(a.shape, np.uint8)
    fa, fb, ob = a.ravel(), b.ravel(), out.reshape(-1)
    half = np.int64(1) << (shift - 1)
    for i in range(fa.size):
        y = (np.int64(fa[i]) * mult_a + np.int64(fb[i]) * mult_b + half) >> shift
        ob[i] = min(max(y, 0), 255)
    return out


def _split_exact(w: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Integer weight matrix -> [(part, factor)] with sum(part * factor) == w and every part
    within the float32-exact bound: 255 * sum_k |part[o, k]| <= 2**24 for every row o."""
    bound = nx.ACT_MAX * np.abs(w.astype(np.int64)).sum(axis=1).max(initial=0)
    if bound <= nx.FLOAT32_EXACT:
        return [(w, 1)]
    bits = int(np.abs(w).max()).bit_length()
    s = max(1, bits // 2)
    lo = np.bitwise_and(w, (1 << s) - 1)       # in [0, 2**s)
    hi = (w - lo) >> s                          # exact: w - lo is a multiple of 2**s
    if s == 1 and not np.any(hi):               # cannot split further; never reached for K<=2**14
        raise OverflowError("weights too large for exact float32 products")
    return ([(p, f << s) for p, f in _split_exact(hi)] + _split_exact(lo))


class PreparedConv:
    """A quantized convolution laid out for the fast path: float32 weight parts, int64 factors."""

    def __init__(self, qc):
        self.qc = qc
        spec = qc.spec
        w = qc.weights.reshape(spec.out_channels, -1)
        parts = _split_exact(w)
        self.weight_parts = [np.ascontiguousarray(p, dtype=np.float32) for p, _ in parts]
        self.factors = np.array([f for _, f in parts], np.int64)
        self.bias = qc.bias.astype(np.int64)

    def accumulate_parts(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        spec = self.qc.spec
        c, h, w = x.shape
        ho = (h + 2 * spec.pad - spec.kernel) // spec.stride + 1
        wo = (w + 2 * spec.pad - spec.kernel) // spec.stride + 1
        if spec.kernel == 1 and spec.stride == 1 and spec.pad == 0:
            cols = x.reshape(c, h * w).astype(np.float32)
        else:
            cols = im2col_f32(x, spec.kernel, spec.stride, spec.pad, ho, wo)
        parts = np.empty((len(self.weight_parts), spec.out_channels, ho * wo), np.float32)
        for i, wp in enumerate(self.weight_parts):
            np.matmul(wp, cols, out=parts[i])
        return parts, ho, wo

    def __call__(self, x: np.ndarray) -> np.ndarray:
        parts, ho, wo = self.accumulate_parts(x)
        o = self.qc.spec.out_channels
        if not self.qc.spec.relu:
            out = np.empty((o, ho * wo), np.int32)
            combine_acc(parts, self.factors, self.bias, out)
        else:
            out = np.empty((o, ho * wo), np.uint8)
            combine_requant(parts, self.factors, self.bias, self.qc.mult, self.qc.shift, out)
        return out.reshape(o, ho, wo)


def maxpool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Ceil-mode max pool as the max of kernel*kernel strided views. Windows that run past the
    edge see zero padding, which is exact: activations are unsigned, so 0 never wins a max
    that a real value could."""
    from .network import pool_output_size
    c, h, w = x.shape
    ho, wo = pool_output_size(h, kernel, stride), pool_output_size(w, kernel, stride)
    hp, wp = (ho - 1) * stride + kernel, (wo - 1) * stride + kernel
    if hp > h or wp > w:
        padded = np.zeros((c, max(hp, h), max(wp, w)), np.uint8)
        padded[:, :h, :w] = x
        x = padded
    out = x[:, :stride * (ho - 1) + 1:stride, :stride * (wo - 1) + 1:stride].copy()
    for i in range(kernel):
        for j in range(kernel):
            if i or j:
                np.maximum(out, x[:, i:i + stride * (ho - 1) + 1:stride,
                                  j:j + stride * (wo - 1) + 1:stride], out=out)
    return out


def bypass_add(a: np.ndarray, b: np.ndarray, qa) -> np.ndarray:
    return add_requant(np.ascontiguousarray(a), np.ascontiguousarray(b), qa.mult_a, qa.mult_b,
                       qa.shift)


def global_sum(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).sum(axis=1, dtype=np.uint64).astype(np.uint32)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel once, on tiny inputs."""
    x = np.zeros((1, 4, 4), np.uint8)
    parts = np.zeros((1, 1, 4), np.float32)
    combine_requant(parts, np.ones(1, np.int64), np.zeros(1, np.int64), 1, 1,
                    np.empty((1, 4), np.uint8))
    combine_acc(parts, np.ones(1, np.int64), np.zeros(1, np.int64), np.empty((1, 4), np.int32))
    add_requant(x, x, 1, 1, 1)
    add_requant(x, x.astype(np.int32), 1, 1, 1)
