"""Train the shipped default model: a small SqueezeNet on scikit-learn's handwritten digits.

Needs the optional PyTorch extra (pip install -e .[train]). Deterministic on CPU (seeded, one
thread). Writes models/digits-squeezenet.npz with float weights; the integer paths quantise it.

    python tools/train_digits.py [--epochs 40] [--out models/digits-squeezenet.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.digits import accuracy, load_digits_split  # noqa: E402
from golden.model import Model, save_model  # noqa: E402
from golden.network import Network, digits_net  # noqa: E402
from golden.torch_net import torch_module  # noqa: E402


def train(net: Network, epochs: int = 40, seed: int = 0, lr: float = 3e-3, batch: int = 32,
          log=print) -> Model:
    """Adam with a one-cycle learning-rate schedule, cross-entropy, seeded, one CPU thread."""
    import torch
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] /
                                          "models/digits-squeezenet.npz"))
    args = ap.parse_args()
    model = train(digits_net(), args.epochs, args.seed)
    save_model(model, args.out)
    print(f"wrote {args.out}")
    for bits in ("float", "8", "6"):
        print(f"held-out accuracy, {bits}: {100 * accuracy(model, bits):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
