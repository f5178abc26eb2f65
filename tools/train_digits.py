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

from golden.digits import accuracy, train  # noqa: E402
from golden.formats import save_model  # noqa: E402
from golden.network import digits_net  # noqa: E402


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
