"""Every network of the seeds on the simulated board, checked bit for bit (``make board-networks``).

Trained weights where they exist (the shipped digits and CIFAR-10 models, the CIFAR-10 study's
other variants once ``make cifar`` trained them, the authors' SqueezeNet v1.0 from ../shared),
seeded random weights pruned to half otherwise. Each network is compiled for the board's device
(hw.config.board_config), uploaded to one simulated board (the RTL under Verilator, the SDRAM
model beside it) and run on one photo; its logits are compared with the golden model's and its
cycles with the cycle model's. Writes build/board/networks.json: per network name,
``bit_exact``, ``cycles`` (the device's count), ``expected_cycles`` (the cycle model's
estimate), ``ideal_cycles`` (the network's MACs / MAC units), ``mac_units`` and more.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from golden.compress import prune  # noqa: E402
from golden.engine import Golden  # noqa: E402
from golden.formats import load_model  # noqa: E402
from golden.model import random_float_model  # noqa: E402
from golden.network import (CIFAR10_VARIANTS, cifar10_squeezenet, squeezenet_v1_0,  # noqa: E402
                            squeezenet_v1_1, squeezenext)
from golden.quantize import quantize  # noqa: E402
from hw.config import board_config  # noqa: E402

SHARED = ROOT.parent / "shared"
AUTHORS = SHARED / "models" / "squeezenet-v1.0-deep-compression" / "compressed_SqueezeNet.net"
OUT = ROOT / "build" / "board" / "networks.json"
REPORT = ROOT / "docs" / "reports" / "board-networks.md"


def markdown(results: dict) -> str:
    cfg = board_config()
    lines = ["# Every network on the simulated board", "",
             f"`make board-networks` (tools/board_networks.py): the board's device ({cfg.mac_units} "
             f"MAC units, {cfg.clock_mhz:g} MHz, maps in the SDRAM model), one photo each, every "
             "logit against the golden model; cycles the device's own count beside the cycle "
             "model's estimate and its bounds; ideal = the network's MACs / MAC units.", "",
             "| network | weights | bit-exact | cycles | model | ms | ideal | MAC use | ops "
             "(segments) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['weights']} | {'yes' if r['bit_exact'] else '**no**'} | "
                     f"{r['cycles']:,} | {r['expected_cycles']:,} | {r['ms']:.1f} | "
                     f"{r['ideal_cycles']:,.0f} | {r['ideal_cycles'] / r['cycles']:.0%} | "
                     f"{r['ops']:,} ({r['segments']}) |")
    return "\n".join(lines) + "\n"


def random_model(net, seed: int):
    """Seeded random weights (golden.model.random_float_model), pruned to half."""
    return prune(random_float_model(net, seed), 0.5)


def random_photo(net, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    return rng.integers(0, 256, (net.input.channels, net.input.height, net.input.width),
                        dtype=np.uint8)


def entries():
    """(name, weights, model thunk, photos thunk): the photos calibrate and the first is run."""
    from golden.cifar10 import demo_photos, shipped_model
    from golden.digits import calibration_set, load_digits_split
    from golden.preprocess import load_image
    digits = ROOT / "models" / "digits-squeezenet.npz"
    yield ("digits-squeezenet", "trained", lambda: load_model(digits),
           lambda m: [load_digits_split()[2][0]] + calibration_set())
    cifar_photos = ROOT / "models" / "photos"

    def cifar_images(m):
        return [load_image(p, m.network.input) for p, _ in demo_photos(cifar_photos)]
    shipped = shipped_model(ROOT / "models")
    for v in CIFAR10_VARIANTS:
        trained = ROOT / "build" / "cifar" / v / "float.npz"
        name = f"cifar10-squeezenet-{v}"
        if shipped.stem == f"cifar10-{v}":
            yield name, "trained, compressed (shipped)", lambda s=shipped: load_model(s), cifar_images
        elif trained.exists():
            yield name, "trained (make cifar)", lambda t=trained: load_model(t), cifar_images
        else:
            yield (name, "random", lambda v=v: random_model(cifar10_squeezenet(v), 1),
                   cifar_images)
    photos = sorted((SHARED / "imagenet-sample").glob("*.JPEG"))
    if AUTHORS.exists() and photos:
        yield ("squeezenet-v1.0", "trained (the authors' Deep Compression model)",
               lambda: load_model(AUTHORS),
               lambda m: [load_image(p, m.network.input) for p in photos[::100]])
    randoms = {
        "squeezenet-v1.0-simple-bypass": lambda: squeezenet_v1_0("simple"),
        "squeezenet-v1.0-complex-bypass": lambda: squeezenet_v1_0("complex"),
        "squeezenet-v1.1": squeezenet_v1_1,
        **{f"squeezenext-1.0-SqNxt-{v}": (lambda v=v: squeezenext(1.0, v))
           for v in ("23", "23v2", "23v3", "23v4", "23v5")},
        "squeezenext-1.0-G-SqNxt-23": lambda: squeezenext(1.0, "23", grouped=True),
        "squeezenext-2.0-SqNxt-23": lambda: squeezenext(2.0, "23"),
        "squeezenext-2.0-SqNxt-23v5": lambda: squeezenext(2.0, "23v5"),
    }
    for i, (name, make) in enumerate(randoms.items()):
        yield (name, "random, pruned to half", lambda make=make, i=i: random_model(make(), i),
               lambda m, i=i: [random_photo(m.network, i), random_photo(m.network, i + 50)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=[], help="network names (default: all)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--report-only", action="store_true",
                    help=f"write {REPORT.relative_to(ROOT)} from the last run's JSON")
    args = ap.parse_args()
    if args.report_only:
        REPORT.write_text(markdown(json.loads(Path(args.out).read_text())))
        return 0
    from host.compiler import compile_network
    from host.driver import Driver
    from host.transport import SerialTransport
    from sim.board.build import BoardProcess
    cfg = board_config()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() and args.only else {}
    failed = 0
    with BoardProcess(cfg, quiet=False) as board:
        for name, weights, make, photos_of in entries():
            if args.only and name not in args.only:
                continue
            t0 = time.time()
            model = make()
            photos = photos_of(model)
            q = quantize(model, photos[1:] or photos, 8)
            prog = compile_network(q, cfg)
            driver = Driver(SerialTransport(board.url), reply_timeout=1.0, retries=10)
            upload = driver.load_model(prog)
            driver.load_image(prog, photos[0])
            cycles = driver.run(prog)
            logits = driver.read_logits(prog)
            driver.transport.close()
            want = Golden(q)(photos[0])
            exact = bool(np.array_equal(logits, want))
            failed += not exact
            _, _, expected = prog.timeline()
            lo, hi = prog.cycle_bounds()["total"]
            results[name] = {
                "bit_exact": exact, "cycles": int(cycles), "expected_cycles": int(expected),
                "expected_bounds": [int(lo), int(hi)],
                "ideal_cycles": q.network.macs / cfg.mac_units, "mac_units": cfg.mac_units,
                "ms": cycles / cfg.clock_mhz / 1e3, "macs": q.network.macs,
                "ops": len(prog.ops), "segments": len(prog.segment_ranges()),
                "weights": weights, "upload_bytes": upload, "wall_seconds": time.time() - t0}
            if not exact:
                c = int(np.flatnonzero(logits != want)[0])
                results[name]["first_mismatch"] = {"class": c, "device": int(logits[c]),
                                                   "golden": int(want[c])}
            print(f"{name:<34} {'bit-exact' if exact else 'MISMATCH'}  {cycles:>11,} cycles "
                  f"(model {expected:,}; bounds {lo:,}..{hi:,})  {len(prog.ops):>5} ops"
                  f"{f' in {len(prog.segment_ranges())} segments' if prog.segments else ''}  "
                  f"{time.time() - t0:.0f} s", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
    REPORT.write_text(markdown(results))
    print(f"wrote {out} and {REPORT.relative_to(ROOT)}: {len(results)} networks, {failed} not "
          "bit-exact")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
