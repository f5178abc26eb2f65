"""The golden arithmetic on a batch of photos at once, for scoring thousands of them.

``BatchedGolden(q)(pixels)`` gives, for (N, C, H, W) uint8 photos, the (N, classes) uint32
logits that ``golden.engine.Golden`` gives photo by photo: the same network walk
(golden.engine._walk) with every unit computed on the whole batch through PyTorch (the
optional ``train`` extra). Convolutions run in float64, whose sums of integer products stay
exact up to 2**53 (an accumulator is below 2**31); requantisation, the bypass add and the sums
are int64 exactly as golden/reference_int.py writes them. ``check`` compares it with the
golden model on some photos, and the evaluation tools call it before they trust its scores.
"""

from __future__ import annotations

import numpy as np

from . import numerics as nx
from .engine import Golden, _walk
from .quantize import QuantizedModel

__all__ = ["BatchedGolden"]


class _Ops:
    """golden/reference_int.py's pooling, add and sum units on (N, C, H, W) int64 tensors."""

    def __init__(self, torch):
        self.torch = torch

    def maxpool(self, x, kernel: int, stride: int):
        # Ceil mode without padding: torch drops a last window starting past the edge, as
        # Caffe does (golden.network.pool_output_size); values up to 255 are exact floats.
        f = self.torch.nn.functional.max_pool2d(x.double(), kernel, stride, ceil_mode=True)
        return f.long()

    def bypass_add(self, a, b, qa):
        y = (a * qa.mult_a + b * qa.mult_b + (1 << (qa.shift - 1))) >> qa.shift
        return y.clamp(0, nx.ACT_MAX)

    def global_sum(self, x):
        return x.sum(dim=(2, 3))


class BatchedGolden:
    def __init__(self, q: QuantizedModel):
        from .torch_net import require_torch
        torch = self.torch = require_torch()
        self.q = q
        self.ops = _Ops(torch)
        self.params = {}
        for name, qc in q.convs.items():
            w = torch.tensor(qc.weights.astype(np.float64))
            b = torch.tensor(qc.bias.astype(np.int64))
            self.params[name] = (qc, w, b)

    def _conv(self, x, name):
        qc, w, b = self.params[name]
        s = qc.spec
        acc = self.torch.nn.functional.conv2d(x.double(), w, None, s.stride, (s.ph, s.pw))
        acc = acc.round().long() + b.reshape(1, -1, 1, 1)
        if not s.relu:
            return acc
        y = (acc * qc.mult + (1 << (qc.shift - 1))) >> qc.shift
        return y.clamp(0, nx.ACT_MAX)

    def _expand(self, squeezed, names):
        return self.torch.cat([self._conv(squeezed, n) for n in names], 1)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        spec = self.q.network.input
        if pixels.ndim != 4 or pixels.shape[1:] != (spec.channels, spec.height, spec.width) \
                or pixels.dtype != np.uint8:
            raise ValueError(f"{self.q.network.name} takes a batch of uint8 pixels of shape "
                             f"(N, {spec.channels}, {spec.height}, {spec.width}), got "
                             f"{pixels.dtype} {pixels.shape}")
        with self.torch.no_grad():
            x = self.torch.tensor(pixels.astype(np.int64))
            out = _walk(self.q, x, self._conv, self._expand, self.ops, False, batch=True)
        return out.numpy().astype(np.uint32)

    def check(self, pixels: np.ndarray) -> None:
        """Every logit of these photos equal to the golden model's, or an AssertionError that
        names the photo and the class."""
        got = self(pixels)
        golden = Golden(self.q)
        for i, x in enumerate(pixels):
            want = golden(x)
            if not np.array_equal(got[i], want):
                c = int(np.flatnonzero(got[i] != want)[0])
                raise AssertionError(f"batched golden differs from golden on photo {i}, class "
                                     f"{c}: {got[i, c]} against {want[c]}")
