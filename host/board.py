"""A model on a device: compile it, connect, upload once, classify images.

    with Board(q, "sim") as board:          # or "golden", "serial:/dev/ttyUSB0", "socket://..."
        result = board.classify(pixels)     # logits, cycles per op and in total, seconds

Used by ``sqz infer --device`` and ``sqz demo``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from golden.quantize import QuantizedModel
from hw.config import AcceleratorConfig, board_config

from .compiler import DeviceProgram, compile_network
from .driver import Driver
from .transport import open_device

__all__ = ["Board", "DeviceResult", "first_mismatch"]


@dataclass
class DeviceResult:
    logits: np.ndarray
    cycles: int                      # the device's own count, RUN to END
    layers: dict[str, int]           # op name -> cycles (the device's counters)
    seconds: float                   # image upload, run and result readback
    waits: dict[str, int]            # op name (and END) -> cycles it waited for the DMA queue


class Board:
    def __init__(self, q: QuantizedModel, device: str, cfg: AcceleratorConfig | None = None,
                 progress: bool = False, retries: int = 10):
        self.cfg = cfg or board_config()
        self.program: DeviceProgram = compile_network(q, self.cfg)
        # The one-off Verilator build of a simulated board always says that it is building.
        self.transport, timeout = open_device(device, self.cfg, quiet=False)
        self.driver = Driver(self.transport, timeout, retries)
        started = time.perf_counter()
        if self.program.input_sdram is not None:      # parameters go to the SDRAM
            bar = _bar(sum(len(b) for _, b in self.program.sdram_blocks), "parameters",
                       "words", progress)
        else:
            bar = _bar(sum(len(w.entries) for w in self.program.weights), "weights",
                       "entries", progress)
        try:
            self.upload_bytes = self.driver.load_model(self.program, bar.update if bar else None)
        except BaseException:
            self.close()
            raise
        finally:
            if bar:
                bar.close()
        self.upload_seconds = time.perf_counter() - started

    def classify(self, pixels: np.ndarray, progress: bool = False) -> DeviceResult:
        started = time.perf_counter()
        self.driver.load_image(self.program, pixels)
        bar = _bar(len(self.program.ops), "layers", "ops", progress)
        last = [0]

        def advance(index):
            if bar and index > last[0]:
                bar.update(index - last[0])
                last[0] = index

        cycles = self.driver.run(self.program, progress=advance)
        if bar:
            bar.update(len(self.program.ops) - last[0])
            bar.close()
        logits = self.driver.read_logits(self.program)
        layers = self.driver.read_counters(self.program)
        waits = self.driver.read_waits(self.program)
        return DeviceResult(logits, cycles, layers, time.perf_counter() - started, waits)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def first_mismatch(device: np.ndarray, golden: np.ndarray, layer: str) -> str | None:
    """None if equal, else which output differs first (layer, channel, values)."""
    if device.shape != golden.shape:
        return f"{layer}: the device returned {device.shape} values, golden {golden.shape}"
    bad = np.flatnonzero(device != golden)
    if not len(bad):
        return None
    c = int(bad[0])
    return (f"{layer}: {len(bad)} of {device.size} outputs differ; first at channel {c} "
            f"(pixel 0, 0 of the global sum): device {device[c]}, golden {golden[c]}")


def _bar(total: int, desc: str, unit: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=False)
