"""Transports: the byte stream between the driver and a device, whatever carries it.

- ``SerialTransport``: pyserial, for a real board (``serial:/dev/ttyUSB0``, 3 Mbaud by
  default) or any pyserial URL (``socket://127.0.0.1:PORT``: the simulated board);
- ``GoldenTransport``: the in-process golden device (host/golden_device.py);
- ``FaultyTransport``: wraps another and drops, flips, duplicates and inserts bytes in both
  directions at seeded random, for the fault-injection tests.

``open_device(spec, cfg)`` turns a ``--device`` argument into a transport (starting a
simulated board for ``sim``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["SerialTransport", "GoldenTransport", "FaultyTransport", "open_device", "FaultCounts",
           "find_boards", "FT231X_VID_PID"]

# The ULX3S's USB serial bridge (its US1 port).
FT231X_VID_PID = (0x0403, 0x6015)


def find_boards(ports=None) -> list[dict]:
    """The serial ports whose USB IDs are the ULX3S's FT231X (``ports``: pyserial ListPortInfo
    objects; default: this machine's)."""
    if ports is None:
        from serial.tools import list_ports
        ports = list_ports.comports()
    return [{"port": p.device, "description": p.description, "serial": p.serial_number}
            for p in ports if (p.vid, p.pid) == FT231X_VID_PID]


class SerialTransport:
    def __init__(self, url: str, baudrate: int = 3_000_000):
        import serial
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=0)
        except (serial.SerialException, ValueError) as e:
            raise OSError(f"cannot open {url}: {e}") from e
        self.closer = None

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self, timeout: float) -> bytes:
        self.port.timeout = max(timeout, 0.0)
        first = self.port.read(1)
        if not first:
            return b""
        waiting = self.port.in_waiting
        return first + (self.port.read(waiting) if waiting else b"")

    def close(self) -> None:
        self.port.close()
        if self.closer:
            self.closer()


class GoldenTransport:
    """Replies are ready as soon as a request is written; a read that finds nothing is the
    device's receive timeout (a half-received frame is dropped)."""

    def __init__(self, device):
        self.device = device
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += self.device.receive(data)

    def read(self, timeout: float) -> bytes:
        if not self.pending:
            self.device.link_idle()
            return b""
        out, self.pending = bytes(self.pending), bytearray()
        return out

    def close(self) -> None:
        pass


@dataclass
class FaultCounts:
    dropped: int = 0
    flipped: int = 0
    duplicated: int = 0
    inserted: int = 0
    by_direction: dict = field(default_factory=lambda: {"to_device": 0, "to_host": 0})

    @property
    def total(self) -> int:
        return self.dropped + self.flipped + self.duplicated + self.inserted


class FaultyTransport:
    """Each byte, in each direction, is dropped, bit-flipped, duplicated or followed by a
    random byte with probability ``rate`` (one of the four, equally likely)."""

    def __init__(self, inner, rate: float, seed: int):
        self.inner = inner
        self.rate = rate
        self.rng = random.Random(seed)
        self.faults = FaultCounts()

    def _mangle(self, data: bytes, direction: str) -> bytes:
        out = bytearray()
        for b in data:
            if self.rng.random() >= self.rate:
                out.append(b)
                continue
            self.faults.by_direction[direction] += 1
            kind = self.rng.randrange(4)
            if kind == 0:
                self.faults.dropped += 1
            elif kind == 1:
                self.faults.flipped += 1
                out.append(b ^ (1 << self.rng.randrange(8)))
            elif kind == 2:
                self.faults.duplicated += 1
                out += bytes([b, b])
            else:
                self.faults.inserted += 1
                out += bytes([b, self.rng.randrange(256)])
        return bytes(out)

    def write(self, data: bytes) -> None:
        self.inner.write(self._mangle(data, "to_device"))

    def read(self, timeout: float) -> bytes:
        return self._mangle(self.inner.read(timeout), "to_host")

    def close(self) -> None:
        self.inner.close()


def open_device(spec: str, cfg, quiet: bool = False):
    """``sim``, ``golden``, ``serial:PORT`` or a pyserial URL (``socket://host:port``) ->
    (transport, reply timeout in seconds)."""
    if spec == "golden":
        from .golden_device import GoldenDevice
        return GoldenTransport(GoldenDevice(cfg)), 0.01
    if spec == "sim":
        from sim.board.build import BoardProcess
        board = BoardProcess(cfg, quiet=quiet)
        t = SerialTransport(board.url)
        t.closer = board.close
        return t, 1.0
    if spec.startswith("serial:"):
        return SerialTransport(spec[len("serial:"):]), 1.0
    if "://" in spec:
        return SerialTransport(spec), 1.0
    raise ValueError(f"--device {spec!r}: use sim, golden, serial:PORT or socket://HOST:PORT")
