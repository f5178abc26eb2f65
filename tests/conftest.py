"""Shared fixtures: the authors' model and photos from ../shared (skipped outside CI if absent)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
AUTHORS_NET = SHARED / "models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net"
IMAGENET_SAMPLE = SHARED / "imagenet-sample"


def random_float_model(net, seed=0):
    """A float Model of ``net`` with seeded random weights (golden.model.random_float_model)."""
    from golden.model import random_float_model as make
    return make(net, seed)


def shared_file(path: Path) -> Path:
    """A file from ../shared: missing is a failure in CI, a skip elsewhere."""
    if not path.exists():
        msg = (f"{path} is missing: it comes from ../shared (see ../shared/README.md; the model is "
               "songhan/SqueezeNet-Deep-Compression's compressed_SqueezeNet.net)")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def authors_model():
    from golden.formats.deep_compression import read_deep_compression
    return read_deep_compression(shared_file(AUTHORS_NET))


@pytest.fixture(scope="session")
def sample_photos():
    shared_file(IMAGENET_SAMPLE / "synsets.txt")
    return sorted(IMAGENET_SAMPLE.glob("*.JPEG"))


@pytest.fixture(scope="session")
def authors_quantized(authors_model, sample_photos):
    from golden.preprocess import load_image
    from golden.quantize import quantize
    calib = [load_image(p, authors_model.network.input) for p in sample_photos[::100]]
    return quantize(authors_model, calib, 8)
