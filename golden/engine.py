"""Run a quantized network with either integer implementation: the fast golden kernels or the
plain reference. Both walk the same network description, unit by unit, as the hardware does."""

from __future__ import annotations

import numpy as np

from . import kernels, reference_int
from .network import Bypass, Conv, Fire, GlobalAvgPool, MaxPool
from .quantize import QuantizedModel

__all__ = ["Golden", "run_reference", "top_k"]


def _walk(q: QuantizedModel, pixels, conv, expand, ops, keep: bool, batch: bool = False):
    """conv(x, name) runs one convolution unit; expand(squeezed, (e1, e3)) both expand paths
    of a Fire module, concatenated on the channel axis (1x1 first); ops: pool, add, sum.
    ``batch``: ``pixels`` and every tensor carry a leading batch axis (golden.batched)."""
    net = q.network
    spec = net.input
    if batch:
        pass                     # golden.batched checks its batch itself
    elif pixels.shape != (spec.channels, spec.height, spec.width) or pixels.dtype != np.uint8:
        raise ValueError(f"{net.name} takes uint8 pixels of shape "
                         f"{(spec.channels, spec.height, spec.width)}, got {pixels.dtype} "
                         f"{pixels.shape}; prepare images with golden.preprocess.load_image")
    t = {"input": pixels}
    for i, node in enumerate(net.nodes):
        src = [t[s] for s in net.node_inputs(i)]
        if isinstance(node, Conv):
            t[node.name] = conv(src[0], node.name)
        elif isinstance(node, Fire):
            # One Fire unit: the squeeze output feeds both expand paths, whose outputs share a
            # scale and are concatenated on the channel axis (1x1 first).
            sq, e1, e3 = node.convs()
            squeezed = conv(src[0], sq.name)
            if keep:
                t[sq.name] = squeezed
            t[node.name] = expand(squeezed, (e1.name, e3.name))
        elif isinstance(node, MaxPool):
            t[node.name] = ops.maxpool(src[0], node.kernel, node.stride)
        elif isinstance(node, Bypass):
            other = conv(src[1], node.convs()[0].name) if node.complex else src[1]
            t[node.name] = ops.bypass_add(src[0], other, q.adds[node.name])
        elif isinstance(node, GlobalAvgPool):
            t[node.name] = ops.global_sum(src[0])
    return t if keep else t[net.output_node]


class Golden:
    """The golden model: ``Golden(q)(pixels)`` -> uint32 logits (global-average-pool sums)."""

    def __init__(self, q: QuantizedModel):
        self.q = q
        self.prepared = {n: kernels.PreparedConv(c) for n, c in q.convs.items()}

    def _conv(self, x, name):
        return self.prepared[name].run(x)

    def _expand(self, squeezed, names):
        # Both expand paths write straight into their halves of the concatenated output.
        e1, e3 = (self.prepared[n] for n in names)
        o1, (_, h, w) = e1.qc.spec.out_channels, squeezed.shape    # both keep H x W
        out = np.empty((o1 + e3.qc.spec.out_channels, h, w), np.uint8)
        e1.run(squeezed, out[:o1])
        e3.run(squeezed, out[o1:])
        return out

    def __call__(self, pixels: np.ndarray, keep: bool = False):
        return _walk(self.q, pixels, self._conv, self._expand, kernels, keep)


def run_reference(q: QuantizedModel, pixels: np.ndarray, keep: bool = False):
    """The same network through golden/reference_int.py (plain int64 NumPy)."""
    def conv(x, name):
        return reference_int.conv(x, q.convs[name])

    def expand(x, names):
        return np.concatenate([conv(x, n) for n in names])

    return _walk(q, pixels, conv, expand, reference_int, keep)


def top_k(logits: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the k largest logits; ties go to the lower class index (stable). Integer
    logits (uint32 sums) and float logits alike: float64 holds both exactly."""
    return np.argsort(-np.asarray(logits, dtype=np.float64), kind="stable")[:k]
