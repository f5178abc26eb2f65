"""The host link's wire format: the one definition the device (hw/device.py), the host driver
(firmware/driver.py) and the in-process golden device (firmware/golden_device.py) share.
docs/PROTOCOL.md describes it for people.

A frame, in both directions::

    SYNC0 SYNC1 | code | seq | length (u16 LE) | payload (length bytes) | CRC-32 (u32 LE)

``code`` is the command in a request and the status in a reply; ``seq`` is the request's
sequence number, echoed by its reply. The CRC is CRC-32/ISO-HDLC (``zlib.crc32``) over code,
seq, length and payload. Multi-byte fields are little-endian.

Commands with arguments start their payload with an 8-byte header (``ARGS``)::

    target u8 | flags u8 | count u16 | address u32

then data (WRITE). No pure-Python code here depends on Amaranth, so the driver imports it
without the HDL toolchain.
"""

from __future__ import annotations

import struct
import zlib
from enum import IntEnum

__all__ = ["SYNC", "HEADER_BYTES", "CRC_BYTES", "ARGS_BYTES", "MAX_PAYLOAD", "VERSION",
           "IDENTITY_FORMAT", "IDENTITY_MAGIC", "STATUS_FORMAT", "GAP_BITS",
           "Command", "Status", "Target", "RunState", "encode_frame", "FrameParser", "args",
           "crc32"]

SYNC = (0xA5, 0x5A)
HEADER_BYTES = 6                 # sync (2), code, seq, length (2)
CRC_BYTES = 4
ARGS_BYTES = 8                   # target, flags, count (u16), address (u32)
MAX_PAYLOAD = 2048               # the device's frame buffer; longer frames are refused
VERSION = 1

# Sparse weight entries (WRITE to WEIGHTS): a GAP_BITS zero-run length, then the codebook index
# (flags = index bits), packed LSB first. As in Deep Compression, a run longer than the gap
# field can hold is bridged by a filler entry (gap 2**GAP_BITS - 1, index 0).
GAP_BITS = 4


# IDENTIFY's reply: magic, VERSION, MAC units, PO, PC, index bits, value bits, feature-map,
# squeeze-buffer and weight depths (words), codebook tables, bias words, program ops,
# MAX_PAYLOAD, bytes per program op.
IDENTITY_FORMAT = "<4sBHBBBBIIIHHHHH"
IDENTITY_MAGIC = b"SQZD"
# STATUS's reply: RunState, index of the op running (or of the END op once done), cycles.
STATUS_FORMAT = "<BHI"


class Command(IntEnum):
    IDENTIFY = 0x01      # -> identity (see firmware.driver.Identity)
    RESET = 0x02         # abort a run, clear the link and sequencer state
    WRITE = 0x03         # ARGS, data: write target memory from address on
    CLEAR = 0x04         # ARGS: zero ``count`` words of the target from address on
    READ = 0x05          # ARGS: -> ``count`` words of the target from address on
    RUN = 0x06           # start the stored program (no effect while it runs)
    STATUS = 0x07        # -> RunState u8, op index u16, cycles u32


class Status(IntEnum):
    OK = 0x00
    BAD_CRC = 0x01
    UNKNOWN_COMMAND = 0x02
    BAD_LENGTH = 0x03
    BAD_ARGUMENT = 0x04
    BUSY = 0x05


class Target(IntEnum):
    FEATURE = 0          # feature-map memory: PC bytes per word (channel t%PC in byte t)
    PROGRAM = 1          # the layer program: op words (hw.device.op_layout), OP_BYTES each
    CODEBOOK = 2         # codebook entries (table * 2**index_bits + index): i16 each
    BIAS = 3             # biases (output-group word * PO + lane): i32 each
    WEIGHTS = 4          # WRITE: sparse entries, address = first weight position;
                         # CLEAR: zero weight words (PO*PC indices each)
    COUNTERS = 5         # READ: cycles of each op of the last run, u32 each


class RunState(IntEnum):
    IDLE = 0
    RUNNING = 1
    DONE = 2


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_frame(code: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes; the link carries at most {MAX_PAYLOAD}")
    body = struct.pack("<BBH", code, seq & 0xFF, len(payload)) + payload
    return bytes(SYNC) + body + struct.pack("<I", crc32(body))


def args(target: int, address: int = 0, count: int = 0, flags: int = 0) -> bytes:
    return struct.pack("<BBHI", target, flags, count, address)


class FrameParser:
    """Bytes in, frames out, as the device's receiver does: hunt for SYNC, read the header,
    refuse lengths over MAX_PAYLOAD, check the CRC. ``feed`` returns a list of
    ``(code, seq, payload, check)``, ``check`` a Status: OK, BAD_CRC or BAD_LENGTH (the
    header's length is over MAX_PAYLOAD; the parser resumes hunting after the header). Bytes
    between frames are skipped."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes, bool]]:
        self.buf += data
        frames = []
        while True:
            start = self._find_sync()
            if start < 0:
                return frames
            del self.buf[:start]
            if len(self.buf) < HEADER_BYTES:
                return frames
            code, seq, length = struct.unpack_from("<BBH", self.buf, 2)
            if length > MAX_PAYLOAD:
                frames.append((code, seq, b"", Status.BAD_LENGTH))
                del self.buf[:HEADER_BYTES]
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self.buf) < end:
                return frames
            body = bytes(self.buf[2:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<I", self.buf, HEADER_BYTES + length)
            frames.append((code, seq, body[4:], Status.OK if crc == crc32(body) else Status.BAD_CRC))
            del self.buf[:end]

    def _find_sync(self) -> int:
        for i in range(len(self.buf) - 1):
            if self.buf[i] == SYNC[0] and self.buf[i + 1] == SYNC[1]:
                return i
        if self.buf and self.buf[-1] == SYNC[0]:
            del self.buf[:-1]
        else:
            self.buf.clear()
        return -1

    def drop_partial(self) -> None:
        """A timeout: forget a frame that stopped arriving."""
        self.buf.clear()
