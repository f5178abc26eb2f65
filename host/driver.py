"""The host driver: one API over any transport that carries the device's byte stream.

    driver = Driver(open_transport("sim" | "golden" | "serial:/dev/ttyUSB0" | "socket://h:p"))
    driver.load_model(program); driver.load_image(program, pixels); driver.run()
    logits = driver.read_logits(program); cycles = driver.read_counters(program)

The driver never knows what is on the other end. Every request is one frame (hw/protocol.py)
and waits for the reply with its sequence number; a reply that does not come in time, one
that arrives corrupted, or the device's report that it received a corrupted frame (BAD_CRC,
BAD_LENGTH) makes the driver send the same request again, up to ``retries`` times. Every
request is idempotent (writes name their addresses; RUN on a running device does nothing, and
a second RUN recomputes the same result from the unchanged input), so a retry never changes
the outcome. What cannot be recovered is raised as LinkError (no valid reply) or DeviceError
(the device refused: the status is named).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from hw import protocol as proto
from hw.layout import entry_bits, entry_span, pack_entries
from hw.protocol import Command, Identity, RunState, Status, Target, unit_bytes

__all__ = ["Driver", "DeviceError", "LinkError", "LinkStats"]


class LinkError(RuntimeError):
    """No valid reply after every retry."""


class DeviceError(RuntimeError):
    """The device answered with an error status."""

    def __init__(self, command: Command, status: int):
        super().__init__(f"the device refused {_name(command)}: {_name(status, Status)}")
        self.status = status


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    bad_replies: int = 0         # replies dropped: bad CRC, or another request's
    device_saw_errors: int = 0   # the device reported a corrupted request
    by_command: dict = field(default_factory=dict)


class Driver:
    def __init__(self, transport, reply_timeout: float = 1.0, retries: int = 10):
        self.transport = transport
        self.reply_timeout = reply_timeout
        self.retries = retries
        self._program = None             # the program load_model uploaded
        self._segment = None             # the program segment in the device's program memory
        self._segment_counters = None    # a segmented run's counters and waits, all segments
        self.seq = 0
        self.parser = proto.FrameParser()
        self.stats = LinkStats()

    # ---- one request --------------------------------------------------------------------
    def request(self, command: Command, payload: bytes = b"") -> bytes:
        self.seq = (self.seq + 1) & 0xFF
        frame = proto.encode_frame(command, self.seq, payload)
        self.stats.requests += 1
        name = _name(command)
        self.stats.by_command[name] = self.stats.by_command.get(name, 0) + 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.transport.write(frame)
            self.stats.bytes_sent += len(frame)
            reply = self._await(self.seq)
            if reply is None:
                continue
            status, body = reply
            if status == Status.OK:
                return body
            if status in (Status.BAD_CRC, Status.BAD_LENGTH):
                self.stats.device_saw_errors += 1
                continue
            raise DeviceError(command, status)
        raise LinkError(f"no valid reply to {name} (sequence {self.seq}) after "
                        f"{self.retries + 1} tries; is the device connected and powered, and "
                        "the link's speed right?")

    def _await(self, seq: int):
        deadline = time.monotonic() + self.reply_timeout
        while (left := deadline - time.monotonic()) > 0:
            data = self.transport.read(left)
            self.stats.bytes_received += len(data)
            for code, got_seq, body, check in self.parser.feed(data):
                if check == Status.OK and got_seq == seq:
                    return code, body
                self.stats.bad_replies += 1
        # Whatever half-frame is left belongs to a reply given up on.
        self.parser.drop_partial()
        return None

    # ---- commands -----------------------------------------------------------------------------
    def identify(self) -> Identity:
        try:
            return Identity.parse(self.request(Command.IDENTIFY))
        except proto.ProtocolError as e:
            raise LinkError(str(e)) from e

    def reset(self) -> None:
        self.request(Command.RESET)
        self._segment = None

    def status(self) -> tuple[RunState, int, int]:
        state, index, cycles = struct.unpack(proto.STATUS_FORMAT, self.request(Command.STATUS))
        return RunState(state), index, cycles

    def write(self, target: Target, address: int, data: bytes, flags: int = 0,
              count: int = 0) -> None:
        self.request(Command.WRITE, proto.args(target, address, count, flags) + data)

    def clear(self, target: Target, address: int, count: int) -> None:
        step = 0xFFFF
        for a in range(address, address + count, step):
            self.request(Command.CLEAR, proto.args(target, a, min(step, address + count - a)))

    def read(self, target: Target, address: int, count: int, word_bytes: int) -> bytes:
        out = bytearray()
        step = proto.MAX_PAYLOAD // word_bytes
        for a in range(address, address + count, step):
            n = min(step, address + count - a)
            data = self.request(Command.READ, proto.args(target, a, n))
            if len(data) != n * word_bytes:
                raise LinkError(f"READ returned {len(data)} bytes, expected {n * word_bytes}")
            out += data
        return bytes(out)

    def write_words(self, target: Target, address: int, data: bytes, word_bytes: int,
                    progress=None, flags: int = 0) -> None:
        """Consecutive words, as many per frame as fit."""
        per = (proto.MAX_PAYLOAD - proto.ARGS_BYTES) // word_bytes * word_bytes
        for off in range(0, len(data), per):
            self.write(target, address + off // word_bytes, data[off:off + per], flags)
            if progress:
                progress(len(data[off:off + per]))

    def write_sdram(self, address: int, data: bytes, progress=None) -> None:
        """SDRAM words (little-endian u16 each) from word ``address`` on."""
        self.write_words(Target.SDRAM, address, data, proto.SDRAM_WORD_BYTES, progress)

    def read_sdram(self, address: int, count: int) -> bytes:
        return self.read(Target.SDRAM, address, count, proto.SDRAM_WORD_BYTES)

    # ---- a model and an image ------------------------------------------------------------------
    def load_model(self, program, progress=None) -> int:
        """Reset the device and upload the program, codebooks, biases and sparse weights.
        Returns the bytes sent."""
        before = self.stats.bytes_sent
        self.reset()
        ident = self.identify()
        _check_identity(ident, program)
        cfg = program.cfg
        units = unit_bytes(cfg)
        nb = units[Target.PROGRAM]
        words = b"".join(w.to_bytes(nb, "little") for w in program.segment_words(0))
        self._program, self._segment, self._segment_counters = program, 0, None
        if program.input_sdram is not None:     # the parameters lie in the SDRAM
            self.write_words(Target.PROGRAM, 0, words, nb)
            for address, block in program.sdram_blocks:
                self.write_sdram(address, block.astype("<u2").tobytes(),
                                 progress and (lambda n: progress(n // 2)))
            return self.stats.bytes_sent - before
        self.clear(Target.WEIGHTS, 0, program.weight_words)
        self.write_words(Target.PROGRAM, 0, words, nb)
        for address, values in program.codebooks:
            self.write_words(Target.CODEBOOK, address, values.astype("<i2").tobytes(),
                             units[Target.CODEBOOK])
        self.write_words(Target.BIAS, 0, program.biases.astype("<i4").tobytes(),
                         units[Target.BIAS])
        room = (proto.MAX_PAYLOAD - proto.ARGS_BYTES) * 8
        per = min(0xFFFF, room // entry_bits(program.index_bits))
        for stream in program.weights:
            pos = stream.start
            for off in range(0, len(stream.entries), per):
                chunk = stream.entries[off:off + per]
                self.write(Target.WEIGHTS, pos, pack_entries(chunk, program.index_bits),
                           flags=program.index_bits, count=len(chunk))
                pos += entry_span(chunk)
                if progress:
                    progress(len(chunk))
        return self.stats.bytes_sent - before

    def load_image(self, program, pixels: np.ndarray) -> None:
        """The image as its raw pixels when it has fewer channels than the device has lanes
        (the device pads each word), else as whole feature words."""
        data, word_bytes = program.input_bytes(pixels)
        if program.input_sdram is not None:
            # word_bytes of every feature word (a packed SDRAM write when fewer than PC):
            # each is PC / 2 SDRAM words from the image's base.
            per_word = program.cfg.pc // proto.SDRAM_WORD_BYTES
            packed = word_bytes < program.cfg.pc
            unit = word_bytes if packed else proto.SDRAM_WORD_BYTES
            per = (proto.MAX_PAYLOAD - proto.ARGS_BYTES) // unit * unit
            for off in range(0, len(data), per):
                address = program.input_sdram + (off // word_bytes * per_word if packed
                                                 else off // unit)
                self.write(Target.SDRAM, address, data[off:off + per],
                           flags=word_bytes if packed else 0)
            return
        self.write_words(Target.FEATURE, program.input_base, data, word_bytes,
                         flags=word_bytes if word_bytes < program.cfg.pc else 0)

    def run(self, program=None, timeout: float = 3600.0, poll: float = 0.02,
            progress=None) -> int:
        """Start the program (default: the one load_model uploaded) and wait for it; returns
        the device's cycle count. A program in segments (DeviceProgram.segments) runs segment
        by segment, each written to the program memory before its RUN; its cycles are the
        segments' sum, and read_counters / read_waits then give every segment's counters."""
        program = program or self._program
        if program is None or len(program.segment_ranges()) == 1:
            self._segment_counters = None
            return self._run_once(timeout, poll, progress)
        nb = unit_bytes(program.cfg)[Target.PROGRAM]
        total, counters, waits = 0, [], [0]
        for k, (start, end) in enumerate(program.segment_ranges()):
            if self._segment != k:
                self.write_words(Target.PROGRAM, 0, b"".join(
                    w.to_bytes(nb, "little") for w in program.segment_words(k)), nb)
                self._segment = k
            total += self._run_once(timeout, poll,
                                    progress and (lambda i, s=start: progress(s + i)))
            seg_counters, seg_waits = self._counter_words(end - start, program.cfg)
            counters += seg_counters
            waits[-1:] = [*seg_waits[:-1], waits[-1] + seg_waits[-1]]
        self._segment_counters = (counters, waits)
        return total

    def _counter_words(self, ops: int, cfg) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The last run's first ``ops`` counters, and their waits with END's after them (the
        counter memory's words from program_depth on)."""
        counters = struct.unpack(f"<{ops}I", self.read(Target.COUNTERS, 0, ops, 4))
        waits = struct.unpack(f"<{ops + 1}I", self.read(Target.COUNTERS, cfg.program_depth,
                                                        ops + 1, 4))
        return counters, waits

    def _segmented_counters(self, program):
        if self._segment_counters is None:
            raise ValueError("this program runs in segments: its counters are gathered by "
                             "Driver.run(program); run it first")
        return self._segment_counters

    def _run_once(self, timeout: float, poll: float, progress) -> int:
        self.request(Command.RUN)
        deadline = time.monotonic() + timeout
        while True:
            state, index, cycles = self.status()
            if progress:
                progress(index)
            if state == RunState.DONE:
                return cycles
            if state == RunState.IDLE:
                raise DeviceError(Command.RUN, Status.BAD_ARGUMENT)
            if time.monotonic() > deadline:
                raise LinkError(f"the device still runs op {index} after {timeout:.0f} s")
            time.sleep(poll)

    def read_logits(self, program) -> np.ndarray:
        if program.result_sdram is not None:
            per = program.cfg.pc // proto.SDRAM_WORD_BYTES
            return program.logits(self.read_sdram(program.result_sdram,
                                                  program.result_words * per))
        data = self.read(Target.FEATURE, program.result_base, program.result_words,
                         program.cfg.pc)
        return program.logits(data)

    def read_counters(self, program) -> dict[str, int]:
        """Each op's cycles in the last run, keyed by op name."""
        if len(program.segment_ranges()) > 1:
            values = self._segmented_counters(program)[0]
        else:
            values = struct.unpack(f"<{len(program.ops)}I",
                                   self.read(Target.COUNTERS, 0, len(program.ops), 4))
        return {op.name: v for op, v in zip(program.ops, values)}

    def read_waits(self, program) -> dict[str, int]:
        """The cycles each op (and END) of the last run waited for the DMA queue: the
        counters' words from program_depth on (a segmented run: END's are summed)."""
        if len(program.segment_ranges()) > 1:
            values = self._segmented_counters(program)[1]
        else:
            values = self._counter_words(len(program.ops), program.cfg)[1]
        return {**{op.name: v for op, v in zip(program.ops, values)}, "END": values[-1]}


def _name(code: int, kind=Command) -> str:
    return kind(code).name if code in kind._value2member_map_ else f"{code:#04x}"


def _check_identity(ident: Identity, program) -> None:
    """The device must be the one the program was compiled for: its IDENTIFY reply equals the
    reply a device of the program's configuration gives (protocol version included)."""
    wrong = ident.differences(Identity.of(program.cfg))
    if wrong:
        raise LinkError("the device does not match the program: " + "; ".join(wrong)
                        + ". Compile the model for this device's configuration.")
