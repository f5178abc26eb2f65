"""Deep Compression's three steps: magnitude pruning, k-means weight sharing, Huffman coding.

The files these produce are written by golden.formats (``.net``: deep_compression, ``.sqz``:
packed); the sparse entry code they store is golden.sparse.
"""

from __future__ import annotations

import heapq

import numpy as np

from .model import LayerWeights, Model, ModelFormatError

__all__ = ["PAPER_DENSITY", "prune", "share_weights", "huffman_lengths", "huffman_encode",
           "huffman_decode"]

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
    """Per layer, 2**bits shared values, entry 0 = 0.0 for the pruned positions.

    A layer that already shares its weights (a trained codebook, such as the authors' 256
    values) is re-clustered as the quantiser does it (golden.quantize.reduce_codebook: exact
    1-D k-means of its values weighted by their use), or kept as it is when it fits. A float
    layer gets k-means over its non-zero weights into 2**bits - 1 values, initialised evenly
    over [min, max] (Deep Compression's linear initialisation): Lloyd iterations until no
    value moves (at most ``iterations``)."""
    from .quantize import reduce_codebook
    if bits not in (8, 6, 4):
        raise ValueError(f"weight sharing takes 8, 6 or 4 bits, not {bits}")
    k = (1 << bits) - 1
    layers = {}
    for spec in model.network.convs():
        lw = model.layers[spec.name]
        if lw.shared:
            if len(lw.codebook) > 1 << bits:
                lw = reduce_codebook(lw, bits)
            codebook = np.zeros(1 << bits, np.float32)
            codebook[:len(lw.codebook)] = lw.codebook
            layers[spec.name] = LayerWeights(codebook, lw.indices.astype(np.uint8),
                                             lw.bias.astype(np.float32), shared=True)
            continue
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
