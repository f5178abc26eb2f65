"""CIFAR-10 photos for the variants study, and resumable training of a network on them.

The photos come from ``../shared/cifar10/cifar10-jpeg.tar.gz`` (``cifar10/train/<class>/*.jpg``
and ``cifar10/test/<class>/*.jpg``), unpacked once into a build folder and decoded once into a
cached array file. Training never sees the test photos: a fixed, class-balanced validation split
of 500 photos per class comes out of the training photos, and everything chosen during training
(nothing is tuned per epoch) is read off that split.

Training (the optional PyTorch extra) is a fast-converging CPU recipe: SGD with Nesterov
momentum, a one-cycle learning rate, label smoothing, random crops of the photo padded by 4 and
horizontal flips, BatchNorm after every convolution but the classifier (folded into the
convolutions when the model is written, so the integer paths see the plain network). Each epoch
ends with a checkpoint, so an interrupted run continues from its last finished epoch.
"""

from __future__ import annotations

import json
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .model import Model
from .network import Network

__all__ = ["CLASSES", "TrainConfig", "load_cifar10", "extract", "train_resumable",
           "float_accuracy", "VALIDATION_PER_CLASS"]

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
VALIDATION_PER_CLASS = 500
SPLIT_SEED = 0


def extract(archive: Path, build: Path) -> Path:
    """Unpack the archive into ``build`` once; returns the ``cifar10`` folder in it."""
    root = build / "cifar10"
    if (root / "test").is_dir() and (root / "train").is_dir() and (build / ".extracted").exists():
        return root
    if not archive.exists():
        raise FileNotFoundError(f"{archive} not found: the CIFAR-10 photos come from "
                                "../shared/cifar10/cifar10-jpeg.tar.gz (see ../shared/README.md)")
    build.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(build, filter="data")
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"{archive} has no cifar10/train folder")
    (build / ".extracted").touch()
    return root


def _decode(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((folder / name).glob("*.jpg"))
        if not files:
            raise FileNotFoundError(f"{folder / name}: no photos")
        for f in files:
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB"), np.uint8)
            if a.shape != (32, 32, 3):
                raise ValueError(f"{f}: a CIFAR-10 photo is 32x32, this one is {a.shape[:2]}")
            xs.append(a.transpose(2, 0, 1))
            ys.append(label)
    return np.stack(xs), np.asarray(ys, np.int64)


def load_cifar10(archive: Path, build: Path) -> dict[str, np.ndarray]:
    """``train_x/train_y`` (45,000), ``val_x/val_y`` (5,000, out of the training photos) and
    ``test_x/test_y`` (the 5,000 test photos): uint8 (N, 3, 32, 32) RGB and int64 labels."""
    cache = build / "cifar10-arrays.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    root = extract(archive, build)
    tx, ty = _decode(root / "train")
    test_x, test_y = _decode(root / "test")
    rng = np.random.default_rng(SPLIT_SEED)
    val = np.concatenate([rng.permutation(np.flatnonzero(ty == c))[:VALIDATION_PER_CLASS]
                          for c in range(len(CLASSES))])
    keep = np.setdiff1d(np.arange(len(tx)), val)
    out = {"train_x": tx[keep], "train_y": ty[keep], "val_x": tx[np.sort(val)],
           "val_y": ty[np.sort(val)], "test_x": test_x, "test_y": test_y}
    np.savez(cache, **out)
    return out


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 24
    batch: int = 128
    lr: float = 0.1               # the one-cycle peak
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    dropout: float = 0.5          # before the classifier, as the paper's after fire9
    crop_pad: int = 4
    seed: int = 0
    threads: int = 2


def _augment(torch, x, pad: int, gen):
    """Random crop of the zero-padded photo and a random horizontal flip, per photo."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(32)[None, :])            # (n, 32)
    cols = (dx[:, None] + torch.arange(32)[None, :])
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def float_accuracy(module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    """Top-1 of a torch module (eval mode) on uint8 photos, input scaled by 1/255."""
    import torch
    module.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.tensor(x[i:i + batch], dtype=torch.float32).div_(255.0)
            xb = xb.contiguous(memory_format=torch.channels_last)
            right += int((module(xb).argmax(1).numpy() == y[i:i + batch]).sum())
    return right / len(x)


def train_resumable(net: Network, data: dict[str, np.ndarray], cfg: TrainConfig, folder: Path,
                    log=print, progress: bool = True) -> tuple[Model, dict]:
    """Train ``net`` on ``data['train_*']`` into ``folder``; returns the float model (BatchNorm
    folded) and the history. ``folder/checkpoint.pt`` holds the state after the last finished
    epoch, ``folder/history.json`` each epoch's loss, validation top-1 and seconds, and
    ``folder/float.npz`` the finished model; a finished folder is returned as it is."""
    from .formats import load_model, save_model
    from .torch_net import require_torch, torch_module
    torch = require_torch()
    folder.mkdir(parents=True, exist_ok=True)
    done, hist_path = folder / "float.npz", folder / "history.json"
    if done.exists() and hist_path.exists():
        return load_model(done), json.loads(hist_path.read_text())
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    m = torch_module(net, batchnorm=True, dropout=cfg.dropout).to(memory_format=torch.channels_last)
    x_all = torch.tensor(data["train_x"])
    y_all = torch.tensor(data["train_y"])
    steps_per_epoch = (len(x_all) + cfg.batch - 1) // cfg.batch
    decay, no_decay = [], []
    for name, p in m.named_parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.25)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = {"config": asdict(cfg), "network": net.name, "epochs": []}
    ckpt = folder / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["config"] != asdict(cfg):
            raise ValueError(f"{ckpt} was written with another training configuration "
                             f"({state['config']}); delete {folder} to start again")
        m.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        history = state["history"]
        log(f"{net.name}: resuming after epoch {len(history['epochs'])}")
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    for epoch in range(len(history["epochs"]), cfg.epochs):
        t0 = time.time()
        m.train()
        perm = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=steps_per_epoch, desc=f"{net.name} epoch {epoch + 1}/{cfg.epochs}",
                       unit="batch", leave=False)
        for i in range(0, len(x_all), cfg.batch):
            idx = perm[i:i + cfg.batch]
            xb = _augment(torch, x_all[idx].float().div_(255.0), cfg.crop_pad, gen)
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(m(xb), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        val = float_accuracy(m, data["val_x"], data["val_y"])
        history["epochs"].append({"epoch": epoch + 1, "loss": total / len(x_all),
                                  "val_top1": val, "seconds": time.time() - t0})
        log(f"{net.name} epoch {epoch + 1}/{cfg.epochs}: loss {total / len(x_all):.4f}, "
            f"validation top-1 {100 * val:.2f}%, {time.time() - t0:.0f} s")
        torch.save({"config": asdict(cfg), "model": m.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "gen": gen.get_state(), "history": history},
                   ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
    model = Model.from_float(net, m.weights(), f"{net.name} (trained on CIFAR-10 by make cifar)")
    save_model(model, done)
    hist_path.write_text(json.dumps(history, indent=1))
    return model, history


def retrain_pruned(model: Model, data: dict[str, np.ndarray], epochs: int = 2, lr: float = 0.01,
                   batch: int = 128, seed: int = 0, threads: int = 2, log=print) -> Model:
    """Deep Compression's retraining after pruning: train the surviving weights (the pruned
    ones held at zero by a mask after every step) with the same augmentation and loss as
    ``train_resumable``, a cosine learning rate from ``lr`` to zero, no BatchNorm (the model's
    is folded). Returns the float model with the same zeros."""
    from .torch_net import require_torch, torch_module
    torch = require_torch()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    net = model.network
    m = torch_module(net, weights=model.float_weights()).to(memory_format=torch.channels_last)
    masks = {name: m.convs[name.replace("/", "__")].weight.detach() != 0
             for name in model.layers}
    x_all, y_all = torch.tensor(data["train_x"]), torch.tensor(data["train_y"])
    steps = epochs * ((len(x_all) + batch - 1) // batch)
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(epochs):
        m.train()
        perm = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(x_all), batch):
            idx = perm[i:i + batch]
            xb = _augment(torch, x_all[idx].float().div_(255.0), 4, gen)
            loss = loss_fn(m(xb.contiguous(memory_format=torch.channels_last)), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for name, mask in masks.items():
                    m.convs[name.replace("/", "__")].weight.mul_(mask)
        log(f"{net.name} pruned, retraining epoch {epoch + 1}/{epochs}: validation top-1 "
            f"{100 * float_accuracy(m, data['val_x'], data['val_y']):.2f}%")
    return Model.from_float(net, m.weights(), model.source + ", pruned and retrained")


def shipped_model(models: Path) -> Path:
    """The one ``models/cifar10-<variant>.sqz`` (make cifar writes it)."""
    found = sorted(models.glob("cifar10-*.sqz"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one shipped CIFAR-10 model models/cifar10-<variant>.sqz "
                                f"in {models}, found {len(found)}; make cifar writes it")
    return found[0]


def demo_photos(folder: Path) -> list[tuple[Path, int]]:
    """The shipped CIFAR-10 test photos, ``<class>_<NNNN>.jpg``, with their labels."""
    out = []
    for p in sorted(folder.glob("*.jpg")):
        name = p.name.rsplit("_", 1)[0]
        if name not in CLASSES:
            raise ValueError(f"{p}: the file name must start with a CIFAR-10 class "
                             f"({', '.join(CLASSES)})")
        out.append((p, CLASSES.index(name)))
    if not out:
        raise FileNotFoundError(f"no <class>_<n>.jpg photos in {folder}")
    return out


def demo(model_path: Path, photos: Path, classify=None, where: str = "golden model",
         quantized=None) -> int:
    """Classify the shipped CIFAR-10 photos with ``classify(pixels) -> logits`` (default: the
    golden model), each checked against golden. The 8-bit model is calibrated on these
    photos (a demo has no others; make cifar's figures calibrate on training photos)."""
    from .engine import Golden, top_k
    from .formats import load_model
    from .preprocess import load_image
    from .quantize import quantize
    model = load_model(model_path)
    labelled = demo_photos(photos)
    images = [load_image(p, model.network.input) for p, _ in labelled]
    q = quantized or quantize(model, images, 8)
    g = Golden(q)
    run = classify or g
    print(f"{model.network.name}: {model.parameter_count:,} parameters, {model_path.name} "
          f"({model_path.stat().st_size:,} bytes), 8-bit ({where})")
    right = exact = 0
    for (path, label), x in zip(labelled, images):
        logits = run(x)
        exact += int(np.array_equal(logits, g(x)))
        order = top_k(logits, 3)
        right += int(order[0] == label)
        print(f"{path.name:<22} {CLASSES[label]:<11} top-3 " + ", ".join(
            f"{CLASSES[c]} ({logits[c]})" for c in order) + ("" if order[0] == label else
                                                               "   <- miss"))
    print(f"{right}/{len(images)} CIFAR-10 test photos classified correctly")
    if classify is not None:
        print(f"{exact}/{len(images)} equal to the golden model in every output byte")
    return 0 if exact == len(images) or classify is None else 1
