"""Seeded layer cases shared by the pytest unit tests and the cocotb benches."""

from __future__ import annotations

import numpy as np

from golden.network import ConvSpec
from golden.quantize import QConv

__all__ = ["random_conv", "random_case"]


def random_conv(rng, cin, cout, k, stride, pad, value_bits, index_bits, relu=True,
                weights="random", name="t", kernel_w=0, pad_w=-1) -> QConv:
    """A quantised convolution with random codebook, indices (random sparsity), bias and
    requantisation. ``weights``: "random", "extreme" (only the most negative and most positive
    values) or "zero" (all-zero kernels). ``kernel_w``/``pad_w`` as ConvSpec's."""
    spec = ConvSpec(name, cin, cout, k, stride, pad, relu, kernel_w, pad_w)
    limit = (1 << (value_bits - 1)) - 1
    entries = 1 << index_bits
    cb = rng.integers(-limit, limit + 1, entries).astype(np.int32)
    cb[0] = 0
    if weights == "extreme":
        cb[1], cb[2] = -limit, limit
        idx = rng.integers(1, 3, spec.weight_shape)
    elif weights == "zero":
        idx = np.zeros(spec.weight_shape, np.int64)
    else:
        idx = rng.integers(0, entries, spec.weight_shape)
        idx[rng.random(spec.weight_shape) < rng.random()] = 0
    bias = rng.integers(-(1 << 20), 1 << 20, cout).astype(np.int32)
    mult = int(rng.integers(1 << 15, 1 << 16))
    shift = int(rng.integers(8, 30))
    return QConv(spec, index_bits, value_bits, cb, idx.astype(np.uint8), bias, mult, shift)


def random_case(rng, value_bits: int, max_channels: int = 40, max_size: int = 12):
    """A random layer configuration and input: channels, size, kernel/stride/padding, index
    width, sparsity, and now and then an edge (all-zero or all-255 input, extreme weights)."""
    # (rows, columns, stride, row padding, column padding): square kernels, SqueezeNext's
    # separable pair, the CIFAR-10 variants' 2x2 first layers.
    kinds = [(1, 1, 1, 0, 0), (3, 3, 1, 1, 1), (3, 3, 2, 0, 0), (7, 7, 2, 0, 0), (1, 1, 1, 1, 1),
             (3, 3, 2, 1, 1), (3, 1, 1, 1, 0), (1, 3, 1, 0, 1), (2, 2, 1, 1, 1), (2, 2, 2, 0, 0),
             (1, 5, 2, 1, 2)]
    k, kw, stride, pad, pw = kinds[int(rng.integers(0, len(kinds)))]
    cin, cout = int(rng.integers(1, max_channels)), int(rng.integers(1, max_channels))
    h = int(rng.integers(max(k - 2 * pad, 1), max_size + 1))
    w = int(rng.integers(max(kw - 2 * pw, 1), max_size + 1))
    index_bits = [8, 6, 4][int(rng.integers(0, 3))]
    edge = int(rng.integers(0, 10))
    weights = "extreme" if edge == 0 else ("zero" if edge == 1 else "random")
    qc = random_conv(rng, cin, cout, k, stride, pad, value_bits, index_bits, weights=weights,
                     kernel_w=kw, pad_w=pw)
    if edge == 2:
        x = np.zeros((cin, h, w), np.uint8)
    elif edge == 3:
        x = np.full((cin, h, w), 255, np.uint8)
    else:
        x = rng.integers(0, 256, (cin, h, w)).astype(np.uint8)
    return qc, x


def authors_model_on_a_photo(shared):
    """The authors' model quantised to 8 bits (calibrated on every 100th shared photo) and its
    golden activations on the first of them: (model, quantized model, tensors by name)."""
    from golden.engine import Golden
    from golden.formats.deep_compression import read_deep_compression
    from golden.preprocess import load_image
    from golden.quantize import quantize
    model = read_deep_compression(
        shared / "models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net")
    photos = sorted((shared / "imagenet-sample").glob("*.JPEG"))
    calib = [load_image(p, model.network.input) for p in photos[::100]]
    q = quantize(model, calib, 8)
    return model, q, Golden(q)(calib[0], keep=True)


def random_fire(rng, value_bits: int, pc: int, max_channels: int = 24, max_size: int = 8):
    """A random Fire module (squeeze, expand1x1, expand3x3; expand1x1 a multiple of ``pc``
    channels so the concat is bank-aligned) and its input."""
    cin = int(rng.integers(1, max_channels))
    squeeze = int(rng.integers(1, max_channels))
    e1 = pc * int(rng.integers(1, max(2, max_channels // pc)))
    e3 = int(rng.integers(1, max_channels))
    ib = [8, 6, 4][int(rng.integers(0, 3))]
    layers = (random_conv(rng, cin, squeeze, 1, 1, 0, value_bits, ib, name="squeeze1x1"),
              random_conv(rng, squeeze, e1, 1, 1, 0, value_bits, ib, name="expand1x1"),
              random_conv(rng, squeeze, e3, 3, 1, 1, value_bits, ib, name="expand3x3"))
    h, w = int(rng.integers(1, max_size + 1)), int(rng.integers(1, max_size + 1))
    x = rng.integers(0, 256, (cin, h, w)).astype(np.uint8)
    return layers, x


def fire_reference(layers, x):
    """Golden for a Fire unit: squeeze, then both expands on its output, concatenated."""
    from golden import reference_int
    sq, e1, e3 = layers
    squeezed = reference_int.conv(x, sq)
    return np.concatenate([reference_int.conv(squeezed, e1), reference_int.conv(squeezed, e3)])
