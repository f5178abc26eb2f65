"""The project's packed model, ``.sqz``: the form ``sqz compress`` writes.

A header (magic, version, Huffman flag, index bits, the network description as JSON), then per
layer the entry count, a 2**bits-entry float32 codebook, float32 biases, and either bit-packed
codes (``bits`` each, MSB first) and 4-bit gaps, or, with Huffman coding, a canonical Huffman
code for the codes and one for the gaps (code lengths, then the bit streams). The entries are
golden.sparse's, in Caffe order.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np

from .. import sparse
from ..compress import huffman_decode, huffman_encode, huffman_lengths
from ..model import Model, ModelFormatError
from ..network import Network
from .deep_compression import layer_from_entries, pack_nibbles, unpack_nibbles

__all__ = ["MAGIC", "VERSION", "index_bits", "packed_bytes", "write_packed", "read_packed",
           "fixed_layout_bytes", "size_report"]

MAGIC = b"SQZM"
VERSION = 1


def _bitpack(values: np.ndarray, bits: int) -> bytes:
    v = np.asarray(values, np.int64)
    shifts = np.arange(bits - 1, -1, -1)
    return np.packbits(((v[:, None] >> shifts) & 1).astype(np.uint8).ravel()).tobytes()


def _bitunpack(data: bytes, bits: int, n: int) -> np.ndarray:
    raw = np.unpackbits(np.frombuffer(data, np.uint8))[:n * bits].reshape(n, bits)
    return (raw.astype(np.int64) << np.arange(bits - 1, -1, -1)).sum(axis=1)


def index_bits(model: Model) -> int:
    entries = max(len(lw.codebook) for lw in model.layers.values())
    for bits in (4, 6, 8):
        if entries <= 1 << bits:
            return bits
    raise ValueError(f"a codebook of {entries} entries needs more than 8 bits; compress first")


def packed_bytes(model: Model, huffman: bool = False) -> tuple[bytes, list[dict]]:
    """The .sqz file and, per layer, {name, stored, bytes, code_bytes, gap_bytes}: the bytes of
    the layer's section, and of its codes and its gaps (with Huffman: tables and streams)."""
    bits = index_bits(model)
    out = io.BytesIO()
    out.write(_header(model, huffman, bits))
    per_layer = []
    for spec in model.network.convs():
        lw = model.layers[spec.name]
        codes, gaps = sparse.encode(lw.indices)
        codebook = np.zeros(1 << bits, "<f4")
        codebook[:len(lw.codebook)] = lw.codebook
        start = out.tell()
        out.write(struct.pack("<I", len(codes)) + codebook.tobytes()
                  + lw.bias.astype("<f4").tobytes())
        if huffman:
            sections = []
            for symbols, alphabet in ((codes, 1 << bits), (gaps, sparse.MAX_GAP + 1)):
                lengths = huffman_lengths(np.bincount(symbols, minlength=alphabet))
                stream, nbits = huffman_encode(symbols, lengths)
                sections.append(lengths.tobytes() + struct.pack("<I", nbits) + stream)
        else:
            sections = [_bitpack(codes, bits), pack_nibbles(gaps)]
        out.write(b"".join(sections))
        per_layer.append({"name": spec.name, "stored": int(len(codes)),
                          "bytes": out.tell() - start, "code_bytes": len(sections[0]),
                          "gap_bytes": len(sections[1])})
    return out.getvalue(), per_layer


def _header(model: Model, huffman: bool, bits: int) -> bytes:
    net = model.network.to_json().encode()
    return (MAGIC + struct.pack("<BBBB", VERSION, int(huffman), bits, 0)
            + struct.pack("<I", len(net)) + net)


def write_packed(model: Model, path: str | Path, huffman: bool = False) -> list[dict]:
    data, per_layer = packed_bytes(model, huffman)
    Path(path).write_bytes(data)
    return per_layer


def read_packed(path: str | Path) -> Model:
    path = Path(path)
    data = path.read_bytes()
    where = path.name
    view = memoryview(data)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise ModelFormatError(f"{where}: ends after {len(data)} bytes, inside a layer; the "
                                   "file is truncated: write it again with 'sqz compress'")
        chunk = bytes(view[pos:pos + n])
        pos += n
        return chunk

    if take(4) != MAGIC:
        raise ModelFormatError(f"{where}: not an .sqz packed model (no SQZM header)")
    version, huffman, bits, _ = struct.unpack("<BBBB", take(4))
    if version != VERSION or bits not in (4, 6, 8):
        raise ModelFormatError(f"{where}: version {version}, {bits}-bit codes: unsupported")
    (nlen,) = struct.unpack("<I", take(4))
    try:
        network = Network.from_json(take(nlen).decode())
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelFormatError(f"{where}: the network description is corrupt ({e})") from e
    layers = {}
    for spec in network.convs():
        (n,) = struct.unpack("<I", take(4))
        codebook = np.frombuffer(take(4 << bits), "<f4").astype(np.float32)
        bias = np.frombuffer(take(4 * spec.out_channels), "<f4").astype(np.float32)
        if huffman:
            streams = []
            for alphabet in (1 << bits, sparse.MAX_GAP + 1):
                lengths = np.frombuffer(take(alphabet), np.uint8)
                (nbits,) = struct.unpack("<I", take(4))
                streams.append(huffman_decode(take((nbits + 7) // 8), nbits, n, lengths))
            codes, gaps = streams
        else:
            codes = _bitunpack(take((n * bits + 7) // 8), bits, n)
            gaps = unpack_nibbles(take((n + 1) // 2), n)
        layers[spec.name] = layer_from_entries(spec, codebook, bias, codes, gaps, where)
    if pos != len(data):
        raise ModelFormatError(f"{where}: {len(data) - pos} bytes after the last layer; corrupt")
    return Model(network, layers, str(path)).check()


def fixed_layout_bytes(model: Model, gap_bits: int) -> int:
    """Size of the plain .sqz file if its gaps were ``gap_bits`` wide instead of 4 (more or
    fewer filler entries): the what-if behind docs/COMPRESSION.md. Equals the real file's size
    at 4 bits."""
    bits = index_bits(model)
    total = len(_header(model, False, bits))
    for spec in model.network.convs():
        n = len(sparse.encode(model.layers[spec.name].indices, gap_bits)[0])
        total += 4 + (4 << bits) + 4 * spec.out_channels
        total += (n * bits + 7) // 8 + (n * gap_bits + 7) // 8
    return total


# ---- accounting -------------------------------------------------------------------------------

def size_report(model: Model, bits: int, huffman: bool, data: bytes,
                per_layer: list[dict]) -> dict:
    stored = sum(p["stored"] for p in per_layer)
    weights = sum(lw.indices.size for lw in model.layers.values())
    nonzero = sum(int(np.count_nonzero(lw.indices)) for lw in model.layers.values())
    report = {"bytes": len(data), "mib": len(data) / 2**20, "bits": bits, "huffman": huffman,
              "density": nonzero / weights, "parameters": model.parameter_count,
              "dense_float32_bytes": 4 * model.parameter_count, "stored": stored,
              "layers": per_layer}
    if all("code_bytes" in p for p in per_layer):
        report["code_bytes"] = sum(p["code_bytes"] for p in per_layer)
        report["gap_bytes"] = sum(p["gap_bytes"] for p in per_layer)
        if not huffman:
            report["bytes_with_gap_bits"] = {g: fixed_layout_bytes(model, g) for g in (2, 3, 4, 5)}
    return report
