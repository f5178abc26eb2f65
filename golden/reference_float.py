"""Float reference of a network with Caffe semantics, in plain NumPy (float32).

This is the yardstick for accuracy, not for bits: the integer paths are judged by how little they
lose against it. It also supplies float activations for calibration.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .network import Bypass, Conv, Fire, GlobalAvgPool, MaxPool, Network, pool_output_size

__all__ = ["conv2d_float", "maxpool_float", "forward_float"]


def conv2d_float(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1,
                 pad: int | tuple[int, int] = 0, relu: bool = True) -> np.ndarray:
    """x (C, H, W), w (O, C, kh, kw), b (O,) -> (O, Ho, Wo); im2col + one matrix product.
    ``pad`` is one padding for rows and columns or (rows, columns)."""
    kh, kw = w.shape[-2:]
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]  # C,Ho,Wo,kh,kw
    ho, wo = win.shape[1:3]
    cols = win.transpose(0, 3, 4, 1, 2).reshape(-1, ho * wo)
    y = (w.reshape(w.shape[0], -1) @ cols).reshape(-1, ho, wo) + b[:, None, None]
    return np.maximum(y, 0) if relu else y


def maxpool_float(x: np.ndarray, kernel: int = 3, stride: int = 2) -> np.ndarray:
    """Ceil-mode max pooling: windows that run over the edge take the max of what is inside."""
    c, h, w = x.shape
    ho, wo = pool_output_size(h, kernel, stride), pool_output_size(w, kernel, stride)
    ph = (ho - 1) * stride + kernel - h
    pw = (wo - 1) * stride + kernel - w
    if ph > 0 or pw > 0:
        x = np.pad(x, ((0, 0), (0, max(ph, 0)), (0, max(pw, 0))), constant_values=-np.inf)
    # The max over the window as kernel**2 strided slices: NumPy's reduction over a window
    # view's last two axes is an order of magnitude slower at these sizes.
    out = None
    for i in range(kernel):
        for j in range(kernel):
            tap = x[:, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride]
            out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out


def forward_float(network: Network, weights: dict[str, tuple[np.ndarray, np.ndarray]],
                  x: np.ndarray, keep: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Run the network on one float input (C, H, W). Returns the logits (classes,), or with
    ``keep`` every tensor by name: node outputs, each convolution's output (``<conv name>``)
    and its pre-activation output (``<conv name>:pre``)."""
    t = forward_float_all(network, weights, [x], keep)[0]
    return t if keep else t[network.output_node].reshape(-1)


def forward_float_all(network: Network, weights: dict[str, tuple[np.ndarray, np.ndarray]],
                      xs: list[np.ndarray], keep: bool = False, before_conv=None
                      ) -> list[dict[str, np.ndarray]]:
    """``forward_float`` on several inputs in lockstep, node by node: one dict of tensors per
    input (node outputs; with ``keep`` each convolution's output and ``:pre`` too).
    ``before_conv(spec, inputs)``, if given, is called with every input's tensor a
    convolution reads before the convolution runs, and may replace ``weights[spec.name]``
    (the codebook refit fits each layer on inputs the refit layers before it computed)."""
    ts = [{"input": x.astype(np.float32)} for x in xs]

    def conv(spec, inps):
        if before_conv is not None:
            before_conv(spec, inps)
        w, b = weights[spec.name]
        dense = spec.dense(w)
        outs = []
        for t, inp in zip(ts, inps):
            pre = conv2d_float(inp, dense, b, spec.stride, (spec.ph, spec.pw), relu=False)
            out = np.maximum(pre, 0) if spec.relu else pre
            if keep:
                t[spec.name + ":pre"], t[spec.name] = pre, out
            outs.append(out)
        return outs

    for i, node in enumerate(network.nodes):
        src = [[t[s] for t in ts] for s in network.node_inputs(i)]
        if isinstance(node, Conv):
            outs = conv(node.convs()[0], src[0])
        elif isinstance(node, Fire):
            sq, c1, c3 = node.convs()
            s = conv(sq, src[0])
            outs = [np.concatenate(pair) for pair in zip(conv(c1, s), conv(c3, s))]
        elif isinstance(node, MaxPool):
            outs = [maxpool_float(x, node.kernel, node.stride) for x in src[0]]
        elif isinstance(node, Bypass):
            other = src[1]
            if node.complex:
                other = conv(node.convs()[0], other)
            outs = [np.maximum(a + b, 0) for a, b in zip(src[0], other)]
        elif isinstance(node, GlobalAvgPool):
            outs = [x.mean(axis=(1, 2), keepdims=True) for x in src[0]]
        else:  # pragma: no cover - the Network type admits no other node
            raise TypeError(node)
        for t, out in zip(ts, outs):
            t[node.name] = out
    return ts
