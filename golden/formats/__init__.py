"""Model files: one ``load_model`` that dispatches on the file type, one ``save_model``.

- ``.npz``: the project's own (golden.formats.npz);
- ``.net``: the authors' Deep Compression file (golden.formats.deep_compression);
- ``.sqz``: the project's packed model (golden.formats.packed);
- ``.onnx``: a float SqueezeNet graph (golden.formats.onnx).

Imports go one way: formats -> compress, model, network; nothing below imports formats.
"""

from __future__ import annotations

from pathlib import Path

from ..model import Model, ModelFormatError

__all__ = ["load_model", "save_model", "ModelFormatError"]


def load_model(path: str | Path) -> Model:
    """Load a model by its file type: ``.net`` (Deep Compression), ``.onnx``, ``.sqz`` (packed)
    or ``.npz`` (anything else is tried as ``.npz``, with an error that lists the types)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".net":
        from .deep_compression import read_deep_compression
        return read_deep_compression(path)
    if suffix == ".onnx":
        from .onnx import import_onnx
        return import_onnx(path)
    if suffix == ".sqz":
        from .packed import read_packed
        return read_packed(path)
    from .npz import load_npz
    return load_npz(path)


def save_model(model: Model, path: str | Path) -> None:
    """Write ``model`` as the project's ``.npz`` (``sqz convert`` writes the other types)."""
    from .npz import save_npz
    save_npz(model, path)
