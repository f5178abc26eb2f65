"""Fault campaigns on the host link: random writes and read-backs of the device's feature
memory through a FaultyTransport, counting what came back right, what failed with a clear
error, and what came back wrong (which must never happen).

    python -m host.faults --device golden --seeds 20 --rate 0.003 --requests 400
    python -m host.faults --device sim --seeds 4 --rate 0.003 --requests 200

(``make faults`` runs both and writes build/faults/report.json.)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig, board_config
from hw.protocol import Target

from .driver import DeviceError, Driver, LinkError
from .transport import FaultyTransport, open_device

__all__ = ["Campaign", "run_campaign"]


@dataclass
class Campaign:
    device: str
    rate: float
    seeds: int
    faults: int = 0
    requests: int = 0
    retries: int = 0
    correct: int = 0             # read-backs equal to what was written
    clear_errors: int = 0        # LinkError or DeviceError raised to the caller
    wrong: int = 0               # read-backs that differ: must stay 0


def run_campaign(device: str, seeds, rate: float, requests_per_seed: int,
                 cfg: AcceleratorConfig | None = None, retries: int = 12) -> Campaign:
    cfg = cfg or board_config()
    seeds = list(seeds)
    result = Campaign(device, rate, len(seeds))
    for seed in seeds:
        inner, timeout = open_device(device, cfg, quiet=True)
        link = FaultyTransport(inner, rate, seed)
        driver = Driver(link, reply_timeout=min(timeout, 0.3), retries=retries)
        rng = np.random.default_rng(seed)
        shadow: dict[int, bytes] = {}
        try:
            for _ in range(requests_per_seed // 2):
                address = int(rng.integers(0, 2048))
                words = int(rng.integers(1, 64))
                data = rng.integers(0, 256, words * cfg.pc, dtype=np.uint8).tobytes()
                result.requests += 2
                try:
                    driver.write(Target.FEATURE, address, data)
                    for i in range(words):
                        shadow[address + i] = data[i * cfg.pc:(i + 1) * cfg.pc]
                    got = driver.read(Target.FEATURE, address, words, cfg.pc)
                except (LinkError, DeviceError):
                    result.clear_errors += 1
                    shadow.clear()       # what a failed write left is unknown: start over
                    continue
                want = b"".join(shadow[address + i] for i in range(words))
                result.correct += got == want
                result.wrong += got != want
        finally:
            result.faults += link.faults.total
            result.retries += driver.stats.retries
            inner.close()
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fault injection on the host link: every request "
                                 "must end in the right answer or a clear error.")
    ap.add_argument("--device", default="golden", help="golden, sim, or a socket:// URL")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rate", type=float, default=0.003, help="fault probability per byte")
    ap.add_argument("--requests", type=int, default=200, help="requests per seed")
    ap.add_argument("--json", help="append the result to this JSON list")
    a = ap.parse_args(argv)
    r = run_campaign(a.device, range(a.seeds), a.rate, a.requests)
    print(f"{r.device}: {r.faults} faults injected (rate {r.rate} per byte, {r.seeds} seeds), "
          f"{r.requests} requests, {r.retries} retries, {r.correct} read-backs correct, "
          f"{r.clear_errors} clear errors, {r.wrong} wrong answers")
    if a.json:
        path = Path(a.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        runs = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(runs + [asdict(r)], indent=2) + "\n")
    return 1 if r.wrong else 0


if __name__ == "__main__":
    sys.exit(main())
