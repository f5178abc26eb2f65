"""Trained quantisation without labels: fine-tune each layer's shared values by distillation.

Deep Compression fine-tunes the shared values of a weight-shared network: the gradient of a
shared value is the sum of the gradients of every weight that uses it. Here the labels are
replaced by a teacher, the float model the compression started from: on unlabelled photos
(random crops and flips of the folder's images), the student (the compressed model, whose only
trainable parameters are the codebooks, entry 0 pinned at 0.0 so pruned weights stay pruned)
learns to match the teacher's output distribution (KL divergence). Indices, biases and the
pruning mask do not move: the file keeps its size.

Needs the optional PyTorch extra. Deterministic for a given seed on one thread count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .model import LayerWeights, Model
from .torch_net import require_torch, torch_module

__all__ = ["finetune_codebooks", "load_training_images", "centre_crops"]


def load_training_images(folder: str | Path, network, limit: int = 0) -> list[np.ndarray]:
    """Every image in ``folder`` (JPEG/PNG), resized so its shorter side is the network's
    resize size, as uint8 (C, H, W) in the network's channel order: crops come later."""
    from PIL import Image

    from .preprocess import prepare_image
    spec = network.input
    paths = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if limit:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f"{folder}: no JPEG or PNG images to fine-tune on")
    images = []
    for p in paths:
        with Image.open(p) as img:
            images.append(prepare_image(img, spec, crop=False))
    return images


def _crops(rng, images, spec, count):
    """``count`` random (crop, flip) views, as the float network's input batch."""
    from .preprocess import float_input
    out = np.empty((count, spec.channels, spec.height, spec.width), np.float32)
    for i in range(count):
        img = images[int(rng.integers(len(images)))]
        _, h, w = img.shape
        y = int(rng.integers(0, h - spec.height + 1))
        x = int(rng.integers(0, w - spec.width + 1))
        view = img[:, y:y + spec.height, x:x + spec.width]
        if rng.random() < 0.5:
            view = view[:, :, ::-1]
        out[i] = float_input(np.ascontiguousarray(view), spec)
    return out


def centre_crops(images: list[np.ndarray], spec) -> np.ndarray:
    """The centre crop of each image at the network's input size, as the float input batch."""
    from .preprocess import float_input
    out = np.empty((len(images), spec.channels, spec.height, spec.width), np.float32)
    for i, img in enumerate(images):
        _, h, w = img.shape
        y, x = (h - spec.height) // 2, (w - spec.width) // 2
        out[i] = float_input(np.ascontiguousarray(img[:, y:y + spec.height, x:x + spec.width]),
                             spec)
    return out


def _straight_through(torch, clips: dict[str, float]):
    """The activation hook of torch_net.torch_module quantising each calibrated tensor to
    ACT_BITS unsigned bits: the forward value is the integer path's, the gradient that of
    ``clamp(x, 0, clip)`` (straight-through rounding)."""
    from . import numerics as nx

    def quantise(name, x):
        if name not in clips:
            return x
        step = clips[name] / nx.ACT_MAX
        y = torch.clamp(x, 0.0, clips[name])
        return y + (torch.round(y / step) * step - y).detach()
    return quantise


def finetune_codebooks(student: Model, teacher: Model, images: list[np.ndarray],
                       steps: int = 300, batch: int = 16, lr: float = 1e-4,
                       temperature: float = 1.0, seed: int = 0, progress=None,
                       validation: list[np.ndarray] | None = None, check_every: int = 25,
                       report: dict | None = None,
                       clips: dict[str, float] | None = None) -> Model:
    """Adam on the codebooks of ``student`` against ``teacher``'s outputs; returns the model
    with the fine-tuned codebooks.

    With ``validation`` images, the student's KL divergence from the teacher on their centre
    crops is measured before the first step and every ``check_every`` steps, and the codebooks
    of the lowest are returned: fine-tuning never ends worse, on its own validation images,
    than where it started. ``report``, if given, receives {"start_kl", "best_kl", "best_step",
    "history": [(step, kl), ...]} (step 0: the start).

    With ``clips`` (activation clips by tensor, golden.quantize.calibrate's), the student runs
    through the integer path's activation quantisation, ``min(round(x / s), ACT_MAX) * s`` with
    ``s = clip / ACT_MAX``, its gradient passed straight through (the rounding counts as the
    identity, the clip as a clip): the shared values learn to make up for the 8-bit
    activations as well as for the weight sharing."""
    torch = require_torch()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = student.network
    spec = net.input

    codebooks = {n: torch.nn.Parameter(torch.tensor(lw.codebook[1:], dtype=torch.float32))
                 for n, lw in student.layers.items()}
    indices = {n: torch.tensor(lw.indices.astype(np.int64)) for n, lw in student.layers.items()}
    zero = torch.zeros(1)

    def shared_weight(name, conv):
        table = torch.cat([zero, codebooks[name]])          # entry 0 stays 0.0: pruned
        return table[indices[name]]

    s_net = torch_module(net, shared_weight, weights=student.float_weights(),
                         activation=_straight_through(torch, clips) if clips else None)
    t_net = torch_module(net, weights=teacher.float_weights())
    for p in (*s_net.parameters(), *t_net.parameters()):
        p.requires_grad_(False)
    t_net.eval()
    s_net.eval()

    def kl(x, target):
        logp = torch.log_softmax(s_net(x) / temperature, dim=1)
        return torch.nn.functional.kl_div(logp, target, log_target=True, reduction="batchmean")

    held = None
    if validation:
        held = torch.from_numpy(centre_crops(validation, spec))
        with torch.no_grad():
            held_target = torch.log_softmax(t_net(held) / temperature, dim=1)
    history = []

    best: list = [0, {n: c.detach().clone() for n, c in codebooks.items()}]   # step, values

    def check(step):
        with torch.no_grad():
            loss = float(kl(held, held_target))
        if history and loss < min(h for _, h in history):
            best[:] = [step, {n: c.detach().clone() for n, c in codebooks.items()}]
        history.append((step, loss))

    if held is not None:
        check(0)
    opt = torch.optim.Adam(codebooks.values(), lr=lr)
    for step in range(steps):
        x = torch.from_numpy(_crops(rng, images, spec, batch))
        with torch.no_grad():
            target = torch.log_softmax(t_net(x) / temperature, dim=1)
        loss = kl(x, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step, float(loss.detach()))
        if held is not None and ((step + 1) % check_every == 0 or step + 1 == steps):
            check(step + 1)
    if held is not None:
        chosen = best[1]
        if report is not None:
            report.update({"start_kl": history[0][1], "best_kl": min(h for _, h in history),
                           "best_step": best[0], "history": history})
    else:
        chosen = {n: c.detach() for n, c in codebooks.items()}
    layers = {}
    for n, lw in student.layers.items():
        cb = np.concatenate([[0.0], chosen[n].numpy()]).astype(np.float32)
        # A value tuned onto exactly 0.0 would alias the pruned entry: nudge it off.
        cb[1:][cb[1:] == 0.0] = np.float32(np.finfo(np.float32).tiny)
        layers[n] = LayerWeights(cb, lw.indices, lw.bias, lw.stored, shared=True)
    return Model(net, layers, student.source).check()
