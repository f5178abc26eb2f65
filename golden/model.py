"""Model files: a network description plus, per convolution, weights and bias.

Weights are held one way only, as a *codebook* and a dense tensor of *indices* into it (weight
sharing, Deep Compression's form). A model that comes with plain float weights (ONNX, the digits
model) gets a uniform codebook, since plain b-bit fixed point is the special case of a codebook
whose values are evenly spaced; so there is a single weight path for golden, hw and the driver.

The data types only: the files are read and written by golden.formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .network import Network

__all__ = ["LayerWeights", "Model", "ModelFormatError", "uniform_codebook", "random_float_model"]


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


def random_float_model(network: Network, seed: int = 0) -> Model:
    """A float Model of ``network`` with seeded random weights (He-scaled: normal with variance
    2 / fan-in) and small biases: the stand-in where no trained weights exist."""
    rng = np.random.default_rng(seed)
    return Model.from_float(network, {
        c.name: (rng.normal(0, np.sqrt(2 / c.fan_in), c.weight_shape).astype(np.float32),
                 rng.normal(0, 0.05, c.out_channels).astype(np.float32))
        for c in network.convs()}, f"{network.name} (seeded random weights, seed {seed})")
