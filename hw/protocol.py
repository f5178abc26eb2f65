"""The host link's wire format: the one definition the device (hw/device.py), the host driver
(host/driver.py) and the golden device (host/golden_device.py) share. docs/PROTOCOL.md
describes it for people.

A frame, in both directions::

    SYNC0 SYNC1 | code | seq | length (u16 LE) | payload (length bytes) | CRC-32 (u32 LE)

``code`` is the command in a request and the status in a reply; ``seq`` is the request's
sequence number, echoed by its reply. The CRC is CRC-32/ISO-HDLC (``zlib.crc32``) over code,
seq, length and payload. Multi-byte fields are little-endian.

Commands with arguments start their payload with an 8-byte header (``ARGS``)::

    target u8 | flags u8 | count u16 | address u32

then data (WRITE). Nothing here is a hardware component, so the driver imports it without the
gateware.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields
from enum import IntEnum

from golden.sparse import GAP_BITS

from .config import AcceleratorConfig
from .layout import op_bytes
from .sdram_chip import MT48LC16M16A2

__all__ = ["SYNC", "HEADER_BYTES", "CRC_BYTES", "ARGS_BYTES", "MAX_PAYLOAD", "VERSION",
           "IDENTITY_FORMAT", "IDENTITY_MAGIC", "STATUS_FORMAT", "GAP_BITS",
           "Command", "Status", "Target", "RunState", "encode_frame", "FrameParser", "args",
           "parse_args", "crc32", "Identity", "identity_bytes", "unit_bytes",
           "ProtocolError", "SELFTEST_ARGS", "SELFTEST_FORMAT", "MemTestPhase"]

SYNC = (0xA5, 0x5A)
HEADER_BYTES = 6                 # sync (2), code, seq, length (2)
CRC_BYTES = 4
ARGS_BYTES = 8                   # target, flags, count (u16), address (u32)
MAX_PAYLOAD = 2048               # the device's frame buffer; longer frames are refused
VERSION = 6                      # 6: the weight format in the identity (zero-skipping)
                                 # changed the op word (hw.layout.op_layout); 4: the ADD op,
                                 # residual passes, the squeeze buffer's LOADs

# Sparse weight entries (WRITE to WEIGHTS): golden.sparse's GAP_BITS zero-run length, then the
# codebook index (flags = index bits: 4, 6 or 8, up to the device's), packed LSB first
# (hw.layout.pack_entries). A run longer than the gap field holds is bridged by a filler entry.


# IDENTIFY's reply: magic, VERSION, MAC units, PO, PC, index bits, value bits, SDRAM words,
# feature-map A, feature-map B, squeeze-buffer and weight depths (words), codebook tables,
# bias words, program ops, MAX_PAYLOAD, bytes per program op, the weight format (0 dense, 1
# zero-skipping: AcceleratorConfig.zero_skipping).
IDENTITY_FORMAT = "<4sBHBBBBIIIIIHHHHHB"
IDENTITY_MAGIC = b"SQZD"
# SELFTEST's payload: the first SDRAM word, how many words, the random pattern's seed.
SELFTEST_ARGS = "<III"
# SELFTEST_RESULT's reply: state (0 idle, 1 running, 2 done), phase reached (MemTestPhase),
# failed (0/1), the first failure's phase, its word address, the word expected there, the word
# read, failures counted, reads checked.
SELFTEST_FORMAT = "<BBBBIHHII"
# STATUS's reply: RunState, index of the op running (or of the END op once done), cycles.
STATUS_FORMAT = "<BHI"


class ProtocolError(RuntimeError):
    """A reply that is not what the protocol says it should be."""


class Command(IntEnum):
    IDENTIFY = 0x01      # -> identity (``Identity``)
    RESET = 0x02         # abort a run, clear the link and sequencer state
    WRITE = 0x03         # ARGS, data: write target memory from address on
    CLEAR = 0x04         # ARGS: zero ``count`` words of the target from address on
    READ = 0x05          # ARGS: -> ``count`` words of the target from address on
    RUN = 0x06           # start the stored program (no effect while it runs)
    STATUS = 0x07        # -> RunState u8, op index u16, cycles u32
    SELFTEST = 0x08      # SELFTEST_ARGS: start the SDRAM test (hw/memtest.py); replies at once
    SELFTEST_RESULT = 0x09   # -> SELFTEST_FORMAT: the SDRAM test's state and result
    ECHO = 0x0A          # -> the request's payload (a link soak)


class Status(IntEnum):
    OK = 0x00
    BAD_CRC = 0x01
    UNKNOWN_COMMAND = 0x02
    BAD_LENGTH = 0x03
    BAD_ARGUMENT = 0x04
    BUSY = 0x05


class Target(IntEnum):
    FEATURE = 0          # feature-map memory: PC bytes per word (channel t%PC in byte t)
    PROGRAM = 1          # the layer program: op words (hw.layout.op_layout), op_bytes each
    CODEBOOK = 2         # codebook entries (table * 2**index_bits + index): i16 each
    BIAS = 3             # biases (output-group word * PO + lane): i32 each
    WEIGHTS = 4          # WRITE: sparse entries, address = first weight position;
                         # CLEAR: zero weight words (PO*PC indices each)
    COUNTERS = 5         # READ: cycles of each op of the last run, u32 each
    SDRAM = 6            # the SDRAM, a 16-bit word at a time (u16 each): WRITE and READ


class MemTestPhase(IntEnum):
    DATA_BUS = 0         # walking ones through every data line, at the first word
    ADDRESS_BUS = 1      # a distinct word at the first word + 2**k, for every address line
    RANDOM = 2           # hw.layout.memtest_pattern over the whole range, written then read


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


ARGS_FORMAT = "<BBHI"


def args(target: int, address: int = 0, count: int = 0, flags: int = 0) -> bytes:
    return struct.pack(ARGS_FORMAT, target, flags, count, address)


def parse_args(payload: bytes) -> tuple[int, int, int, int]:
    """The inverse of ``args``: (target, flags, count, address)."""
    return struct.unpack_from(ARGS_FORMAT, payload)


@dataclass(frozen=True)
class Identity:
    """IDENTIFY's reply: the device's configuration as the host needs it."""

    version: int
    mac_units: int
    po: int
    pc: int
    index_bits: int
    value_bits: int
    sdram_words: int
    fm_depth: int
    fm_b_depth: int
    squeeze_depth: int
    weight_depth: int
    codebook_tables: int
    bias_depth: int
    program_depth: int
    max_payload: int
    op_bytes: int
    zero_skipping: int

    @staticmethod
    def parse(data: bytes) -> "Identity":
        if len(data) != struct.calcsize(IDENTITY_FORMAT):
            raise ProtocolError(f"an identity of {len(data)} bytes; the protocol's is "
                                f"{struct.calcsize(IDENTITY_FORMAT)}: not a SqueezeNet device "
                                "of this version")
        values = struct.unpack(IDENTITY_FORMAT, data)
        if values[0] != IDENTITY_MAGIC:
            raise ProtocolError(f"the device identified as {values[0]!r}, not a SqueezeNet "
                                "device")
        return Identity(*values[1:])

    @staticmethod
    def of(cfg: AcceleratorConfig) -> "Identity":
        return Identity.parse(identity_bytes(cfg))

    def differences(self, other: "Identity") -> list[str]:
        return [f"{f.name} {getattr(self, f.name)} (expected {getattr(other, f.name)})"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def identity_bytes(cfg: AcceleratorConfig) -> bytes:
    """IDENTIFY's reply payload for a device of configuration ``cfg``."""
    return struct.pack(IDENTITY_FORMAT, IDENTITY_MAGIC, VERSION,
                       cfg.mac_units, cfg.po, cfg.pc, cfg.index_bits, cfg.value_bits,
                       MT48LC16M16A2.words, cfg.fm_depth, cfg.fm_b_depth, cfg.squeeze_depth,
                       cfg.weight_depth, cfg.codebook_tables, cfg.bias_depth, cfg.program_depth,
                       MAX_PAYLOAD, op_bytes(cfg), int(cfg.zero_skipping))


CODEBOOK_BYTES = 2               # a codebook entry on the link: i16 (value_bits <= 16)
BIAS_BYTES = 4                   # a bias: i32
COUNTER_BYTES = 4                # a cycle counter: u32
SDRAM_WORD_BYTES = MT48LC16M16A2.dq_bits // 8


def unit_bytes(cfg: AcceleratorConfig) -> dict[Target, int]:
    """Bytes per word of a WRITE's data, by target (WEIGHTS carries sparse entries instead)."""
    return {Target.FEATURE: cfg.pc, Target.PROGRAM: op_bytes(cfg),
            Target.CODEBOOK: CODEBOOK_BYTES, Target.BIAS: BIAS_BYTES,
            Target.SDRAM: SDRAM_WORD_BYTES}


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
