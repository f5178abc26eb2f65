"""The authors' Deep Compression ``.net`` file, read and written back byte for byte.

Layout (little-endian; ../shared/README.md and docs/NUMERICS.md): one uint32 entry count N per
convolution (network order), then per convolution a 256-entry float32 codebook, one float32
bias per output channel, N code bytes and ceil(N/2) gap bytes (4-bit gaps, low nibble first),
the entries of golden.sparse in Caffe (out, in, kh, kw) order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import sparse
from ..model import LayerWeights, Model, ModelFormatError
from ..network import Network, squeezenet_v1_0

__all__ = ["read_deep_compression", "net_bytes", "write_deep_compression", "pack_nibbles",
           "unpack_nibbles", "layer_from_entries"]


def pack_nibbles(gaps: np.ndarray) -> bytes:
    """4-bit gaps, two per byte, low nibble first (the .net and .sqz gap streams)."""
    g = np.zeros(len(gaps) + (len(gaps) & 1), np.uint8)
    g[:len(gaps)] = gaps
    return (g[0::2] | (g[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_nibbles(data: bytes, n: int) -> np.ndarray:
    packed = np.frombuffer(data, np.uint8)
    gaps = np.empty(2 * len(packed), np.uint8)
    gaps[0::2], gaps[1::2] = packed & 0x0F, packed >> 4
    return gaps[:n]


def layer_from_entries(spec, codebook, bias, codes, gaps, where: str) -> LayerWeights:
    """A stored layer from its sparse entries (Caffe order); entries past the layer's weights
    are a ModelFormatError naming the file and layer."""
    try:
        flat = sparse.decode(codes, gaps, spec.weight_count, f"{where}: layer {spec.name}")
    except ValueError as e:
        raise ModelFormatError(str(e)) from e
    return LayerWeights(codebook, flat.astype(np.uint8).reshape(spec.weight_shape), bias,
                        len(codes))


def read_deep_compression(path: str | Path, network: Network | None = None) -> Model:
    """Read ``compressed_SqueezeNet.net`` (the layout above) as ``network`` (default
    SqueezeNet v1.0); a truncated or corrupt file is a ModelFormatError that says so."""
    path = Path(path)
    net = network or squeezenet_v1_0()
    convs = net.convs()
    data = path.read_bytes()
    where = f"{path.name}"
    header = 4 * len(convs)
    if len(data) < header:
        raise ModelFormatError(f"{where}: {len(data)} bytes is too short for the {len(convs)}-layer "
                               f"header of a Deep Compression {net.name}; is this the right file?")
    counts = np.frombuffer(data, "<u4", len(convs))
    offset = header
    layers = {}
    for spec, n in zip(convs, counts):
        n = int(n)
        size = 4 * 256 + 4 * spec.out_channels + n + (n + 1) // 2
        if n > spec.weight_count or offset + size > len(data):
            raise ModelFormatError(
                f"{where}: layer {spec.name} claims {n} entries, which "
                + ("exceeds its " + str(spec.weight_count) + " weights" if n > spec.weight_count
                   else f"runs past the end of the file ({len(data)} bytes)")
                + "; the file is truncated or corrupt: download it again "
                  "(see README, 'The authors' SqueezeNet')")
        codebook = np.frombuffer(data, "<f4", 256, offset).astype(np.float32)
        offset += 4 * 256
        bias = np.frombuffer(data, "<f4", spec.out_channels, offset).astype(np.float32)
        offset += 4 * spec.out_channels
        codes = np.frombuffer(data, np.uint8, n, offset)
        offset += n
        packed = np.frombuffer(data, np.uint8, (n + 1) // 2, offset)
        offset += (n + 1) // 2
        gaps = unpack_nibbles(packed, n)
        if not (np.isfinite(codebook).all() and np.isfinite(bias).all()):
            raise ModelFormatError(f"{where}: layer {spec.name} has non-finite codebook or bias "
                                   "values; the file is corrupt")
        layers[spec.name] = layer_from_entries(spec, codebook, bias, codes, gaps, where)
    if offset != len(data):
        raise ModelFormatError(f"{where}: {len(data) - offset} bytes left over after the last "
                               f"layer; this is not a Deep Compression {net.name} file")
    return Model(net, layers, str(path)).check()


def net_bytes(model: Model) -> bytes:
    """The authors' Deep Compression layout (``read_deep_compression`` reads it back)."""
    header, body = [], []
    for spec in model.network.convs():
        lw = model.layers[spec.name]
        if len(lw.codebook) > 256:
            raise ValueError(f"layer {spec.name} has a {len(lw.codebook)}-entry codebook; the "
                             ".net format holds 256 (quantise or compress to 8 bits first)")
        if lw.codebook[0] != 0.0:
            raise ValueError(f"layer {spec.name}: codebook entry 0 must be 0.0 in a .net file")
        codes, gaps = sparse.encode(lw.indices)
        codebook = np.zeros(256, "<f4")
        codebook[:len(lw.codebook)] = lw.codebook
        header.append(len(codes))
        body += [codebook.tobytes(), lw.bias.astype("<f4").tobytes(),
                 codes.astype(np.uint8).tobytes(), pack_nibbles(gaps)]
    return np.array(header, "<u4").tobytes() + b"".join(body)


def write_deep_compression(model: Model, path: str | Path) -> int:
    data = net_bytes(model)
    Path(path).write_bytes(data)
    return len(data)
