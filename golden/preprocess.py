"""From a photo file to the uint8 tensor a network takes, and labels of ImageNet-style folders.

The integer paths (golden, hardware) take the uint8 pixels as they are; the float reference
takes ``(pixels - mean) / std``. Both start from the same uint8 tensor, so they see one image.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .network import InputSpec

__all__ = ["ImageError", "load_image", "prepare_image", "float_input", "list_labelled_images",
           "read_synsets"]

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class ImageError(ValueError):
    """An image that cannot be turned into the network's input."""


def prepare_image(img: Image.Image, spec: InputSpec, crop: bool = True) -> np.ndarray:
    """Resize (shorter side to ``spec.resize``, bilinear), centre crop, to uint8 (C, H, W).
    ``crop=False`` keeps the whole resized image (for random crops in fine-tuning)."""
    if spec.channel_order == "GRAY":
        img = img.convert("L")
    else:
        img = img.convert("RGB")
    if spec.resize:
        w, h = img.size
        scale = spec.resize / min(w, h)
        img = img.resize((max(spec.width, round(w * scale)), max(spec.height, round(h * scale))),
                         Image.BILINEAR)
        w, h = img.size
        if crop:
            left, top = (w - spec.width) // 2, (h - spec.height) // 2
            img = img.crop((left, top, left + spec.width, top + spec.height))
    else:
        img = img.resize((spec.width, spec.height), Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[None]
    else:
        a = a.transpose(2, 0, 1)
        if spec.channel_order == "BGR":
            a = a[::-1]
    return np.ascontiguousarray(a)


def load_image(path: str | Path, spec: InputSpec) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            return prepare_image(img, spec)
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"{path}: not a readable image ({e}); give a JPEG, PNG or BMP file") from e


def float_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The float reference's input: ``(pixels - mean) / std`` per channel, float32."""
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    return (pixels.astype(np.float32) - mean) / std


def read_synsets(path: str | Path) -> list[tuple[str, str]]:
    """``synsets.txt``: lines ``index wnid name``; returns [(wnid, name)] in index order."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) >= 2:
            rows.append((int(parts[0]), parts[1], parts[2] if len(parts) > 2 else parts[1]))
    rows.sort()
    return [(wnid, name) for _, wnid, name in rows]


_WNID = re.compile(r"^(n\d{8})_")


def class_folders(folder: str | Path) -> list[Path]:
    """The class folders of a ``DIR/<class>/*.jpg`` layout (torchvision's ImageFolder): its
    subfolders in sorted order, the class index being the position; [] when ``folder``
    holds its photos itself."""
    folder = Path(folder)
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir())


def list_class_folder_images(folder: str | Path) -> list[tuple[Path, int]]:
    """Every image of every class folder (``class_folders``) with its class index, sorted by
    class, then by name."""
    out = [(p, i) for i, d in enumerate(class_folders(folder)) for p in sorted(d.iterdir())
           if p.suffix.lower() in IMAGE_SUFFIXES]
    if not out:
        raise ImageError(f"{folder}: no images found (expected <class>/<name>.jpg files, or "
                         "<wnid>_<name>.JPEG files)")
    return out


def list_labelled_images(folder: str | Path, wnids: list[str]) -> list[tuple[Path, int]]:
    """Every ``<wnid>_<name>.<ext>`` image of ``folder`` with its class index, sorted by name."""
    index = {w: i for i, w in enumerate(wnids)}
    out = []
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        m = _WNID.match(p.name)
        if not m or m.group(1) not in index:
            raise ImageError(f"{p}: file name does not start with a known wnid "
                             "('<wnid>_<name>.JPEG', wnids as in synsets.txt)")
        out.append((p, index[m.group(1)]))
    if not out:
        raise ImageError(f"{folder}: no images found (expected <wnid>_<name>.JPEG files)")
    return out
