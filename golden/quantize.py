"""From a float/codebook model and a few calibration images to the integer model the hardware runs.

Every rule here is written out in docs/NUMERICS.md; widths come from ``golden.numerics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import numerics as nx
from .model import LayerWeights, Model, ModelFormatError, uniform_codebook
from .network import Bypass, Conv, ConvSpec, Fire, GlobalAvgPool, MaxPool, Network
from .preprocess import float_input
from .reference_float import conv2d_float, forward_float, forward_float_all

__all__ = ["QConv", "QAdd", "QuantizedModel", "calibrate", "mse_clip", "CALIBRATION_RULES",
           "DEFAULT_RULE", "DEFAULT_BIAS_CORRECTION", "CALIBRATION_IMAGES", "correct_biases",
           "quantize", "reduce_codebook",
           "save_quantized", "load_quantized", "QuantizationError"]


class QuantizationError(ValueError):
    """A model that cannot be mapped onto the integer contract (named layer, reason, fix)."""


@dataclass
class QConv:
    """One convolution in integers: weights ``codebook[indices]``, int32 bias, requant (M, S)."""

    spec: ConvSpec
    index_bits: int
    value_bits: int
    codebook: np.ndarray        # int32 [2**index_bits], |v| < 2**(value_bits-1)
    indices: np.ndarray         # uint8 (or uint16) weight_shape
    bias: np.ndarray            # int32 [out]
    mult: int                   # requant multiplier M (unused when spec.relu is False)
    shift: int                  # requant shift S

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def weights(self) -> np.ndarray:
        """Signed integer weights (out, in, kh, kw), int32: a grouped convolution's as the
        dense tensor it equals (ConvSpec.dense), which is what every integer path computes."""
        return self.spec.dense(self.codebook[self.indices].astype(np.int32))

    @property
    def dense_indices(self) -> np.ndarray:
        """Indices of ``weights`` (out, in, kh, kw): outside a group's block, an index whose
        codebook value is 0 (the device computes a grouped layer as this dense one)."""
        if self.spec.groups == 1:
            return self.indices
        zero = np.flatnonzero(self.codebook == 0)
        if not len(zero):
            raise QuantizationError(f"layer {self.name}: a grouped convolution needs a codebook "
                                    "entry of value 0 for the weights between its groups; "
                                    "prune the layer or use fewer codebook entries")
        out = np.full((self.spec.out_channels, self.spec.in_channels, self.spec.kh,
                       self.spec.kw), zero[0], self.indices.dtype)
        o, c = self.spec.out_channels // self.spec.groups, self.spec.in_channels // self.spec.groups
        for g in range(self.spec.groups):
            out[g * o:(g + 1) * o, g * c:(g + 1) * c] = self.indices[g * o:(g + 1) * o]
        return out

    def accumulator_bound(self) -> int:
        """Largest |accumulator| any uint8 input can produce (per output channel, maximised)."""
        w = np.abs(self.weights.reshape(self.spec.out_channels, -1).astype(np.int64))
        return int((w.sum(axis=1) * nx.ACT_MAX + np.abs(self.bias.astype(np.int64))).max())


@dataclass
class QAdd:
    """Bypass add: y = clamp((a * mult_a + b * mult_b + 2**(shift-1)) >> shift, 0, 255).

    ``a`` is the Fire output (uint8). ``b`` is the Fire input (uint8, simple bypass) or the
    int32 accumulator of the bypass 1x1 convolution (complex bypass).
    """

    mult_a: int
    mult_b: int
    shift: int


@dataclass
class QuantizedModel:
    network: Network
    index_bits: int
    value_bits: int
    convs: dict[str, QConv]
    adds: dict[str, QAdd] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)   # real value of one LSB per tensor
    info: dict = field(default_factory=dict)

    def logits_scale(self) -> float:
        """Real logit per unit of the integer global-average-pool sum."""
        net = self.network
        c, h, w = net.shapes()[net.node_inputs(len(net.nodes) - 1)[0]]
        return self.scales[net.output_node] / (h * w)


# ---- calibration ----------------------------------------------------------------------------

def activation_tensors(network: Network) -> list[str]:
    """The tensors that get their own calibrated scale (everything else inherits one)."""
    names = []
    for node in network.nodes:
        if isinstance(node, Fire):
            names += [f"{node.name}/squeeze1x1", node.name]
        elif isinstance(node, (Conv, Bypass)):
            names.append(node.name)
    return names


CALIBRATION_RULES = ("next", "mse", "percentile")
# "next": the factors of a tensor's "mse" clip tried against its readers' outputs, and how
# many calibration images (the first ones) that search uses.
NEXT_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
NEXT_IMAGES = 16
# What the quantiser does unless told otherwise (docs/NUMERICS.md gives the measurements).
DEFAULT_RULE = "next"
DEFAULT_BIAS_CORRECTION = False
DEFAULT_ACTIVATION_REFIT = False
CALIBRATION_IMAGES = 50          # photos, spread evenly over a folder (golden.evaluate)


def quantised_activation(x: np.ndarray, step: float, out: np.ndarray | None = None
                         ) -> np.ndarray:
    """``min(round(x / step), ACT_MAX) * step``: a ReLU's output (>= 0) as the integer path
    holds it with scale ``step``, in ``x``'s dtype (into ``out`` if given)."""
    q = np.minimum(np.rint(x / step), nx.ACT_MAX, out=out)
    q *= step
    return q


def calibrate(model: Model, images: list[np.ndarray], percentile: float = 99.99,
              final_percentile: float = 100.0,
              weights: dict | None = None, rule: str = DEFAULT_RULE,
              final_rule: str | None = None) -> dict[str, float]:
    """Clipping value per activation tensor from float activations on ``images`` (uint8 CHW).

    Each tensor's values over all images are pooled. ``rule`` chooses the clip:

    - "percentile": the values' ``percentile``;
    - "mse": the clip whose 8-bit quantisation (``mse_clip``) of the pooled values has the
      least mean squared error;
    - "next": of the "mse" clip times each of NEXT_FACTORS, the one whose quantisation of the
      tensor least changes (squared error, on the first NEXT_IMAGES images) the outputs of the
      convolutions that read it (through a max pool, where one lies between): what the
      network does with the error counts, not only its size. A tensor no convolution reads
      keeps its "mse" clip.

    The last convolution (the logits before pooling) uses ``final_rule`` (default: ``rule``),
    with ``final_percentile`` for "percentile": clipping there flattens exactly the scores the
    top-k reads. Deterministic: same images, same scales.
    """
    if not images:
        raise QuantizationError("calibration needs at least one image")
    final_rule = final_rule or rule
    for r in (rule, final_rule):
        if r not in CALIBRATION_RULES:
            raise QuantizationError(f"calibration rule must be one of {CALIBRATION_RULES}, "
                                    f"not {r!r}")
    net = model.network
    weights = weights or model.float_weights()
    names = activation_tensors(net)
    last_conv = [n.name for n in net.nodes if isinstance(n, Conv)][-1]
    pooled: dict[str, list[np.ndarray]] = {n: [] for n in names}
    kept = []                       # the first images' tensors, for the "next" search
    for k, img in enumerate(images):
        t = forward_float(net, weights, float_input(img, net.input), keep=True)
        for n in names:
            pooled[n].append(t[n].ravel())
        if "next" in (rule, final_rule) and k < NEXT_IMAGES:
            kept.append(t)
    readers = tensor_readers(net)
    clips = {}
    for n in names:
        v = np.concatenate(pooled[n])
        r, q = (final_rule, final_percentile) if n == last_conv else (rule, percentile)
        if not v.size:
            clip = 0.0
        elif r in ("mse", "next"):
            clip = mse_clip(v)
            if r == "next" and readers.get(n) and clip > 0:
                clip = _next_clip(n, clip, float(v.max()), readers[n], kept, net, weights)
        else:
            clip = float(np.percentile(v, q))
        clips[n] = clip if clip > 0 else 1.0    # a tensor that never fires: any scale is exact
    return clips


def tensor_readers(network: Network) -> dict[str, list[tuple[ConvSpec, MaxPool | None]]]:
    """For each tensor, the convolutions that read it: (spec, the max pool between or None)."""
    pools = {node.name: (node, network.node_inputs(i)[0])
             for i, node in enumerate(network.nodes) if isinstance(node, MaxPool)}
    specs = {c.name: c for c in network.convs()}
    readers: dict[str, list] = {}
    for conv, src in conv_inputs(network).items():
        pool, tensor = pools.get(src, (None, src))
        readers.setdefault(tensor, []).append((specs[conv], pool))
    return readers


def _next_clip(name, clip, top, readers, tensors, net, weights) -> float:
    """calibrate's "next" rule for one tensor: the candidate clip of least squared error in
    its readers' outputs, over ``tensors`` (per-image dicts of float tensors)."""
    from .reference_float import maxpool_float
    best, best_err = clip, np.inf
    for c in sorted({min(clip * f, top) for f in NEXT_FACTORS}):
        step = c / nx.ACT_MAX
        err = 0.0
        for t in tensors:
            xq = quantised_activation(t[name], step)
            for spec, pool in readers:
                x = maxpool_float(xq, pool.kernel, pool.stride) if pool is not None else xq
                w, b = weights[spec.name]
                y = conv2d_float(x, spec.dense(w), b, spec.stride, (spec.ph, spec.pw),
                                 relu=spec.relu)
                err += float(((y - t[spec.name]) ** 2).sum())
        if err < best_err:
            best, best_err = c, err
    return best


def mse_clip(values: np.ndarray, bins: int = 1 << 16, candidates: int = 400) -> float:
    """The clip c (0 < c <= max) minimising the mean squared error of the unsigned
    ACT_BITS-bit quantisation q(v) = min(round(v / s), ACT_MAX) * s, s = c / ACT_MAX, over
    ``values`` (>= 0, a ReLU's outputs).

    The values up to a range R are counted in a histogram of ``bins`` bins (each bin's values
    stand at its centre); those above R are clipped by every candidate, so their error is
    exact from their count, sum and sum of squares. The candidates are ``candidates`` clips
    spaced evenly in log over [R / 256, R]. R starts at the maximum; while the best clip lies
    below R / 16, where the histogram would be coarse against the step, R shrinks to four
    times it and the search repeats."""
    v = np.asarray(values, np.float64).ravel()
    top = float(v.max()) if v.size else 0.0
    if top <= 0:
        return 0.0
    reach = best = top
    for _ in range(8):
        tail = v[v > reach]
        n_t, s1, s2 = float(tail.size), float(tail.sum()), float((tail * tail).sum())
        counts, edges = np.histogram(v[v <= reach], bins=bins, range=(0.0, reach))
        centre = (edges[:-1] + edges[1:]) / 2
        used = counts > 0
        x, n = centre[used], counts[used].astype(np.float64)
        best_err = np.inf
        for c in reach * np.geomspace(1.0 / 256, 1.0, candidates):
            step = c / nx.ACT_MAX
            q = quantised_activation(x, step)
            err = float((n * (x - q) ** 2).sum()) + s2 - 2 * c * s1 + n_t * c * c
            if err < best_err:
                best, best_err = float(c), err
        if best >= reach / 16:
            break
        reach = 4 * best
    return best


# ---- codebook reduction (8 -> 6/4 bits) ------------------------------------------------------

def kmeans_1d_optimal(values: np.ndarray, weights: np.ndarray, k: int):
    """Exact weighted 1-D k-means: the partition of the sorted values into ``k`` contiguous
    clusters minimising sum weight * (value - centroid)**2, by dynamic programming (optimal
    clusters in 1-D are contiguous). Deterministic; O(k * n**2) for n values (n <= 256 here).

    Returns (centroids sorted ascending, cluster index of each input value).
    """
    order = np.argsort(values, kind="stable")
    v, w = values[order].astype(np.float64), weights[order].astype(np.float64)
    n = len(v)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwv = np.concatenate([[0.0], np.cumsum(w * v)])
    cwv2 = np.concatenate([[0.0], np.cumsum(w * v * v)])

    # cost[i, j]: the cluster v[i:j]; only i < j is a cluster, the rest never wins.
    mass = cw[None, :] - cw[:, None]
    s = cwv[None, :] - cwv[:, None]
    cost = cwv2[None, :] - cwv2[:, None] - s * s / np.maximum(mass, 1e-300)
    cost[np.tril_indices(n + 1)] = np.inf

    best = np.full((k + 1, n + 1), np.inf)
    best[0, 0] = 0.0
    back = np.zeros((k + 1, n + 1), np.int64)
    for m in range(1, k + 1):
        # m clusters ending at j: the best m-1 clusters ending at some i (>= m-1), then v[i:j];
        # argmin takes the first minimum, the smallest i, as a scan over i would.
        c = best[m - 1, :, None] + cost
        c[:m - 1] = np.inf
        a = np.argmin(c[:, m:], axis=0)
        best[m, m:], back[m, m:] = c[a, np.arange(m, n + 1)], a
    cuts, j = [], n
    for m in range(k, 0, -1):
        i = back[m, j]
        cuts.append((i, j))
        j = i
    cuts.reverse()
    centroids = np.array([(cwv[j] - cwv[i]) / (cw[j] - cw[i]) for i, j in cuts])
    assign_sorted = np.repeat(np.arange(k), [j - i for i, j in cuts])
    assign = np.empty(n, np.int64)
    assign[order] = assign_sorted
    return centroids, assign


def reduce_codebook(lw: LayerWeights, bits: int) -> LayerWeights:
    """Re-cluster a codebook to 2**bits entries, weighted by how often each entry is used.

    Entry 0 stays 0.0 and keeps every weight that is zero (pruned positions stay pruned). The
    non-zero values are clustered by exact weighted 1-D k-means (``kmeans_1d_optimal``): each
    entry's weight is its use count, so the clustering minimises the squared error summed over
    the layer's weights, not over its distinct values.
    """
    entries = 1 << bits
    counts = np.bincount(lw.indices.ravel(), minlength=len(lw.codebook)).astype(np.float64)
    values = lw.codebook.astype(np.float64)
    used = (counts > 0) & (values != 0.0)
    if used.sum() <= entries - 1:
        # Already small enough: keep the used values exactly.
        keep = np.flatnonzero(used)
        new_cb = np.zeros(entries, np.float32)
        new_cb[1:1 + len(keep)] = values[keep]
        remap = np.zeros(len(values), np.int64)
        remap[keep] = np.arange(1, 1 + len(keep))
    else:
        centroids, assign = kmeans_1d_optimal(values[used], counts[used], entries - 1)
        new_cb = np.zeros(entries, np.float32)
        new_cb[1:] = centroids
        remap = np.zeros(len(values), np.int64)
        remap[np.flatnonzero(used)] = assign + 1
    idx = remap[lw.indices].astype(np.uint8)
    return LayerWeights(new_cb, idx, lw.bias.copy(), lw.stored)


def _im2col(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view
    s = spec.stride
    if spec.ph or spec.pw:
        x = np.pad(x, ((0, 0), (spec.ph, spec.ph), (spec.pw, spec.pw)))
    win = sliding_window_view(x, (spec.kh, spec.kw), axis=(1, 2))[:, ::s, ::s]
    ho, wo = win.shape[1:3]
    return win.transpose(0, 3, 4, 1, 2).reshape(-1, ho * wo)


def refit_codebooks(model: Model, reference: Model, images: list[np.ndarray],
                    max_pixels: int = 1024, seed: int = 0, progress=None,
                    clips: dict[str, float] | None = None, reassign: bool = True) -> Model:
    """Least-squares refit of every layer's codebook values to the float model's outputs.

    A layer's pre-activation output is linear in its codebook values: y[o,p] = b[o] +
    sum_j c_j A_j[o,p] with A_j[o,p] = sum of the inputs x[k,p] whose weight uses entry j. Layers
    are refit in network order, each on inputs computed with the already-refit layers before it
    (so each corrects the error its inputs bring), against the outputs of ``reference`` (the
    model before its codebooks were reduced).
    Entry 0 stays 0.0. Pixels are subsampled to ``max_pixels`` per image (seeded) to bound time.

    With ``clips`` (activation clips by tensor, as ``calibrate`` returns them) every
    convolution's input is first quantised as the integer path will hold it,
    ``min(round(x / s), ACT_MAX) * s`` with ``s = clip / ACT_MAX``: each layer's values are then
    fit to what the float reference computes from the quantised inputs the refit layers before
    it produce, so the fit takes up the activations' quantisation error as well as the shared
    weights'.

    With ``reassign``, each layer's weights are first assigned to the codebook's entries anew
    (``assign_by_error``: against the input statistics, not by value alone) from
    ``reference``'s weights, then the values are refit to that assignment.
    """
    net = model.network
    source = _clip_source(net) if clips is not None else {}
    rng = np.random.default_rng(seed)
    ref_w = reference.float_weights()
    targets = forward_float_all(net, ref_w, [float_input(im, net.input) for im in images],
                                keep=True)
    layers = dict(model.layers)
    weights = {n: (lw.weights, lw.bias) for n, lw in layers.items()}
    convs = net.convs()
    from tqdm import tqdm
    bar = tqdm(total=len(convs), desc="refit codebooks", unit="layer", disable=None,
               leave=False) if progress is None else None
    done = []

    def refit(spec, inputs):
        """Called with the layer's inputs (from the layers refit before it) as the walk reaches
        it; its codebook refit, the walk then computes its output with the new values."""
        if spec.name in source:
            step = clips[source[spec.name]] / nx.ACT_MAX
            for x in inputs:      # in place: the walk computes the layer from these
                quantised_activation(x, step, out=x)
        lw = layers[spec.name]
        entries = len(lw.codebook)
        # (a grouped layer's indices as its dense tensor, -1 where no weight is: no entry)
        idx = spec.dense(lw.indices.astype(np.int64) + 1).reshape(spec.out_channels, -1) - 1
        # The normal equations through the inputs' Gram matrix: with A_j[o,p] = sum of the
        # inputs x[k,p] whose weight (o,k) uses entry j, sum_p,o A_j A_j' is the sum over o of
        # C[k,k'] over the pairs (k,k') whose weights use (j,j'), C = sum_p x x^T; and
        # sum_p,o A_j r = the sum over o of D[k,o] over the k using j, D = sum_p x r^T.
        k = idx.shape[1]
        gram_in = np.zeros((k, k))
        cross = np.zeros((k, spec.out_channels))
        for inp, target in zip(inputs, targets):
            cols = _im2col(inp, spec).astype(np.float64)
            y = target[spec.name + ":pre"].reshape(spec.out_channels, -1)
            if cols.shape[1] > max_pixels:
                pick = np.sort(rng.choice(cols.shape[1], max_pixels, replace=False))
                cols, y = cols[:, pick], y[:, pick]
            gram_in += cols @ cols.T
            cross += cols @ (y - lw.bias[:, None]).T
        if reassign and spec.groups == 1:
            w_ref = reference.layers[spec.name].weights.reshape(spec.out_channels, -1)
            new = assign_by_error(w_ref, lw.codebook, gram_in)
            lw = LayerWeights(lw.codebook, new.reshape(lw.indices.shape).astype(lw.indices.dtype),
                              lw.bias, lw.stored)
            idx = new
        gram = np.zeros(entries * entries)
        rhs = np.zeros(entries)
        for o in range(spec.out_channels):
            at = np.flatnonzero(idx[o] >= 0)
            j = idx[o][at]
            gram += np.bincount((j[:, None] * entries + j[None, :]).ravel(),
                                gram_in[np.ix_(at, at)].ravel(), entries * entries)
            rhs += np.bincount(j, cross[at, o], entries)
        gram = gram.reshape(entries, entries)
        free = np.arange(1, entries)
        g = gram[np.ix_(free, free)]
        h = rhs[free]
        c0 = lw.codebook[free].astype(np.float64)
        # A tiny ridge towards the clustered values keeps unused entries where they were.
        lam = 1e-6 * (np.trace(g) / len(free) + 1e-12)
        c = np.linalg.solve(g + lam * np.eye(len(free)), h + lam * c0)
        cb = lw.codebook.copy()
        cb[free] = c.astype(np.float32)
        layers[spec.name] = LayerWeights(cb, lw.indices, lw.bias, lw.stored)
        weights[spec.name] = (layers[spec.name].weights, lw.bias)
        done.append(spec.name)
        if progress:
            progress(len(done), len(convs), spec.name)
        if bar is not None:
            bar.update()

    forward_float_all(net, weights, [float_input(im, net.input) for im in images],
                      before_conv=refit)
    if bar is not None:
        bar.close()
    return Model(net, layers, model.source).check()


def assign_by_error(w: np.ndarray, codebook: np.ndarray, gram: np.ndarray,
                    damp: float = 0.01) -> np.ndarray:
    """Codebook indices for the weights ``w`` (out, k) that keep the layer's output error
    ``sum_p ||(w - c[idx]) x_p||^2`` small, with ``gram = sum_p x_p x_p^T`` (k, k) over the
    calibration inputs: the input columns are quantised one at a time to the nearest entry,
    and each column's error is compensated in the columns not yet quantised through the
    inverse of ``gram`` (optimal brain quantisation, as GPTQ does it). A zero weight (a pruned
    position) stays index 0, its share of the compensation passed on. ``damp`` times the mean
    diagonal is added to ``gram`` so that it can be inverted."""
    w = np.array(w, np.float64)
    out, k = w.shape
    pruned = w == 0.0
    h = np.array(gram, np.float64)
    dead = np.diag(h) == 0.0                # inputs that never fire: any weight is exact
    h[dead, dead] = 1.0
    h += damp * np.mean(np.diag(h)) * np.eye(k)
    # The upper Cholesky factor of the inverse: row i holds how column i's error spreads on.
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    order = np.argsort(codebook, kind="stable")
    values = codebook[order].astype(np.float64)
    mid = (values[1:] + values[:-1]) / 2
    idx = np.zeros((out, k), np.int64)
    for i in range(k):
        col = w[:, i]
        pick = order[np.searchsorted(mid, col)]
        pick[pruned[:, i]] = 0
        idx[:, i] = pick
        err = (col - codebook[pick]) / u[i, i]
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return idx


def _clip_source(network: Network) -> dict[str, str]:
    """Each convolution reading a calibrated activation: the tensor whose clip its input has
    (through a max pool, its input's). The image, exact in the integer path, is absent."""
    return {spec.name: tensor for tensor, readers in tensor_readers(network).items()
            if tensor != "input" for spec, _ in readers}


# ---- integer parameters ----------------------------------------------------------------------

def quantize(model: Model, calib_images: list[np.ndarray], index_bits: int = 8,
             value_bits: int = nx.DEFAULT_VALUE_BITS, percentile: float = 99.99,
             final_percentile: float = 100.0, refit: bool = True,
             progress=None, rule: str = DEFAULT_RULE, final_rule: str | None = None,
             bias_correction: bool = DEFAULT_BIAS_CORRECTION,
             activation_refit: bool = DEFAULT_ACTIVATION_REFIT) -> QuantizedModel:
    """Map ``model`` to the integer contract, calibrating activation scales on ``calib_images``.

    ``index_bits`` below the model's own codebook size re-clusters each codebook (and, with
    ``refit``, refits its values by least squares on the calibration images). ``rule`` and
    ``final_rule`` choose the activation clips (``calibrate``); ``bias_correction`` takes each
    activation's mean quantisation error out of the biases that read it (``correct_biases``).
    """
    if index_bits not in nx.INDEX_BITS_CHOICES:
        raise QuantizationError(f"index bits must be one of {nx.INDEX_BITS_CHOICES}, "
                                f"not {index_bits}")
    if not nx.VALUE_BITS_MIN <= value_bits <= nx.VALUE_BITS_MAX:
        raise QuantizationError(f"codebook value width must be {nx.VALUE_BITS_MIN} to "
                                f"{nx.VALUE_BITS_MAX} bits, not {value_bits}")
    net = model.network
    model = _fold_input_std(model)
    original = model
    reduced = False
    layers = {}
    for n, lw in model.layers.items():
        if not lw.shared:
            cb, idx = uniform_codebook(lw.weights, index_bits)
            lw = LayerWeights(cb, idx, lw.bias, lw.stored, shared=True)
        elif len(lw.codebook) > (1 << index_bits):
            lw = reduce_codebook(lw, index_bits)
            reduced = True
        layers[n] = lw
    model = Model(net, layers, model.source).check()
    if reduced and refit:
        model = refit_codebooks(model, original, calib_images, progress=progress)
    clips = calibrate(model, calib_images, percentile, final_percentile, rule=rule,
                      final_rule=final_rule)
    if activation_refit:
        model = refit_codebooks(model, original, calib_images, progress=progress, clips=clips)
    scales: dict[str, float] = {}
    std = net.input.std[0]
    scales["input"] = 1.0 / std
    convs: dict[str, QConv] = {}
    adds: dict[str, QAdd] = {}

    def act_scale(name):
        return clips[name] / nx.ACT_MAX

    def qconv(spec, s_in, s_out, mean=None):
        lw = model.layers[spec.name]
        convs[spec.name] = _quantize_conv(spec, lw, s_in, s_out, index_bits, value_bits, mean)

    for i, node in enumerate(net.nodes):
        src = net.node_inputs(i)
        s_in = scales[src[0]]
        if isinstance(node, Conv):
            scales[node.name] = act_scale(node.name)
            qconv(node.convs()[0], s_in, scales[node.name], net.input.mean if i == 0 else None)
        elif isinstance(node, Fire):
            sq, e1, e3 = node.convs()
            s_sq = scales[sq.name] = act_scale(sq.name)
            s_out = scales[node.name] = act_scale(node.name)
            qconv(sq, s_in, s_sq)
            for c in (e1, e3):   # both expand paths requantise to the concat's common scale
                qconv(c, s_sq, s_out)
        elif isinstance(node, MaxPool) or isinstance(node, GlobalAvgPool):
            scales[node.name] = s_in          # max and sum do not change the scale
        elif isinstance(node, Bypass):
            s_y = scales[node.name] = act_scale(node.name)
            s_b = scales[src[1]]
            if node.complex:
                spec = node.convs()[0]
                qconv(spec, s_b, s_y)
                s_b = s_b * _value_scale(model.layers[spec.name].codebook, value_bits)
            adds[node.name] = _quantize_add(s_in, s_b, s_y)
    q = QuantizedModel(net, index_bits, value_bits, convs, adds, scales, {
        "rule": rule, "final_rule": final_rule or rule,
        "percentile": percentile, "final_percentile": final_percentile,
        "calibration_images": len(calib_images), "reclustered": reduced,
        "refit": reduced and refit, "bias_correction": bias_correction,
        "activation_refit": activation_refit})
    if bias_correction:
        q = correct_biases(q, original, calib_images)
    for qc in q.convs.values():
        bound = qc.accumulator_bound()
        if bound > nx.ACC_MAX:
            raise QuantizationError(
                f"layer {qc.name}: worst-case accumulator {bound} exceeds the {nx.ACC_BITS}-bit "
                f"accumulator; use fewer codebook value bits (now {value_bits})")
    return q


def conv_inputs(network: Network) -> dict[str, str]:
    """Each convolution's input tensor by name, as golden.engine's walk names its tensors."""
    inputs = {}
    for i, node in enumerate(network.nodes):
        src = network.node_inputs(i)
        if isinstance(node, Conv):
            inputs[node.name] = src[0]
        elif isinstance(node, Fire):
            sq, e1, e3 = node.convs()
            inputs.update({sq.name: src[0], e1.name: sq.name, e3.name: sq.name})
        elif isinstance(node, Bypass) and node.complex:
            inputs[node.convs()[0].name] = src[1]
    return inputs


def correct_biases(q: QuantizedModel, reference: Model, images: list[np.ndarray]
                   ) -> QuantizedModel:
    """Bias correction of the expected activation quantisation error.

    Quantising a tensor to 8 bits, q(x) = min(round(x / s), ACT_MAX) * s, moves each channel's
    mean by d_c = E[q(x_c) - x_c]: rounding alone averages out, clipping the tail does not.
    Every convolution reading that tensor then adds sum_k w[o, c, k] * d_c to output o, so its
    bias takes that away: in accumulator units, b_o -= sum_c,k w_int[o, c, k] * d_c / s_in.
    d_c is measured on the float reference's activations over the calibration images (each
    layer corrects only the error of its own input, so no correction is counted twice). The
    network's input (raw pixels) is exact and gets none."""
    net = q.network
    inputs = conv_inputs(net)
    weights = reference.float_weights()
    tensors = sorted({t for t in inputs.values() if t != "input"})
    shift: dict[str, np.ndarray] = {}
    for img in images:
        t = forward_float(net, weights, float_input(img, net.input), keep=True)
        for name in tensors:
            x = t[name].astype(np.float64)
            s_x = q.scales[name]
            xq = quantised_activation(x, s_x)
            d = (xq - x).mean(axis=(1, 2)) / s_x / len(images)
            shift[name] = shift.get(name, 0.0) + d
    convs = {}
    for n, qc in q.convs.items():
        src = inputs[n]
        if src == "input":
            convs[n] = qc
            continue
        per_input = qc.weights.astype(np.float64).sum(axis=(2, 3))     # (out, in)
        bias = qc.bias.astype(np.int64) - np.rint(per_input @ shift[src]).astype(np.int64)
        if np.abs(bias).max(initial=0) > nx.ACC_MAX:
            raise QuantizationError(f"layer {n}: the corrected bias does not fit the "
                                    f"{nx.ACC_BITS}-bit accumulator; quantise without bias "
                                    "correction")
        convs[n] = replace(qc, bias=bias.astype(np.int32))
    return replace(q, convs=convs)


def _fold_input_std(model: Model) -> Model:
    """Fold a per-channel input std into the first convolution's weights (exact in float).

    A common std stays out of the weights: it becomes the input scale 1/std. Per-channel stds
    differ per input channel, which no single codebook scale can absorb, so the first layer is
    rescaled in float (w / std_c * std_0) and quantised with a uniform codebook like any float
    layer; the input scale is then 1/std_0.
    """
    net = model.network
    std = np.asarray(net.input.std, np.float64)
    if np.all(std == std[0]):
        return model
    first = net.convs()[0]
    lw = model.layers[first.name]
    w = (lw.weights / std.reshape(1, -1, 1, 1) * std[0]).astype(np.float32)
    layers = dict(model.layers)
    layers[first.name] = _exact_layer(w, lw.bias)
    return Model(net, layers, model.source)


def _exact_layer(w: np.ndarray, bias: np.ndarray) -> LayerWeights:
    values, idx = np.unique(w.ravel(), return_inverse=True)
    return LayerWeights(values.astype(np.float32), idx.reshape(w.shape).astype(np.uint32), bias,
                        shared=False)


def _value_scale(codebook: np.ndarray, value_bits: int) -> float:
    peak = float(np.abs(codebook).max())
    return peak / ((1 << (value_bits - 1)) - 1) if peak > 0 else 1.0


def _quantize_conv(spec: ConvSpec, lw: LayerWeights, s_in: float, s_out: float, index_bits: int,
                   value_bits: int, input_mean=None) -> QConv:
    s_w = _value_scale(lw.codebook, value_bits)
    limit = (1 << (value_bits - 1)) - 1
    cb_int = np.clip(np.rint(lw.codebook.astype(np.float64) / s_w), -limit, limit).astype(np.int32)
    cb = np.zeros(1 << index_bits, np.int32)
    if len(cb_int) > len(cb):
        raise QuantizationError(f"layer {spec.name}: {len(cb_int)}-entry codebook does not fit "
                                f"{index_bits}-bit indices")
    cb[:len(cb_int)] = cb_int
    s_acc = s_in * s_w
    bias = lw.bias.astype(np.float64) / s_acc
    if input_mean is not None:
        # The image enters as raw pixels p; the network wants (p - mean) / std. With the input
        # scale 1/std, sum w*(p - mean) = sum w*p - sum w*mean: the mean folds into the bias.
        w_int = spec.dense(cb[lw.indices].astype(np.float64))
        mean = np.broadcast_to(np.asarray(input_mean, np.float64), (spec.in_channels,))
        bias -= np.einsum("ockl,c->o", w_int, mean)
    bias_int = np.rint(bias)
    if np.abs(bias_int).max(initial=0) > nx.ACC_MAX:
        raise QuantizationError(f"layer {spec.name}: bias does not fit the {nx.ACC_BITS}-bit "
                                "accumulator at this scale; recalibrate with more images")
    mult, shift = nx.requant_params(s_acc / s_out) if spec.relu else (0, 0)
    return QConv(spec, index_bits, value_bits, cb, lw.indices.astype(np.uint8), bias_int.astype(
        np.int32), mult, shift)


def _quantize_add(s_a: float, s_b: float, s_y: float) -> QAdd:
    """Two ratios on one shift: normalise the larger multiplier to MULT_BITS bits."""
    ra, rb = s_a / s_y, s_b / s_y
    m, shift = nx.requant_params(max(ra, rb))
    scale = 1 << shift
    return QAdd(int(round(ra * scale)), int(round(rb * scale)), shift)


# ---- files ----------------------------------------------------------------------------------

def save_quantized(q: QuantizedModel, path: str | Path) -> None:
    import json
    arrays = {"network": np.frombuffer(q.network.to_json().encode(), np.uint8),
              "meta": np.frombuffer(json.dumps({
                  "index_bits": q.index_bits, "value_bits": q.value_bits, "scales": q.scales,
                  "info": q.info,
                  "convs": {n: [c.mult, c.shift] for n, c in q.convs.items()},
                  "adds": {n: [a.mult_a, a.mult_b, a.shift] for n, a in q.adds.items()},
              }).encode(), np.uint8)}
    for n, c in q.convs.items():
        arrays[f"{n}:codebook"], arrays[f"{n}:indices"], arrays[f"{n}:bias"] = (
            c.codebook, c.indices, c.bias)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_quantized(path: str | Path) -> QuantizedModel:
    import json
    try:
        with np.load(path) as z:
            net = Network.from_json(bytes(z["network"]).decode())
            meta = json.loads(bytes(z["meta"]).decode())
            convs = {}
            for spec in net.convs():
                m, s = meta["convs"][spec.name]
                convs[spec.name] = QConv(spec, meta["index_bits"], meta["value_bits"],
                                         z[f"{spec.name}:codebook"], z[f"{spec.name}:indices"],
                                         z[f"{spec.name}:bias"], m, s)
    except (KeyError, ValueError, OSError) as e:
        raise ModelFormatError(f"{path}: not a quantized model written by sqz ({e})") from e
    adds = {n: QAdd(*v) for n, v in meta["adds"].items()}
    return QuantizedModel(net, meta["index_bits"], meta["value_bits"], convs, adds,
                          meta["scales"], meta["info"])
