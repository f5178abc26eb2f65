"""The simulated board: hw/device.py compiled by Verilator with board_main.cpp (beside this
file), a process that serves the device's host link on a TCP socket
(``socket://127.0.0.1:PORT``).

``build(cfg)`` generates the Verilog and compiles it once per configuration (cached under
build/board/, keyed by the Verilog and the harness source); ``BoardProcess`` starts one and
stops it. ``sqz board-sim`` runs one in the foreground; ``--device sim`` starts one on demand.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from hw.config import AcceleratorConfig

__all__ = ["build", "verilate", "BoardProcess", "device_verilog"]

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "board_main.cpp"
BUILD = ROOT / "build" / "board"


def device_verilog(cfg: AcceleratorConfig, uart_divisor: int | None = None) -> str:
    """The device's Verilog: its byte-stream link (``device``), or behind the UART
    (``serial_device``, hw/serial_device.py) with ``uart_divisor`` cycles a bit."""
    from amaranth.back import verilog

    from hw.sdram import WithPinRegisters
    from sim.runner import without_zero_memory_init
    if uart_divisor:
        from hw.serial_device import SerialDevice
        top, name = SerialDevice(cfg, uart_divisor), "serial_device"
    else:
        from hw.device import Device
        top, name = Device(cfg), "device"
    with without_zero_memory_init():
        return verilog.convert(WithPinRegisters(top), name=name, emit_src=False)


def build(cfg: AcceleratorConfig, quiet: bool = False, uart_divisor: int | None = None) -> Path:
    """The board simulator's executable for ``cfg`` (compiled if not cached); with
    ``uart_divisor``, the link goes through the UART at that many cycles a bit."""
    if uart_divisor:
        return verilate(device_verilog(cfg, uart_divisor), "serial_device", [HARNESS],
                        f"mac{cfg.mac_units}-uart{uart_divisor}", "the simulated board (UART)",
                        quiet, defines={"UART_DIVISOR": uart_divisor})
    return verilate(device_verilog(cfg), "device", [HARNESS], f"mac{cfg.mac_units}",
                    "the simulated board", quiet)


def verilate(text: str, top: str, harness: list[Path], label: str, what: str,
             quiet: bool = False, defines: dict | None = None) -> Path:
    """Compile Verilog ``text`` (module ``top``) with its C++ ``harness`` into one executable
    under build/board/, cached by the Verilog and every harness file (and the headers beside
    them); one build at a time, since parallel test workers ask for the same one."""
    here = Path(__file__).resolve().parent
    sources = sorted({*harness, *here.glob("*.h")})
    flags = " ".join(f"-D{k}={v}" for k, v in sorted((defines or {}).items()))
    key = hashlib.sha256(text.encode() + flags.encode()
                         + b"".join(p.read_bytes() for p in sources)).hexdigest()
    out = BUILD / f"{top}-{label}-{key[:16]}"
    exe = out / top
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exe.exists():
            _compile(text, top, harness, out, exe, what, quiet, flags)
    return exe


def _compile(text: str, top: str, harness: list[Path], out: Path, exe: Path, what: str,
             quiet: bool, flags: str = "") -> None:
    from sim.runner import verilator_env
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{top}.v").write_text(text)
    verilator_env()
    if not quiet:
        print(f"building {what} with Verilator, once per configuration: under a minute",
              file=sys.stderr)
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", str(os.cpu_count() or 2),
           "--top-module", top, "-O3", "--x-assign", "fast", "--x-initial", "fast",
           "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-lint", "-Wno-style",
           "--Mdir", str(out / "obj"), "-o", str(exe),
           "-CFLAGS", f"-O2 --std=c++20 -I{Path(__file__).resolve().parent} {flags}",
           str(out / f"{top}.v"), *map(str, harness)]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not exe.exists():
        raise RuntimeError(f"Verilator could not build {what}:\n"
                           + proc.stdout[-3000:] + proc.stderr[-3000:])
    if not quiet:
        print(f"built {exe} in {time.time() - started:.0f} s", file=sys.stderr)


class BoardProcess:
    """A running simulated board: ``with BoardProcess(cfg) as board: board.url``."""

    def __init__(self, cfg: AcceleratorConfig, port: int = 0, quiet: bool = False,
                 uart_divisor: int | None = None, sdram_faults: dict | None = None):
        """``sdram_faults``: the chip model's injected faults, for the bring-up tests:
        ``stuck_bit`` and ``stuck_value`` (a data line stuck at 0 or 1), ``short_lo`` and
        ``short_hi`` (word-address line ``short_hi`` reads and writes as ``short_lo``)."""
        self.exe = build(cfg, quiet=quiet, uart_divisor=uart_divisor)
        # The SDRAM chip model checks the rules of this configuration's clock.
        self.proc = subprocess.Popen([str(self.exe), "--port", str(port),
                                      *cfg.sdram_timings.harness_args(),
                                      *(f"--{k.replace('_', '-')}={v}"
                                        for k, v in (sdram_faults or {}).items())],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.close()
            raise RuntimeError(f"the simulated board did not start: {line!r}")
        self.port = int(line.split()[-1])
        self.url = f"socket://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
