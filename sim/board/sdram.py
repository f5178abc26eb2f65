"""The SDRAM controller against the chip model: build and run sim/board/sdram_bench.cpp.

    python -m sim.board.sdram [--mhz 100] [--seed 1] [--ops 20000] [--script RULE]

``run`` returns the bench's JSON report (traffic: reads, writes, refreshes, the largest gap
between refreshes, the sustained words per cycle of a sequential stream; script: whether the
model caught the rule) plus the model's message on stderr when it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from hw.sdram_chip import SDRAMTimings

__all__ = ["build_bench", "run", "RULES", "build_dma_bench", "run_dma"]

HERE = Path(__file__).resolve().parent
# The rules the model checks, each with a script in the bench that breaks it.
RULES = ("power-up", "tRCD", "tRP", "tRAS", "tRC", "tRRD", "tWR", "tRFC", "tMRD",
         "refresh interval", "mode register", "bus contention", "bank state", "DQM")


def build_bench(timings: SDRAMTimings, quiet: bool = True) -> Path:
    from amaranth.back import verilog

    from sim.tops import SDRAMTop

    from .build import verilate
    text = verilog.convert(SDRAMTop(timings), name="sdram_top", emit_src=False)
    return verilate(text, "sdram_top", [HERE / "sdram_bench.cpp"], f"{timings.clock_mhz:g}mhz",
                    "the SDRAM bench", quiet)


def run(timings: SDRAMTimings, seed: int = 1, ops: int = 20000, script: str | None = None,
        rules: dict | None = None, timeout: float = 600) -> dict:
    """One bench run. ``rules`` overrides the model's rules (a script can then provoke a rule
    that the real numbers make unreachable, such as tRC > tRAS + tRP)."""
    exe = build_bench(timings)
    model = replace(timings, **(rules or {}))
    args = [str(exe), *model.harness_args(), f"--seed={seed}", f"--ops={ops}"]
    if script:
        args.append(f"--script={script}")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    report.update({"exit": proc.returncode, "stderr": proc.stderr.strip()})
    return report


def build_dma_bench(cfg, timings: SDRAMTimings, quiet: bool = True) -> Path:
    from amaranth.back import verilog

    from sim.tops import DMATop

    from .build import verilate
    text = verilog.convert(DMATop(cfg, timings), name="dma_top", emit_src=False)
    return verilate(text, "dma_top", [HERE / "dma_bench.cpp"],
                    f"pc{cfg.pc}-{timings.clock_mhz:g}mhz", "the DMA bench", quiet)


def run_dma(cfg, timings: SDRAMTimings, seed: int = 1, transfers: int = 20,
            timeout: float = 600) -> dict:
    """hw.dma.FeatureDMA between a buffer and the controller, against the chip model: random
    2-D stores and loads, every word checked (sim/board/dma_bench.cpp)."""
    exe = build_dma_bench(cfg, timings)
    from hw.timing import FM_READ_LATENCY
    proc = subprocess.run([str(exe), *timings.harness_args(), f"--pc={cfg.pc}",
                           f"--read-latency={FM_READ_LATENCY}",
                           f"--seed={seed}", f"--transfers={transfers}"],
                          capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    report.update({"exit": proc.returncode, "stderr": proc.stderr.strip()})
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mhz", type=float, default=100.0, help="the clock (CL2 up to 100 MHz)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", type=int, default=20000, help="random accesses after the streams")
    ap.add_argument("--script", choices=RULES, help="break one rule on the model alone")
    args = ap.parse_args(argv)
    report = run(SDRAMTimings.at(args.mhz), args.seed, args.ops, args.script)
    print(json.dumps(report, indent=1))
    return 0 if report["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
