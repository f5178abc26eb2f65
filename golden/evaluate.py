"""Accuracy of a model on a folder of labelled photos, for the float, 8-bit and 6-bit paths."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .engine import Golden, top_k
from .model import Model
from .preprocess import (IMAGE_SUFFIXES, class_folders, float_input, list_class_folder_images,
                         list_labelled_images, load_image, read_synsets)
from .quantize import (CALIBRATION_IMAGES, DEFAULT_ACTIVATION_REFIT, DEFAULT_BIAS_CORRECTION,
                       DEFAULT_RULE, QuantizedModel, quantize)
from .reference_float import forward_float

__all__ = ["calibration_images", "evaluate", "default_synsets"]


def default_synsets(folder: Path) -> Path:
    """``synsets.txt`` beside the photos, else the shared sample's."""
    for candidate in (folder / "synsets.txt",
                      Path(__file__).resolve().parents[2] / "shared/imagenet-sample/synsets.txt"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no synsets.txt in {folder}; pass --synsets FILE "
                            "(lines 'index wnid name', index order = the model's outputs)")


def calibration_images(folder: Path, spec, count: int) -> tuple[list[np.ndarray], list[str]]:
    """``count`` photos spread evenly over the sorted folder (over every class folder's, in
    the class-folder layout): deterministic."""
    if class_folders(folder):
        files = [p for p, _ in list_class_folder_images(folder)]
    else:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no calibration images in {folder}")
    pick = [files[int(i * len(files) / count)] for i in range(min(count, len(files)))]
    return [load_image(p, spec) for p in pick], [p.name for p in pick]


def kl_divergence(reference: np.ndarray, other: np.ndarray) -> float:
    """KL(softmax(reference) || softmax(other)) in nats, both real-valued logits."""
    def log_softmax(z):
        z = np.asarray(z, np.float64) - np.max(z)
        return z - np.log(np.exp(z).sum())
    lp, lq = log_softmax(reference), log_softmax(other)
    return float((np.exp(lp) * (lp - lq)).sum())


def _scorers(net, weights, golden, batch: int):
    """(float logits, integer logits) of a batch of uint8 photos (N, C, H, W). The integer path
    photo by photo through the golden model (its Numba kernels beat a batched float64 PyTorch
    convolution at 227 x 227 on a CPU). The float path, with PyTorch (the 'train' extra) and
    ``batch`` > 1, the whole batch at once in float64, checked on the first photos against
    golden.reference_float before it is trusted; otherwise photo by photo."""
    def float_each(pixels):
        return np.stack([forward_float(net, weights, float_input(x, net.input)) for x in pixels])

    def int_each(pixels):
        return np.stack([golden(x) for x in pixels])

    if batch <= 1 or weights is None:
        return float_each, int_each
    try:
        import torch

        from .torch_net import torch_module
    except ImportError:
        return float_each, int_each
    mean = np.asarray(net.input.mean, np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(net.input.std, np.float64).reshape(1, -1, 1, 1)
    module = torch_module(net, weights=weights).double().eval()
    checked = []

    def float_batch(pixels):
        with torch.no_grad():
            got = module(torch.tensor((pixels - mean) / std)).numpy()
        if not checked:
            want = float_each(pixels[:2])
            if not np.allclose(got[:2], want, rtol=1e-4, atol=1e-4 * np.abs(want).max()):
                raise AssertionError("the batched float network differs from "
                                     "golden.reference_float on the first photos")
            checked.append(True)
        return got

    return float_batch, int_each


def evaluate(model: Model | QuantizedModel, folder: str | Path, bits: str = "8",
             synsets: str | Path | None = None, calib_dir: str | Path | None = None,
             calib_count: int = CALIBRATION_IMAGES, value_bits: int | None = None, limit: int = 0,
             progress: bool = True, refit: bool = True, batch: int = 16,
             rule: str = DEFAULT_RULE, final_rule: str | None = None,
             bias_correction: bool = DEFAULT_BIAS_CORRECTION,
             activation_refit: bool = DEFAULT_ACTIVATION_REFIT,
             reference: Model | None = None) -> dict:
    """Top-1/top-5 over every ``<wnid>_<name>`` photo in ``folder``, or every photo of its
    class folders (``folder/<class>/*.jpg``, classes in sorted folder order: no synsets).

    ``bits`` is "float" (the float reference), or an index width ("8", "6", "4"): the model is
    quantised on ``calib_count`` photos of ``calib_dir`` (default: the evaluated folder) and run
    through the golden model. Beside top-1 and top-5, how close the integer path is to the
    float reference on the same photos, far less noisy than a difference of top-1s:
    ``agree_top1_with_float`` (the same top class), ``agree_top5_with_float`` (the mean overlap
    of the two top-5 sets, 0..1) and ``mean_kl_to_float`` (the mean KL divergence, in nats, of
    the integer logits' softmax from the float's: KL(float || integer)). The float path is
    ``model``'s own float weights, or ``reference``'s (the same network: for a compressed
    model, the float model it was compressed from, so that the figures count what weight
    sharing lost too). Photos go ``batch`` at a time through both paths where PyTorch is
    installed (``_scorers``).
    """
    folder = Path(folder)
    net = model.network
    classes = class_folders(folder)
    if classes:
        if len(classes) != net.classes:
            raise ValueError(f"{folder}: {len(classes)} class folders for a {net.classes}-class "
                             "model")
        images = list_class_folder_images(folder)
    else:
        wnids = [w for w, _ in read_synsets(synsets or default_synsets(folder))]
        if len(wnids) != net.classes:
            raise ValueError(f"{len(wnids)} synsets for a {net.classes}-class model")
        images = list_labelled_images(folder, wnids)
    if limit:
        images = images[:limit]
    report: dict = {"model": getattr(model, "source", "") or net.name, "bits": bits}
    golden = None
    if isinstance(model, QuantizedModel):
        golden, fmodel = Golden(model), None
    else:
        fmodel = model
        if bits != "float":
            from . import numerics as nx
            calib, names = calibration_images(Path(calib_dir or folder), net.input, calib_count)
            t = time.perf_counter()
            q = quantize(model, calib, int(bits), value_bits or nx.DEFAULT_VALUE_BITS,
                         refit=refit, rule=rule, final_rule=final_rule,
                         bias_correction=bias_correction,
                         activation_refit=activation_refit)
            report["calibration"] = {"images": names, "seconds": time.perf_counter() - t,
                                     **q.info}
            golden = Golden(q)
    if reference is not None:
        if bits == "float":
            raise ValueError("a float reference is for an integer path (--bits 8, 6 or 4); "
                             "--bits float scores the model's own float weights")
        shapes = [c.weight_shape for c in net.convs()]
        if [c.weight_shape for c in reference.network.convs()] != shapes or \
                reference.network.shapes() != net.shapes():
            raise ValueError(f"the float reference ({reference.network.name}) is not the "
                             f"network of the evaluated model ({net.name}); pass the float "
                             "model it was compressed from")
        fmodel = reference
        report["float_reference"] = getattr(reference, "source", "") or reference.network.name
    weights = fmodel.float_weights() if fmodel is not None else None
    score_float, score_int = _scorers(net, weights, golden, batch)
    top1 = top5 = agree = 0
    overlap = kl = 0.0
    scale = golden.q.logits_scale() if golden is not None else None
    seconds = 0.0
    bar = tqdm(total=len(images), desc=f"eval {bits}", unit="img", disable=not progress)
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        pixels = np.stack([load_image(path, net.input) for path, _ in chunk])
        t = time.perf_counter()
        ints = score_int(pixels) if golden is not None else None
        floats = score_float(pixels) if weights is not None else None
        seconds += time.perf_counter() - t
        for i, (_, label) in enumerate(chunk):
            order = top_k(ints[i] if ints is not None else floats[i])
            if ints is not None and floats is not None:
                ref = top_k(floats[i])
                agree += int(ref[0] == order[0])
                overlap += len(set(ref.tolist()) & set(order.tolist())) / len(ref)
                kl += kl_divergence(floats[i], ints[i].astype(np.float64) * scale)
            top1 += int(order[0] == label)
            top5 += int(label in order[:5])
        bar.update(len(chunk))
    bar.close()
    n = len(images)
    compared = golden is not None and weights is not None
    same = 1.0 if bits == "float" else None
    report.update({"n": n, "top1": top1 / n, "top5": top5 / n,
                   "agree_top1_with_float": agree / n if compared else same,
                   "agree_top5_with_float": overlap / n if compared else same,
                   "mean_kl_to_float": kl / n if compared else (0.0 if same else None),
                   "images_per_s": n / seconds if seconds else 0.0})
    return report
