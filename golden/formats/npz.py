"""The project's own model file, ``.npz``: the network description (JSON) and, per
convolution, the codebook, dense indices and bias arrays as they are held in golden.model."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..model import LayerWeights, Model, ModelFormatError
from ..network import Network

__all__ = ["save_npz", "load_npz"]


def save_npz(model: Model, path: str | Path) -> None:
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


def load_npz(path: str | Path) -> Model:
    """The project's own ``.npz`` (``save_npz``)."""
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
