"""scikit-learn's bundled handwritten digits as the default model's data, and the demo.

The 8x8 digits (ink 0..16) become uint8 16x16 images: scaled to 0..255 and upsampled bilinearly,
the same path any user image takes (golden.preprocess with the digits network's InputSpec).
The split is fixed (seeded), so the shipped model's held-out digits are never trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .model import Model
from .network import Network, digits_net

__all__ = ["load_digits_split", "calibration_set", "demo"]

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _to_image(d8: np.ndarray) -> np.ndarray:
    from .preprocess import prepare_image
    img = Image.fromarray(np.rint(d8 * (255.0 / 16.0)).astype(np.uint8), mode="L")
    return prepare_image(img, digits_net().input)


def load_digits_split():
    """(train_x, train_y, test_x, test_y): uint8 (N, 1, 16, 16) images and int labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.stack([_to_image(im) for im in d.images])
    y = d.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = int(round(len(x) * TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def train(net: Network, epochs: int = 40, seed: int = 0, lr: float = 3e-3, batch: int = 32,
          log=print) -> Model:
    """Adam with a one-cycle learning-rate schedule, cross-entropy, seeded, one CPU thread."""
    from .torch_net import require_torch, torch_module
    torch = require_torch()
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    train_x, train_y, _, _ = load_digits_split()
    x = torch.tensor(train_x, dtype=torch.float32) / 255.0     # the network's input std is 255
    y = torch.tensor(train_y)
    m = torch_module(net)
    steps = epochs * ((len(x) + batch - 1) // batch)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for epoch in range(epochs):
        m.train()
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if (epoch + 1) % 10 == 0:
            log(f"epoch {epoch + 1}: loss {total / len(x):.4f}")
    return Model.from_float(net, m.weights(), "digits (trained by tools/train_digits.py)")


def calibration_set(count: int = 10) -> list[np.ndarray]:
    """The first ``count`` training digits: calibration never sees the held-out ones."""
    train_x, _, _, _ = load_digits_split()
    return [train_x[i] for i in range(count)]


def accuracy(model, bits: str, value_bits: int | None = None) -> float:
    """Held-out accuracy of ``model`` on the float path or a quantised one."""
    from . import numerics as nx
    from .engine import Golden, top_k
    from .preprocess import float_input
    from .quantize import quantize
    from .reference_float import forward_float
    _, _, test_x, test_y = load_digits_split()
    if bits == "float":
        w = model.float_weights()
        pred = [int(np.argmax(forward_float(model.network, w, float_input(x, model.network.input))))
                for x in test_x]
    else:
        g = Golden(quantize(model, calibration_set(), int(bits),
                            value_bits or nx.DEFAULT_VALUE_BITS))
        pred = [int(top_k(g(x), 1)[0]) for x in test_x]
    return float(np.mean(np.array(pred) == test_y))


def demo(model_path: str | Path, image: str | None = None, count: int = 8, classify=None,
         where: str = "golden model") -> int:
    """Classify held-out digits with ``classify(pixels) -> logits`` (default: the golden
    model); a classifier other than golden is checked against it on every digit."""
    from . import numerics as nx
    from .engine import Golden, top_k
    from .formats import load_model
    from .preprocess import load_image
    from .quantize import quantize
    model = load_model(model_path)
    q = quantize(model, calibration_set(), 8, nx.DEFAULT_VALUE_BITS)
    g = Golden(q)
    run = classify or g
    _, _, test_x, test_y = load_digits_split()
    print(f"{model.network.name}: {model.parameter_count:,} parameters, 8-bit weights, "
          f"{q.value_bits}-bit codebook values, uint8 activations ({where})")
    right = exact = 0
    for x, y in zip(test_x[:count], test_y[:count]):
        logits = run(x)
        exact += int(np.array_equal(logits, g(x)))
        order = top_k(logits, 3)
        right += int(order[0] == y)
        art = "".join(" .:-=+*#%@"[min(9, v // 26)] for v in x[0, ::2, ::2].ravel())
        rows = [art[i:i + 8] for i in range(0, 64, 8)]
        print(f"held-out digit, label {y}: top-3 " + ", ".join(
            f"{c} ({logits[c]})" for c in order) + ("" if order[0] == y else "   <- miss"))
        for r in rows:
            print("    " + r)
    print(f"{right}/{count} held-out digits classified correctly")
    if classify is not None:
        print(f"{exact}/{count} equal to the golden model in every output byte")
    if image:
        x = load_image(image, model.network.input)
        if x.mean() > 127:   # dark ink on light paper: the digits data is light ink on dark
            x = 255 - x
        order = top_k(run(x), 3)
        print(f"{image}: top-3 " + ", ".join(str(c) for c in order))
    return 0 if exact == count or classify is None else 1
