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
from numpy.lib.stride_tricks import as_strided

from . import numerics as nx

__all__ = ["PreparedConv", "maxpool", "bypass_add", "global_sum", "warm_up"]


def _phases(x: np.ndarray, kh: int, kw: int, stride: int, ph: int, pw: int):
    """The image laid out so that every kernel tap is one contiguous run (see _tap_rows).

    Split the zero-padded image into stride x stride phases (phase (a, b) holds the padded
    pixels (a + stride*r, b + stride*q)), each flattened with a row pitch ``pitch``. Tap (i, j)
    at output (oy, ox) then reads phase (i % s, j % s) at flat position
    (oy + i//s) * pitch + ox + j//s: for a band of output rows, one contiguous run. The product
    is computed on a grid of ``ho x pitch`` positions of which the first ``wo`` of each row are
    the output (the rest, a few columns per row, are discarded).
    Returns (phases (C, s, s, length) float32, ho, wo, pitch)."""
    c, h, w = x.shape
    s = stride
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - kh) // s + 1, (wp - kw) // s + 1
    hq, pitch = -(-hp // s), -(-wp // s)
    # furthest tap offset, in phase pixels
    length = max(hq * pitch, (kh - 1) // s * pitch + (kw - 1) // s + ho * pitch)
    phases = np.zeros((c, s, s, length), np.float32)
    grid = phases[..., :hq * pitch].reshape(c, s, s, hq, pitch)
    for a in range(s):
        for b in range(s):
            # phase row r holds padded row a + s*r, which is image row a + s*r - ph
            r0, q0 = -(-(ph - a) // s) if ph > a else 0, -(-(pw - b) // s) if pw > b else 0
            ys = np.arange(r0, hq) * s + a - ph
            xs = np.arange(q0, pitch) * s + b - pw
            ny, nx_ = int(np.sum(ys < h)), int(np.sum(xs < w))
            if ny > 0 and nx_ > 0:
                grid[:, a, b, r0:r0 + ny, q0:q0 + nx_] = \
                    x[:, ys[0]:ys[0] + s * (ny - 1) + 1:s, xs[0]:xs[0] + s * (nx_ - 1) + 1:s]
    return phases, ho, wo, pitch


def _tap_rows(phases: np.ndarray, kh: int, kw: int, pitch: int, ho: int,
              cols: np.ndarray) -> np.ndarray:
    """Column matrix rows (c, i, j) for all ``ho`` output rows: contiguous copies out of the
    phases. ``cols`` is a scratch buffer of at least C*kh*kw * ho*pitch values; returns the
    (C*kh*kw, ho*pitch) view. (Bands of rows sized to stay in cache were measured no faster.)"""
    c, s = phases.shape[0], phases.shape[1]
    span = ho * pitch
    out = cols[:c * kh * kw * span].reshape(c, kh, kw, span)
    if s == 1:                                      # one strided view covers every tap
        item = phases.itemsize
        out[...] = as_strided(phases, shape=(c, kh, kw, span),
                              strides=(phases.strides[0], pitch * item, item, item))
    else:
        for i in range(kh):
            for j in range(kw):
                start = (i // s) * pitch + j // s
                out[:, i, j] = phases[:, i % s, j % s, start:start + span]
    return out.reshape(c * kh * kw, span)


@njit(cache=True)
def combine_requant(parts, factors, bias, mult, shift, out):
    """acc = sum_i int(parts[i]) * factors[i] + bias; out = clamp((acc*M + 2**(S-1)) >> S).
    parts (n, O, ho, pitch) holds the products on the column grid; out (O, ho, wo) takes the
    first wo of each row. A single part has factor 1 (see _split_exact)."""
    n = parts.shape[0]
    o_ch, ho, wo = out.shape
    half = np.int64(1) << (shift - 1)
    for o in range(o_ch):
        b = bias[o] * mult + half                   # bias folded into the rounding constant
        for y in range(ho):
            row = out[o, y]
            if n == 1:                              # the common case, kept vectorisable
                src = parts[0, o, y]
                for q in range(wo):
                    row[q] = min(max((np.int64(src[q]) * mult + b) >> shift, 0), 255)
            else:
                for q in range(wo):
                    acc = np.int64(0)
                    for i in range(n):
                        acc += np.int64(parts[i, o, y, q]) * factors[i]
                    row[q] = min(max((acc * mult + b) >> shift, 0), 255)


@njit(cache=True)
def combine_acc(parts, factors, bias, out):
    """acc = sum_i int(parts[i]) * factors[i] + bias, kept as int32 (convolution without ReLU);
    shapes as combine_requant."""
    n = parts.shape[0]
    o_ch, ho, wo = out.shape
    for o in range(o_ch):
        for y in range(ho):
            for q in range(wo):
                acc = np.int64(bias[o])
                for i in range(n):
                    acc += np.int64(parts[i, o, y, q]) * factors[i]
                out[o, y, q] = acc


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
        self._buffers: dict = {}     # scratch reused across calls (so a PreparedConv is not
                                     # thread-safe): saves the page faults of fresh buffers

    def _scratch(self, key, shape) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape:
            buf = self._buffers[key] = np.empty(shape, np.float32)
        return buf

    def run(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x: (C, H, W) uint8. Returns uint8 activations, or the int32 accumulator for a
        convolution without ReLU; ``out`` (C-contiguous, the output shape) receives the result
        in place, e.g. one half of a Fire module's concatenated output."""
        spec = self.qc.spec
        c, h, w = x.shape
        o, n = spec.out_channels, len(self.weight_parts)
        if spec.kh == spec.kw == 1 and spec.stride == 1 and spec.ph == spec.pw == 0:
            cols, ho, wo, pitch = x.reshape(c, h * w).astype(np.float32), h, w, w
        else:
            phases, ho, wo, pitch = _phases(x, spec.kh, spec.kw, spec.stride, spec.ph, spec.pw)
            kdim = c * spec.kh * spec.kw
            cols = _tap_rows(phases, spec.kh, spec.kw, pitch, ho,
                             self._scratch("cols", (kdim * ho * pitch,)))
        prod = self._scratch("parts", (n, o, ho * pitch))
        for i, wp in enumerate(self.weight_parts):
            np.matmul(wp, cols, out=prod[i])
        prod = prod.reshape(n, o, ho, pitch)
        if out is None:
            out = np.empty((o, ho, wo), np.uint8 if spec.relu else np.int32)
        if spec.relu:
            combine_requant(prod, self.factors, self.bias, self.qc.mult, self.qc.shift, out)
        else:
            combine_acc(prod, self.factors, self.bias, out)
        return out

    __call__ = run


def maxpool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Ceil-mode max pool, separably: the max over the window's rows (whole contiguous rows),
    then over its columns. Windows that run past the edge see zero padding, which is exact:
    activations are unsigned, so 0 never wins a max that a real value could."""
    from .network import pool_output_size
    c, h, w = x.shape
    ho, wo = pool_output_size(h, kernel, stride), pool_output_size(w, kernel, stride)
    hp, wp = (ho - 1) * stride + kernel, (wo - 1) * stride + kernel
    if hp > h or wp > w:
        padded = np.zeros((c, max(hp, h), max(wp, w)), x.dtype)
        padded[:, :h, :w] = x
        x = padded
    rows = x[:, :stride * (ho - 1) + 1:stride].copy()
    for i in range(1, kernel):
        np.maximum(rows, x[:, i:i + stride * (ho - 1) + 1:stride], out=rows)
    out = rows[:, :, :stride * (wo - 1) + 1:stride].copy()
    for j in range(1, kernel):
        np.maximum(out, rows[:, :, j:j + stride * (wo - 1) + 1:stride], out=out)
    return out


def bypass_add(a: np.ndarray, b: np.ndarray, qa) -> np.ndarray:
    return add_requant(np.ascontiguousarray(a), np.ascontiguousarray(b), qa.mult_a, qa.mult_b,
                       qa.shift)


def global_sum(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).sum(axis=1, dtype=np.uint64).astype(np.uint32)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel once, on tiny inputs."""
    x = np.zeros((1, 4, 4), np.uint8)
    parts = np.zeros((1, 1, 2, 4), np.float32)
    combine_requant(parts, np.ones(1, np.int64), np.zeros(1, np.int64), 1, 1,
                    np.empty((1, 2, 3), np.uint8))
    combine_acc(parts, np.ones(1, np.int64), np.zeros(1, np.int64), np.empty((1, 2, 3), np.int32))
    add_requant(x, x, 1, 1, 1)
    add_requant(x, x.astype(np.int32), 1, 1, 1)
