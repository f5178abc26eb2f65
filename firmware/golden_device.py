"""The golden device: the device of hw/device.py as a Python object that speaks the same
protocol over the same bytes, with the same memories, running the stored program with the
golden kernels.

It decodes what the host wrote exactly as the hardware does (op words, banked feature maps,
weight words from the sparse entries, codebook tables, biases), so it checks the host's side
(driver and compiler) without RTL in the loop, fast enough for every test run. Its cycle
counters are the cycle model's (hw.program.op_cycles), which the RTL benches check.
"""

from __future__ import annotations

import struct

import numpy as np

from golden import kernels
from golden.network import ConvSpec
from golden.quantize import QConv
from hw import protocol as proto
from hw.config import AcceleratorConfig
from hw.device import identity_bytes, unit_bytes
from hw.program import END_CYCLES, decode_op, descriptor_of, op_cycles
from hw.protocol import Command, RunState, Status, Target
from hw.runner import OpKind

__all__ = ["GoldenDevice"]


class GoldenDevice:
    """``receive(bytes) -> bytes``: request bytes in, reply bytes out. ``link_idle()`` is the
    receiver's timeout: a half-received frame is dropped."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        lanes = cfg.po * cfg.pc
        self.fm = np.zeros((cfg.fm_depth, cfg.pc), np.uint8)
        self.squeeze = np.zeros((cfg.squeeze_depth, cfg.pc), np.uint8)
        self.weights = np.zeros((cfg.weight_depth, lanes), np.int64)
        self.codebook = np.zeros(cfg.codebook_tables * cfg.codebook_entries, np.int64)
        self.bias = np.zeros(cfg.bias_depth * cfg.po, np.int64)
        self.program = [0] * cfg.program_depth
        self.counters = [0] * cfg.program_depth
        self.parser = proto.FrameParser()
        self.state, self.op_index, self.cycles = RunState.IDLE, 0, 0

    # ---- the link -------------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        return b"".join(self._answer(*frame) for frame in self.parser.feed(data))

    def link_idle(self) -> None:
        self.parser.drop_partial()

    def _answer(self, code: int, seq: int, payload: bytes, check: Status) -> bytes:
        if check != Status.OK:
            return proto.encode_frame(check, seq)
        status, reply = self._execute(code, payload)
        return proto.encode_frame(status, seq, reply)

    def _execute(self, code: int, payload: bytes) -> tuple[Status, bytes]:
        if code == Command.IDENTIFY:
            return Status.OK, identity_bytes(self.cfg)
        if code == Command.RESET:
            self.state, self.op_index, self.cycles = RunState.IDLE, 0, 0
            return Status.OK, b""
        if code == Command.STATUS:
            return Status.OK, struct.pack(proto.STATUS_FORMAT, self.state, self.op_index,
                                          self.cycles)
        if code == Command.RUN:
            self._run()
            return Status.OK, b""
        if code not in (Command.WRITE, Command.CLEAR, Command.READ):
            return Status.UNKNOWN_COMMAND, b""
        if len(payload) < proto.ARGS_BYTES:
            return Status.BAD_LENGTH, b""
        target, flags, count, address = struct.unpack_from("<BBHI", payload)
        body = payload[proto.ARGS_BYTES:]
        if code == Command.WRITE:
            return self._write(target, flags, count, address, body), b""
        if code == Command.CLEAR:
            if target == Target.WEIGHTS:
                self.weights[_span(address, count, self.cfg.weight_depth)] = 0
            elif target == Target.FEATURE:
                self.fm[_span(address, count, self.cfg.fm_depth)] = 0
            else:
                return Status.BAD_ARGUMENT, b""
            return Status.OK, b""
        return self._read(target, count, address)

    def _write(self, target, flags, count, address, body) -> Status:
        cfg = self.cfg
        if target == Target.WEIGHTS:
            if not 0 < flags <= cfg.index_bits:
                return Status.BAD_ARGUMENT
            return self._decode_weights(flags, count, address, body)
        units = unit_bytes(cfg)
        if target not in units:
            return Status.BAD_ARGUMENT
        n = units[target]
        whole = len(body) // n      # a trailing part-unit is never written, as in hardware
        for i in range(whole):
            unit = body[i * n:(i + 1) * n]
            a = address + i
            if target == Target.FEATURE:
                self.fm[a % cfg.fm_depth] = np.frombuffer(unit, np.uint8)
            elif target == Target.PROGRAM:
                self.program[a % cfg.program_depth] = int.from_bytes(unit, "little")
            elif target == Target.CODEBOOK:
                v = int.from_bytes(unit, "little") & ((1 << cfg.value_bits) - 1)
                self.codebook[a % len(self.codebook)] = v - (1 << cfg.value_bits) * (
                    v >> (cfg.value_bits - 1))
            else:
                self.bias[a % len(self.bias)] = int.from_bytes(unit, "little", signed=True)
        return Status.OK

    def _decode_weights(self, bits, count, address, body) -> Status:
        width = proto.GAP_BITS + bits
        stream = int.from_bytes(body, "little")
        if count * width > len(body) * 8:
            return Status.BAD_LENGTH
        lanes = self.cfg.po * self.cfg.pc
        pos = address
        for i in range(count):
            entry = (stream >> (i * width)) & ((1 << width) - 1)
            pos += entry & ((1 << proto.GAP_BITS) - 1)
            self.weights[(pos // lanes) % self.cfg.weight_depth, pos % lanes] = \
                entry >> proto.GAP_BITS
            pos += 1
        return Status.OK

    def _read(self, target, count, address) -> tuple[Status, bytes]:
        if target == Target.FEATURE and count * self.cfg.pc <= proto.MAX_PAYLOAD:
            return Status.OK, self.fm[_span(address, count, self.cfg.fm_depth)].tobytes()
        if target == Target.COUNTERS and count * 4 <= proto.MAX_PAYLOAD:
            values = [self.counters[(address + i) % self.cfg.program_depth] for i in range(count)]
            return Status.OK, struct.pack(f"<{count}I", *values)
        return Status.BAD_ARGUMENT, b""

    # ---- the sequencer ------------------------------------------------------------------------
    def _run(self) -> None:
        if self.state == RunState.RUNNING:
            return
        self.cycles = 0
        for index in range(self.cfg.program_depth):
            self.op_index = index
            op = decode_op(self.program[index], self.cfg)
            if op["kind"] == OpKind.END:
                self.cycles += END_CYCLES
                break
            cycles = self._op(op)
            self.counters[index] = cycles
            self.cycles += cycles
        self.state = RunState.DONE

    def _op(self, op: dict) -> int:
        cfg, c = self.cfg, op["conv"]
        pc = cfg.pc
        if op["kind"] == OpKind.CONV:
            src = self.squeeze if op["src_squeeze"] else self.fm
            dst = self.squeeze if op["dst_squeeze"] else self.fm
            h, w = c["in_h"], c["in_w"]
            in_base = c["pixel_origin"] + c["pad"] * (w + 1)
            x = _planes(src, in_base, c["cgroups"], h * w, pc).reshape(-1, h, w)
            out = kernels.PreparedConv(self._qconv(c)).run(x)
            _store(dst, c["out_base_word"], out, pc)
            return op_cycles(OpKind.CONV, descriptor_of(c), 0, 0, cfg)
        groups = -(-c["in_channels"] // pc)
        h, w = c["in_h"], c["in_w"]
        x = _planes(self.fm, op["in_base"], groups, h * w, pc).reshape(-1, h, w)
        if op["kind"] == OpKind.MAXPOOL:
            _store(self.fm, op["out_base"], kernels.maxpool(x, 3, 2), pc)
        else:
            sums = kernels.global_sum(x).astype("<u4").view(np.uint8).reshape(groups, pc, 4)
            words = sums.transpose(0, 2, 1).reshape(groups * 4, pc)
            self.fm[op["out_base"]:op["out_base"] + len(words)] = words
        return op_cycles(op["kind"], None, op["in_words"], op["out_words"], cfg)

    def _qconv(self, c: dict) -> QConv:
        """The layer as the engine reads it from the parameter memories: every channel of the
        channel groups, codebook table ``codebook_table``, biases from ``bias_base``."""
        cfg = self.cfg
        po, pc, k = cfg.po, cfg.pc, c["kernel"]
        og, cg = c["ogroups"], c["cgroups"]
        words = self.weights[c["weight_base"]:c["weight_base"] + og * cg * k * k]
        idx = words.reshape(og, cg, k, k, po, pc).transpose(0, 4, 1, 5, 2, 3)
        idx = idx.reshape(og * po, cg * pc, k, k)
        table = self.codebook[c["codebook_table"] * cfg.codebook_entries:
                              (c["codebook_table"] + 1) * cfg.codebook_entries]
        spec = ConvSpec("device", cg * pc, og * po, k, c["stride"], c["pad"])
        bias = self.bias[c["bias_base"] * po:(c["bias_base"] + og) * po]
        return QConv(spec, cfg.index_bits, cfg.value_bits, table.astype(np.int32), idx,
                     bias.astype(np.int32), c["mult"], c["shift"])


def _span(address: int, count: int, depth: int) -> np.ndarray:
    return (address + np.arange(count)) % depth


def _planes(mem: np.ndarray, base: int, groups: int, plane: int, pc: int) -> np.ndarray:
    """Channel groups of a banked feature map -> (groups * PC, plane) uint8."""
    words = mem[_span(base, groups * plane, len(mem))]
    return words.reshape(groups, plane, pc).transpose(0, 2, 1).reshape(groups * pc, plane)


def _store(mem: np.ndarray, base: int, out: np.ndarray, pc: int) -> None:
    """(C, H, W) -> banked words from ``base``, PC channels per word group (C a multiple of
    PC, as the engine writes whole output groups)."""
    c, h, w = out.shape
    words = out.reshape(c // pc, pc, h * w).transpose(0, 2, 1).reshape(-1, pc)
    mem[_span(base, len(words), len(mem))] = words
