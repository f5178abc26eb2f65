"""Model files: a network description plus, per convolution, weights and bias.

Weights are held one way only, as a *codebook* and a dense tensor of *indices* into it (weight
sharing, Deep Compression's form). A model that comes with plain float weights (ONNX, the digits
model) gets a uniform codebook, since plain b-bit fixed point is the special case of a codebook
whose values are evenly spaced; so there is a single weight path for golden, hw and the driver.

Readers: the project's own ``.npz`` (``load_model``/``save_model``), the authors' Deep
Compression ``.net`` (``read_deep_compression``), ONNX (``golden.onnx_io``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .network import Network, squeezenet_v1_0

__all__ = ["LayerWeights", "Model", "ModelFormatError", "load_model", "save_model",
           "read_deep_compression", "uniform_codebook"]


class ModelFormatError(ValueError):
    """A model file that cannot be read as what it claims to be."""


@dataclass
class LayerWeights:
    """Weights of one convolution: ``codebook[indices]`` is the float weight tensor.

    ``codebook[0]`` is 0.0 whenever the layer is pruned, so pruned positions are index 0.
    ``stored`` counts the entries a sparse file stores (``None`` for dense sources).
    ``shared`` is True for a trained shared-weight codebook (Deep Compression) and False for
    plain float weights held exactly as the codebook of their distinct values; quantisation
    re-clusters the former and gives the latter a uniform codebook.
    """

    codebook: np.ndarray            # float32 [entries]
    indices: np.ndarray             # uint8/16/32 [out, in, kh, kw]
    bias: np.ndarray                # float32 [out]
    stored: int | None = None
    shared: bool = True

    @property
    def weights(self) -> np.ndarray:
        return self.codebook[self.indices].astype(np.float32)

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.weights)) / self.indices.size


@dataclass
class Model:
    network: Network
    layers: dict[str, LayerWeights] = field(default_factory=dict)
    source: str = ""

    def check(self) -> "Model":
        """Every convolution of the network has weights of the right shape, and nothing else."""
        expected = {c.name: c for c in self.network.convs()}
        missing = sorted(set(expected) - set(self.layers))
        extra = sorted(set(self.layers) - set(expected))
        if missing or extra:
            raise ModelFormatError(f"{self.source or 'model'}: weights do not match network "
                                   f"{self.network.name}: missing {missing}, unexpected {extra}")
        for name, spec in expected.items():
            lw = self.layers[name]
            if lw.indices.shape != spec.weight_shape or lw.bias.shape != (spec.out_channels,):
                raise ModelFormatError(
                    f"{self.source or 'model'}: layer {name} has weights {lw.indices.shape} and "
                    f"bias {lw.bias.shape}; the network needs {spec.weight_shape} and "
                    f"({spec.out_channels},)")
            if lw.indices.size and int(lw.indices.max()) >= len(lw.codebook):
                raise ModelFormatError(f"{self.source or 'model'}: layer {name} indexes past its "
                                       f"{len(lw.codebook)}-entry codebook")
        return self

    def float_weights(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {n: (lw.weights, lw.bias.astype(np.float32)) for n, lw in self.layers.items()}

    @property
    def parameter_count(self) -> int:
        return sum(lw.indices.size + lw.bias.size for lw in self.layers.values())

    @staticmethod
    def from_float(network: Network, weights: dict[str, tuple[np.ndarray, np.ndarray]],
                   source: str = "") -> "Model":
        """Hold float weights exactly: each layer's codebook is its set of distinct values."""
        layers = {}
        for spec in network.convs():
            w, b = weights[spec.name]
            w = np.asarray(w, np.float32)
            if w.shape != spec.weight_shape:
                raise ModelFormatError(f"{source or 'model'}: layer {spec.name} has weights "
                                       f"{w.shape}; the network needs {spec.weight_shape}")
            values, idx = np.unique(np.concatenate([[0.0], w.ravel()]).astype(np.float32),
                                    return_inverse=True)
            # Put 0.0 first so index 0 means zero, as in a pruned codebook.
            zero = int(np.searchsorted(values, 0.0))
            order = np.concatenate([[zero], np.delete(np.arange(len(values)), zero)])
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            idx = rank[idx[1:]]
            dtype = np.uint8 if len(values) <= 256 else (
                np.uint16 if len(values) <= 65536 else np.uint32)
            layers[spec.name] = LayerWeights(values[order], idx.reshape(w.shape).astype(dtype),
                                             np.asarray(b, np.float32), shared=False)
        return Model(network, layers, source).check()


def uniform_codebook(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric uniform quantiser as a codebook: entry 0 is 0.0, then +k*step and -k*step.

    Entries: 0, +s, -s, +2s, -2s, ... up to 2**bits - 1 of them, with step s chosen so the
    largest magnitude is represented exactly. Zero stays index 0, like a pruned weight.
    """
    levels = (1 << (bits - 1)) - 1
    peak = float(np.abs(w).max()) if w.size else 0.0
    step = peak / levels if peak > 0 else 1.0
    k = np.arange(1, levels + 1, dtype=np.float32)
    codebook = np.zeros(1 << bits, np.float32)
    codebook[1:2 * levels + 1:2] = k * step
    codebook[2:2 * levels + 1:2] = -k * step
    q = np.clip(np.rint(w / step), -levels, levels).astype(np.int32)
    idx = np.where(q > 0, 2 * q - 1, np.where(q < 0, -2 * q, 0))
    dtype = np.uint8 if bits <= 8 else np.uint16
    return codebook, idx.astype(dtype)


# ---- the authors' Deep Compression file -----------------------------------------------------

def read_deep_compression(path: str | Path, network: Network | None = None) -> Model:
    """Read ``compressed_SqueezeNet.net`` (format: ../shared/README.md and docs/NUMERICS.md).

    Layout, little-endian: one uint32 entry count N per convolution (network order), then per
    convolution a 256-entry float32 codebook, one float32 bias per output channel, N code bytes
    and ceil(N/2) gap bytes (4-bit gaps, low nibble first). Entry i lands at flat position
    p(i) = p(i-1) + gap(i) + 1 with p(-1) = -1, in Caffe (out, in, kh, kw) order.
    """
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
        gaps = np.empty(2 * len(packed), np.int64)
        gaps[0::2] = packed & 0x0F
        gaps[1::2] = packed >> 4
        positions = np.cumsum(gaps[:n] + 1) - 1
        if n and positions[-1] >= spec.weight_count:
            raise ModelFormatError(f"{where}: layer {spec.name} places a weight at position "
                                   f"{positions[-1]} of {spec.weight_count}; the file is corrupt")
        if not (np.isfinite(codebook).all() and np.isfinite(bias).all()):
            raise ModelFormatError(f"{where}: layer {spec.name} has non-finite codebook or bias "
                                   "values; the file is corrupt")
        flat = np.zeros(spec.weight_count, np.uint8)
        flat[positions] = codes
        layers[spec.name] = LayerWeights(codebook, flat.reshape(spec.weight_shape), bias, n)
    if offset != len(data):
        raise ModelFormatError(f"{where}: {len(data) - offset} bytes left over after the last "
                               f"layer; this is not a Deep Compression {net.name} file")
    return Model(net, layers, str(path)).check()


# ---- the project's own file -----------------------------------------------------------------

def save_model(model: Model, path: str | Path) -> None:
    arrays = {"network": np.frombuffer(model.network.to_json().encode(), np.uint8)}
    for name, lw in model.layers.items():
        arrays[f"{name}:codebook"] = lw.codebook
        arrays[f"{name}:indices"] = lw.indices
        arrays[f"{name}:bias"] = lw.bias
        arrays[f"{name}:shared"] = np.array(lw.shared)
        if lw.stored is not None:
            arrays[f"{name}:stored"] = np.array(lw.stored)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_model(path: str | Path) -> Model:
    """Load a model by its file type: ``.net`` (Deep Compression), ``.onnx``, ``.sqz`` (packed,
    golden.compress) or ``.npz``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".net":
        return read_deep_compression(path)
    if suffix == ".onnx":
        from .onnx_io import import_onnx
        return import_onnx(path)
    if suffix == ".sqz":
        from .compress import read_packed
        return read_packed(path)
    try:
        with np.load(path) as z:
            if "network" not in z.files:
                raise ModelFormatError(f"{path}: no 'network' entry; not a model saved by sqz")
            network = Network.from_json(bytes(z["network"]).decode())
            layers = {}
            for spec in network.convs():
                key = spec.name
                stored = int(z[f"{key}:stored"]) if f"{key}:stored" in z.files else None
                shared = bool(z[f"{key}:shared"]) if f"{key}:shared" in z.files else True
                layers[key] = LayerWeights(z[f"{key}:codebook"].astype(np.float32),
                                           z[f"{key}:indices"], z[f"{key}:bias"].astype(np.float32),
                                           stored, shared)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        if isinstance(e, ModelFormatError):
            raise
        raise ModelFormatError(f"{path}: cannot read as a model file ({e}); expected .npz written "
                               "by 'sqz', a Deep Compression .net or an .onnx file") from e
    except KeyError as e:
        raise ModelFormatError(f"{path}: missing array {e}; the file is incomplete") from e
    return Model(network, layers, str(path)).check()
