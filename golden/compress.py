"""Deep Compression: magnitude pruning, k-means weight sharing, Huffman coding, and the files.

A compressed layer is what the authors' Deep Compression file stores: a codebook (entry 0 is
0.0), and for every *stored entry* a code (an index into the codebook) and the gap to the
previous entry's position (4 bits; a run of more than 15 zeros is bridged by a filler entry of
code 0 placed 16 positions on). ``sparse_entries`` is that encoding; with it, reading the
authors' file and writing it back reproduces every byte.

Files written here:

- ``.net``: the authors' layout (``write_deep_compression``): 8-bit codes, 4-bit gaps, float32
  codebooks of 256 entries and float32 biases.
- ``.sqz``: the project's packed model (``write_packed`` / ``read_packed``), the form the
  driver sends: a header with the network description, then per layer the entry count, a
  2**bits-entry float32 codebook, float32 biases, and either bit-packed codes (``bits`` each)
  and 4-bit gaps, or, with Huffman coding, a canonical Huffman code for the codes and one for
  the gaps (code lengths, then the bit streams).
"""

from __future__ import annotations

import heapq
import io
import json
import struct
from pathlib import Path

import numpy as np

from .model import LayerWeights, Model, ModelFormatError
from .network import Network

__all__ = ["PAPER_DENSITY", "prune", "share_weights", "sparse_entries", "fixed_layout_bytes",
           "net_bytes",
           "write_deep_compression", "packed_bytes", "write_packed", "read_packed",
           "huffman_lengths", "huffman_encode", "huffman_decode", "size_report"]

GAP_BITS = 4
MAX_GAP = (1 << GAP_BITS) - 1
# Huffman codes are kept at most this long, so a decoder can look a code up in one table.
MAX_CODE_BITS = 16

# SqueezeNet v1.0's density after pruning (paper Table 1, the "sparsity" column as density):
# 100% unless listed. These are the densities of the authors' published file.
PAPER_DENSITY = {
    **{f"fire{i}/expand3x3": 0.33 for i in range(2, 8)},
    "fire6/expand1x1": 0.50, "fire7/squeeze1x1": 0.50, "fire8/expand1x1": 0.50,
    "fire9/squeeze1x1": 0.50, "fire8/expand3x3": 0.30, "fire9/expand3x3": 0.30,
    "conv_final": 0.20,
}


# ---- pruning and weight sharing ---------------------------------------------------------------

def prune(model: Model, density: dict[str, float] | float) -> Model:
    """Magnitude pruning per layer: keep the ``density`` fraction of largest |w|, zero the rest.
    A layer already sparser than its target is left as it is. ``density`` is one fraction for
    every layer or a table by layer name (missing layers keep everything)."""
    layers = {}
    for spec in model.network.convs():
        lw = model.layers[spec.name]
        target = density if isinstance(density, float) else density.get(spec.name, 1.0)
        if not 0.0 < target <= 1.0:
            raise ValueError(f"density for {spec.name} must be in (0, 1], not {target}")
        if lw.codebook[0] != 0.0:
            raise ValueError(f"layer {spec.name}: codebook entry 0 must be 0.0 to prune")
        w = lw.weights
        keep = int(round(target * w.size))
        if keep >= int(np.count_nonzero(w)):
            layers[spec.name] = lw
            continue
        # Pruned positions take index 0 (value 0.0); equal magnitudes go lowest position first.
        order = np.argsort(np.abs(w.ravel()), kind="stable")
        idx = lw.indices.ravel().copy()
        idx[order[:w.size - keep]] = 0
        layers[spec.name] = LayerWeights(lw.codebook, idx.reshape(w.shape), lw.bias,
                                         shared=lw.shared)
    return Model(model.network, layers, model.source).check()


def share_weights(model: Model, bits: int, iterations: int = 50) -> Model:
    """Per layer, k-means over the non-zero weights into 2**bits - 1 shared values, initialised
    evenly over [min, max] (Deep Compression's linear initialisation); entry 0 stays 0.0 for the
    pruned positions. Lloyd iterations until no value moves (at most ``iterations``)."""
    if bits not in (8, 6, 4):
        raise ValueError(f"weight sharing takes 8, 6 or 4 bits, not {bits}")
    k = (1 << bits) - 1
    layers = {}
    for spec in model.network.convs():
        lw = model.layers[spec.name]
        w = lw.weights.ravel()
        nz = np.flatnonzero(w)
        values = w[nz].astype(np.float64)
        codebook = np.zeros(1 << bits, np.float32)
        idx = np.zeros(w.size, np.uint8)
        if len(values):
            centroids = np.linspace(values.min(), values.max(), k)
            order = np.argsort(values)
            sorted_v = values[order]
            for _ in range(iterations):
                # Nearest centroid on a line: split points halfway between sorted centroids.
                edges = (centroids[1:] + centroids[:-1]) / 2
                assign = np.searchsorted(edges, sorted_v)
                sums = np.bincount(assign, sorted_v, minlength=k)
                counts = np.bincount(assign, minlength=k)
                moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
                if np.array_equal(moved, centroids):
                    break
                centroids = np.sort(moved)
            edges = (centroids[1:] + centroids[:-1]) / 2
            assign = np.searchsorted(edges, values)
            # A centroid that rounds to 0.0 would alias the pruned entry: nudge it.
            cb = centroids.astype(np.float32)
            cb[cb == 0.0] = np.float32(np.finfo(np.float32).tiny)
            codebook[1:] = cb
            idx[nz] = assign + 1
        layers[spec.name] = LayerWeights(codebook, idx.reshape(spec.weight_shape),
                                         lw.bias.astype(np.float32))
    return Model(model.network, layers, model.source).check()


# ---- the sparse entry encoding --------------------------------------------------------------

def sparse_entries(indices: np.ndarray, gap_bits: int = GAP_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(codes, gaps) of a layer's stored entries: every non-zero index, in flat Caffe order,
    with the number of zeros skipped before it (at most 2**gap_bits - 1, 15 in the files;
    longer runs get filler entries of code 0 placed 2**gap_bits positions on)."""
    span = 1 << gap_bits
    flat = indices.ravel()
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


def fixed_layout_bytes(model: Model, gap_bits: int) -> int:
    """Size of the plain .sqz file if its gaps were ``gap_bits`` wide instead of 4 (more or
    fewer filler entries): the what-if behind docs/COMPRESSION.md. Equals the real file's size
    at 4 bits."""
    bits = _index_bits(model)
    total = len(_header(model, False, bits))
    for spec in model.network.convs():
        n = len(sparse_entries(model.layers[spec.name].indices, gap_bits)[0])
        total += 4 + (4 << bits) + 4 * spec.out_channels
        total += (n * bits + 7) // 8 + (n * gap_bits + 7) // 8
    return total


def _positions(gaps: np.ndarray) -> np.ndarray:
    return np.cumsum(gaps.astype(np.int64) + 1) - 1


def _pack_nibbles(gaps: np.ndarray) -> bytes:
    g = np.zeros(len(gaps) + (len(gaps) & 1), np.uint8)
    g[:len(gaps)] = gaps
    return (g[0::2] | (g[1::2] << 4)).astype(np.uint8).tobytes()


def _unpack_nibbles(data: bytes, n: int) -> np.ndarray:
    packed = np.frombuffer(data, np.uint8)
    gaps = np.empty(2 * len(packed), np.uint8)
    gaps[0::2], gaps[1::2] = packed & 0x0F, packed >> 4
    return gaps[:n]


# ---- the authors' .net ----------------------------------------------------------------------

def net_bytes(model: Model) -> bytes:
    """The authors' Deep Compression layout (golden.model.read_deep_compression reads it)."""
    header, body = [], []
    for spec in model.network.convs():
        lw = model.layers[spec.name]
        if len(lw.codebook) > 256:
            raise ValueError(f"layer {spec.name} has a {len(lw.codebook)}-entry codebook; the "
                             ".net format holds 256 (quantise or compress to 8 bits first)")
        if lw.codebook[0] != 0.0:
            raise ValueError(f"layer {spec.name}: codebook entry 0 must be 0.0 in a .net file")
        codes, gaps = sparse_entries(lw.indices)
        codebook = np.zeros(256, "<f4")
        codebook[:len(lw.codebook)] = lw.codebook
        header.append(len(codes))
        body += [codebook.tobytes(), lw.bias.astype("<f4").tobytes(),
                 codes.astype(np.uint8).tobytes(), _pack_nibbles(gaps)]
    return np.array(header, "<u4").tobytes() + b"".join(body)


def write_deep_compression(model: Model, path: str | Path) -> int:
    data = net_bytes(model)
    Path(path).write_bytes(data)
    return len(data)


# ---- canonical Huffman ------------------------------------------------------------------------

def huffman_lengths(counts: np.ndarray) -> np.ndarray:
    """Code length per symbol (0 for unused symbols) of a Huffman code, at most MAX_CODE_BITS:
    if the optimal code is longer, the counts are flattened (halved, kept >= 1) until it fits."""
    counts = np.asarray(counts, np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), np.uint8)
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    weights = counts[used].copy()
    while True:
        heap = [(int(c), i, (int(s),)) for i, (c, s) in enumerate(zip(weights, used))]
        heapq.heapify(heap)
        depth = dict.fromkeys(used.tolist(), 0)
        tie = len(heap)
        while len(heap) > 1:
            c1, _, a = heapq.heappop(heap)
            c2, _, b = heapq.heappop(heap)
            for s in a + b:
                depth[s] += 1
            heapq.heappush(heap, (c1 + c2, tie, a + b))
            tie += 1
        if max(depth.values()) <= MAX_CODE_BITS:
            break
        weights = np.maximum(weights // 2, 1)
    for s, d in depth.items():
        lengths[s] = d
    return lengths


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values: by (length, symbol), each code the previous plus one, shifted."""
    codes = np.zeros(len(lengths), np.int64)
    code, prev_len = 0, 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev_len
        codes[s] = code
        code += 1
        prev_len = int(lengths[s])
    return codes


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """(bytes, bit count) of ``symbols`` under the canonical code with these lengths, MSB first."""
    symbols = np.asarray(symbols, np.int64)
    if not len(symbols):
        return b"", 0
    codes = _canonical_codes(lengths)
    sym_len = lengths[symbols].astype(np.int64)
    if (sym_len == 0).any():
        raise ValueError("a symbol has no code")
    shifts = np.arange(MAX_CODE_BITS - 1, -1, -1)
    # Left-align each code in MAX_CODE_BITS bits, then keep its first ``length`` bits.
    aligned = codes[symbols] << (MAX_CODE_BITS - sym_len)
    bits = ((aligned[:, None] >> shifts) & 1).astype(np.uint8)
    keep = np.arange(MAX_CODE_BITS)[None, :] < sym_len[:, None]
    stream = bits[keep]
    return np.packbits(stream).tobytes(), int(len(stream))


def huffman_decode(data: bytes, nbits: int, count: int, lengths: np.ndarray) -> np.ndarray:
    """Decode ``count`` symbols: one table lookup of the next MAX_CODE_BITS bits per symbol."""
    codes = _canonical_codes(lengths)
    table_sym = np.full(1 << MAX_CODE_BITS, -1, np.int64)
    table_len = np.zeros(1 << MAX_CODE_BITS, np.int64)
    for s in np.flatnonzero(lengths):
        n = int(lengths[s])
        lo = int(codes[s]) << (MAX_CODE_BITS - n)
        table_sym[lo:lo + (1 << (MAX_CODE_BITS - n))] = s
        table_len[lo:lo + (1 << (MAX_CODE_BITS - n))] = n
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[:nbits]
    bits = np.concatenate([bits, np.zeros(MAX_CODE_BITS, np.uint8)]).astype(np.int64)
    window = np.zeros(nbits + 1, np.int64)
    for k in range(MAX_CODE_BITS):              # the next MAX_CODE_BITS bits at every position
        window = (window << 1) | bits[k:k + nbits + 1]
    out = np.empty(count, np.int64)
    pos = 0
    sym_of, len_of = table_sym.tolist(), table_len.tolist()
    win = window.tolist()
    for i in range(count):
        if pos > nbits:
            raise ModelFormatError("Huffman stream ends early; the file is truncated or corrupt")
        w = win[pos]
        s = sym_of[w]
        if s < 0:
            raise ModelFormatError("invalid Huffman code in the stream; the file is corrupt")
        out[i] = s
        pos += len_of[w]
    if pos != nbits:
        raise ModelFormatError("Huffman stream length does not match its symbols; corrupt file")
    return out


# ---- the project's packed model (.sqz) ----------------------------------------------------

MAGIC = b"SQZM"
VERSION = 1


def _bitpack(values: np.ndarray, bits: int) -> bytes:
    v = np.asarray(values, np.int64)
    shifts = np.arange(bits - 1, -1, -1)
    return np.packbits(((v[:, None] >> shifts) & 1).astype(np.uint8).ravel()).tobytes()


def _bitunpack(data: bytes, bits: int, n: int) -> np.ndarray:
    raw = np.unpackbits(np.frombuffer(data, np.uint8))[:n * bits].reshape(n, bits)
    return (raw.astype(np.int64) << np.arange(bits - 1, -1, -1)).sum(axis=1)


def _index_bits(model: Model) -> int:
    entries = max(len(lw.codebook) for lw in model.layers.values())
    for bits in (4, 6, 8):
        if entries <= 1 << bits:
            return bits
    raise ValueError(f"a codebook of {entries} entries needs more than 8 bits; compress first")


def packed_bytes(model: Model, huffman: bool = False) -> tuple[bytes, list[dict]]:
    """The .sqz file and, per layer, {name, stored, bytes, code_bytes, gap_bytes}: the bytes of
    the layer's section, and of its codes and its gaps (with Huffman: tables and streams)."""
    bits = _index_bits(model)
    out = io.BytesIO()
    out.write(_header(model, huffman, bits))
    per_layer = []
    for spec in model.network.convs():
        lw = model.layers[spec.name]
        codes, gaps = sparse_entries(lw.indices)
        codebook = np.zeros(1 << bits, "<f4")
        codebook[:len(lw.codebook)] = lw.codebook
        start = out.tell()
        out.write(struct.pack("<I", len(codes)) + codebook.tobytes()
                  + lw.bias.astype("<f4").tobytes())
        if huffman:
            sections = []
            for symbols, alphabet in ((codes, 1 << bits), (gaps, MAX_GAP + 1)):
                lengths = huffman_lengths(np.bincount(symbols, minlength=alphabet))
                stream, nbits = huffman_encode(symbols, lengths)
                sections.append(lengths.tobytes() + struct.pack("<I", nbits) + stream)
        else:
            sections = [_bitpack(codes, bits), _pack_nibbles(gaps)]
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
            for alphabet in (1 << bits, MAX_GAP + 1):
                lengths = np.frombuffer(take(alphabet), np.uint8)
                (nbits,) = struct.unpack("<I", take(4))
                streams.append(huffman_decode(take((nbits + 7) // 8), nbits, n, lengths))
            codes, gaps = streams
        else:
            codes = _bitunpack(take((n * bits + 7) // 8), bits, n)
            gaps = _unpack_nibbles(take((n + 1) // 2), n)
        positions = _positions(gaps)
        if n and positions[-1] >= spec.weight_count:
            raise ModelFormatError(f"{where}: layer {spec.name} places a weight past its "
                                   f"{spec.weight_count} positions; the file is corrupt")
        flat = np.zeros(spec.weight_count, np.uint8)
        flat[positions] = codes
        layers[spec.name] = LayerWeights(codebook, flat.reshape(spec.weight_shape), bias, n)
    if pos != len(data):
        raise ModelFormatError(f"{where}: {len(data) - pos} bytes after the last layer; corrupt")
    return Model(network, layers, str(path)).check()


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
