"""The golden device: the device of hw/device.py as a Python object that speaks the same
protocol over the same bytes, with the same memories, running the stored program with the
golden kernels.

It decodes what the host wrote through the layouts the hardware defines (hw.layout: op words,
banked feature maps, weight words from the sparse entries, sums; hw.protocol: frames, units),
so it checks the host's side (driver and compiler) without RTL in the loop, fast enough for
every test run. Addresses wrap at each memory's depth, as the hardware's truncated addresses
do (hw/config.py makes every depth a power of two). Its cycle counters are the cycle model's
(hw.timing); tests/test_device.py replays one request stream into it and into the RTL and
compares every reply byte, counters included.
"""

from __future__ import annotations

import struct

import numpy as np

from golden import kernels
from golden.network import ConvSpec
from golden.quantize import QAdd, QConv
from hw import protocol as proto
from hw.config import AcceleratorConfig
from hw.layout import (DMA_QUEUE, DMATarget, LayerDescriptor, OpKind, bytes_of_sdram, codebook_of_sdram,
                       decode_op, feature_map, feature_words, groups, sdram_of_bytes,
                       sdram_unit_words, sum_words, unpack_entries, weight_lanes_of_units,
                       weight_tensor, skip_tensor, skip_unit_bytes, skip_words_of_units)
from hw.layout import memtest_address_word, memtest_pattern
from hw.protocol import (Command, MemTestPhase, RunState, Status, Target, identity_bytes,
                         unit_bytes)
from hw.sdram_chip import MT48LC16M16A2
from hw.timing import OP_OVERHEAD, op_cycles, sequence_cycles, transfer_cycles

__all__ = ["GoldenDevice"]


class GoldenDevice:
    """``receive(bytes) -> bytes``: request bytes in, reply bytes out. ``link_idle()`` is the
    receiver's timeout: a half-received frame is dropped."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        # The feature-map memories A and B, one after the other (``_host_rows``: how the
        # host's addresses reach them).
        self.fm = np.zeros((cfg.fm_depth + cfg.fm_b_depth, cfg.pc), np.uint8)
        self.fm_a, self.fm_b = self.fm[:cfg.fm_depth], self.fm[cfg.fm_depth:]
        self.squeeze = np.zeros((cfg.squeeze_depth, cfg.pc), np.uint8)
        # Dense: a word's PO*PC indices (without codebook tables, values); zero-skipping: its
        # SDRAM unit's bytes
        # (hw.layout.skip_units), decoded when a convolution reads them.
        self.weights = np.zeros((cfg.weight_depth, skip_unit_bytes(cfg)) if cfg.zero_skipping
                                else (cfg.weight_depth, cfg.lanes), np.int64)
        self.codebook = np.zeros(cfg.codebook_tables * cfg.codebook_entries, np.int64)
        self.bias = np.zeros(cfg.bias_depth * cfg.po, np.int64)
        self.sdram = np.zeros(MT48LC16M16A2.words, np.uint16)
        self.program = [0] * cfg.program_depth
        self.counters = [0] * (2 * cfg.program_depth)     # cycles, then waits
        self.parser = proto.FrameParser()
        self.state, self.op_index, self.cycles = RunState.IDLE, 0, 0
        # state, phase, failed, fail phase, address, expected, got, errors, reads checked
        self.selftest_result = (0, 0, 0, 0, 0, 0, 0, 0, 0)

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
        if code == Command.ECHO:
            return Status.OK, payload
        if code == Command.SELFTEST:
            if len(payload) != struct.calcsize(proto.SELFTEST_ARGS):
                return Status.BAD_LENGTH, b""
            self._selftest(*struct.unpack(proto.SELFTEST_ARGS, payload))
            return Status.OK, b""
        if code == Command.SELFTEST_RESULT:
            return Status.OK, struct.pack(proto.SELFTEST_FORMAT, *self.selftest_result)
        if code not in (Command.WRITE, Command.CLEAR, Command.READ):
            return Status.UNKNOWN_COMMAND, b""
        if len(payload) < proto.ARGS_BYTES:
            return Status.BAD_LENGTH, b""
        target, flags, count, address = proto.parse_args(payload)
        body = payload[proto.ARGS_BYTES:]
        if code == Command.WRITE:
            return self._write(target, flags, count, address, body), b""
        if code == Command.CLEAR:
            if target == Target.WEIGHTS:
                self.weights[_span(address, count, self.cfg.weight_depth)] = 0
            elif target == Target.FEATURE:
                self.fm[self._host_rows(address, count)] = 0
            else:
                return Status.BAD_ARGUMENT, b""
            return Status.OK, b""
        return self._read(target, count, address)

    def _write(self, target, flags, count, address, body) -> Status:
        cfg = self.cfg
        if target == Target.WEIGHTS:
            if not 0 < flags <= cfg.index_bits or not cfg.codebooks:
                return Status.BAD_ARGUMENT
            return self._decode_weights(flags, count, address, body)
        units = unit_bytes(cfg)
        if target not in units or (target == Target.FEATURE and flags > cfg.pc) or (
                target == Target.SDRAM and flags >= cfg.pc and flags != 0):
            return Status.BAD_ARGUMENT
        if target == Target.SDRAM and flags:
            # Packed: PC - n zero bytes after every n bytes, then 16-bit words (a trailing odd
            # byte is not written).
            n = flags
            data = np.frombuffer(body, np.uint8)
            whole = len(data) // n
            padded = np.zeros((whole, cfg.pc), np.uint8)
            padded[:, :n] = data[:whole * n].reshape(whole, n)
            stream = np.concatenate([padded.reshape(-1), data[whole * n:]])
            words = stream[:len(stream) // 2 * 2].view("<u2")
            self.sdram[_span(address, len(words), len(self.sdram))] = words
            return Status.OK
        n = flags if target == Target.FEATURE and 0 < flags < cfg.pc else units[target]
        whole = len(body) // n      # a trailing part-unit is never written, as in hardware
        for i in range(whole):
            unit = body[i * n:(i + 1) * n]
            a = address + i
            if target == Target.FEATURE:            # packed words: the other lanes 0
                self.fm[self._host_rows(a, 1)] = np.frombuffer(unit.ljust(cfg.pc, b"\0"),
                                                               np.uint8)
            elif target == Target.PROGRAM:
                self.program[a % cfg.program_depth] = int.from_bytes(unit, "little")
            elif target == Target.SDRAM:
                self.sdram[a % len(self.sdram)] = int.from_bytes(unit, "little")
            elif target == Target.CODEBOOK:
                v = int.from_bytes(unit, "little") & ((1 << cfg.value_bits) - 1)
                self.codebook[a % len(self.codebook)] = v - (1 << cfg.value_bits) * (
                    v >> (cfg.value_bits - 1))
            else:
                self.bias[a % len(self.bias)] = int.from_bytes(unit, "little", signed=True)
        return Status.OK

    def _decode_weights(self, bits, count, address, body) -> Status:
        """The weight decoder (hw/device.py): position ``address`` advances by gap + 1 per
        entry; a frame too short for its entries writes nothing."""
        try:
            entries = unpack_entries(body, count, bits)
        except ValueError:
            return Status.BAD_LENGTH
        lanes = self.cfg.lanes
        pos = address + np.cumsum(entries[:, 0] + 1) - 1
        self.weights[(pos // lanes) % self.cfg.weight_depth, pos % lanes] = entries[:, 1]
        return Status.OK

    def _host_rows(self, address: int, count: int) -> np.ndarray:
        """Rows of ``self.fm`` that host FEATURE addresses reach: the address bits of A, one
        more choosing B (whose own address bits wrap the rest)."""
        d, b = self.cfg.fm_depth, self.cfg.fm_b_depth
        a = _span(address, count, 2 * d)
        return np.where(a < d, a, d + (a - d) % b)

    def _read(self, target, count, address) -> tuple[Status, bytes]:
        if target == Target.FEATURE and count * self.cfg.pc <= proto.MAX_PAYLOAD:
            return Status.OK, self.fm[self._host_rows(address, count)].tobytes()
        if target == Target.SDRAM and count * proto.SDRAM_WORD_BYTES <= proto.MAX_PAYLOAD:
            return Status.OK, self.sdram[_span(address, count, len(self.sdram))].astype(
                "<u2").tobytes()
        if target == Target.COUNTERS and count * 4 <= proto.MAX_PAYLOAD:
            values = [self.counters[(address + i) % len(self.counters)] for i in range(count)]
            return Status.OK, struct.pack(f"<{count}I", *values)
        return Status.BAD_ARGUMENT, b""

    # ---- the SDRAM self-test (hw/memtest.py): the same writes, reads and checks, at once -------
    def _selftest(self, base: int, words: int, seed: int) -> None:
        mem, n = self.sdram, len(self.sdram)
        bits = MT48LC16M16A2.addr_bits
        base %= 1 << bits
        words %= 1 << (bits + 1)
        first, errors, checked = None, 0, 0
        phase = 0

        def check(address, want):
            nonlocal first, errors, checked
            checked += 1
            got = int(mem[address % n])
            if got != want:
                errors += 1
                if first is None:
                    first = (phase, address % n, want, got)

        for b in range(MT48LC16M16A2.dq_bits):               # data bus: walking ones
            mem[base] = 1 << b
            check(base, 1 << b)
        phase = MemTestPhase.ADDRESS_BUS
        lines = [base] + [(base + (1 << k)) % (1 << bits) for k in range(bits)
                          if (1 << k) < words]
        for j, a in enumerate(lines):
            mem[a % n] = memtest_address_word(j - 1)
        for j, a in enumerate(lines):
            check(a, memtest_address_word(j - 1))
        phase = MemTestPhase.RANDOM
        pattern = memtest_pattern(seed, words)
        span = _span(base, words, 1 << bits)
        mem[span % n] = pattern
        got = mem[span % n]
        wrong = np.flatnonzero(got != pattern)
        checked += words
        errors += len(wrong)
        if len(wrong) and first is None:
            first = (phase, int(span[wrong[0]]) % n, int(pattern[wrong[0]]), int(got[wrong[0]]))
        f = first or (0, 0, 0, 0)
        self.selftest_result = (2, int(MemTestPhase.RANDOM), int(first is not None), int(f[0]),
                                f[1], f[2], f[3], errors, checked)

    # ---- the sequencer ------------------------------------------------------------------------
    def _run(self) -> None:
        """Every op in program order, each transfer carried out as late as the DMA queue lets
        it finish: when a later op's ``dma_wait`` waits for it, when a push needs its room
        (DMA_QUEUE in the queue, one being carried out), or at END. So a program whose
        ``dma_wait`` fields let an op start before what it reads is loaded, or overwrite what
        a STORE has still to read, gives a wrong answer here as it can on the RTL. Then the
        counters from the cycle model."""
        if self.state == RunState.RUNNING:
            return
        timed = []
        depth = self.cfg.program_depth
        queued: list[tuple[OpKind, dict]] = []

        def finish(keep: int) -> None:       # all but the last ``keep`` transfers, in order
            while len(queued) > keep:
                self._transfer(*queued.pop(0))

        def push(kind: OpKind, d: dict) -> int:
            finish(DMA_QUEUE)
            queued.append((kind, d))
            target = DMATarget(d["target"]) if kind == OpKind.LOAD else DMATarget.FEATURE
            return transfer_cycles(self.cfg, kind, target, d)

        for index in range(depth):
            self.op_index = index
            op = decode_op(self.program[index], self.cfg)
            if op["kind"] == OpKind.END:
                break
            store = None
            if op["kind"] in (OpKind.LOAD, OpKind.STORE):
                cycles = push(op["kind"], op["dma"])
            else:
                finish(op["dma_wait"])
                cycles = self._op(op)
                if op["then_store"]:
                    store = push(OpKind.STORE, op["dma"])
            timed.append((op["kind"], cycles, op["dma_wait"], store))
        finish(0)
        per, self.cycles, end_wait = sequence_cycles(timed, DMA_QUEUE)
        for i, (cycles, wait) in enumerate(per):
            self.counters[i], self.counters[depth + i] = cycles, wait
        if len(per) < depth:
            self.counters[depth + len(per)] = end_wait
        self.state = RunState.DONE

    def _op(self, op: dict) -> int:
        cfg = self.cfg
        src_fm, dst_fm = (self.fm_b, self.fm_a) if op["swap"] else (self.fm_a, self.fm_b)
        if op["kind"] == OpKind.ADD:
            n = op["in_words"]
            a = src_fm[_span(op["in_base"], n, len(src_fm))]
            b = src_fm[_span(op["in_base"] + n, n, len(src_fm))]
            qa = QAdd(op["conv"]["mult"], op["unit"]["mult_b"], op["conv"]["shift"])
            dst_fm[_span(op["out_base"], op["out_words"], len(dst_fm))] = \
                kernels.bypass_add(a, b, qa)[:op["out_words"]]
            return op_cycles(OpKind.ADD, cfg, None, n, op["out_words"]) - OP_OVERHEAD
        desc = LayerDescriptor.of_fields(op["conv"], cfg)[0]
        if op["kind"] == OpKind.CONV:
            src = self.squeeze if op["src_squeeze"] else src_fm
            dst = self.squeeze if op["dst_squeeze"] else dst_fm
            residual = op["unit"]["residual_mult"]
            qc = self._qconv(desc, relu=not residual)
            out = kernels.PreparedConv(qc).run(self._band_input(src, op["conv"], desc))
            # The engine writes whole output groups, at channel offset out_channel_base: PC
            # group j's pixels consecutively from out_base_word + j * out_plane.
            n_groups = groups(qc.spec.out_channels, cfg.pc)
            pixels = desc.out_h * desc.out_w
            at = (op["conv"]["out_base_word"] + np.arange(n_groups)[:, None]
                  * op["conv"]["out_plane"] + np.arange(pixels)[None, :])
            if residual:                 # the accumulators, with the residual's bytes added
                res = feature_map(self.squeeze[at.reshape(-1) % len(self.squeeze)], out.shape,
                                  cfg)
                out = kernels.bypass_add(res, out, QAdd(residual, desc.mult, desc.shift))
            words = feature_words(out, cfg).reshape(-1, pixels, cfg.pc)
            dst[at.reshape(-1) % len(dst)] = words.reshape(-1, cfg.pc)
            return op_cycles(OpKind.CONV, cfg, desc) - OP_OVERHEAD
        c, h, w = desc.in_channels, desc.in_h, desc.in_w
        x = self._load(src_fm, op["in_base"], (groups(c, cfg.pc) * cfg.pc, h, w))
        if op["kind"] == OpKind.MAXPOOL:
            words = feature_words(kernels.maxpool(x, desc.kernel, 2), cfg)
        else:
            words = sum_words(kernels.global_sum(x), cfg)
        dst_fm[_span(op["out_base"], len(words), len(dst_fm))] = words
        return op_cycles(op["kind"], cfg, desc, op["in_words"], op["out_words"]) - OP_OVERHEAD

    def _transfer(self, kind: OpKind, d: dict) -> None:
        """A LOAD or STORE (hw/dma.py): unit ``sdram_base + r * sdram_stride + i`` of the
        SDRAM and word ``buffer_base + r * buffer_stride + i`` of the memory, for every run r
        and word i; SDRAM and memory addresses wrap at their address bits."""
        cfg = self.cfg
        target = DMATarget(d["target"]) if kind == OpKind.LOAD else DMATarget.FEATURE
        k = sdram_unit_words(cfg, target)
        runs, n = np.arange(d["runs"])[:, None], np.arange(d["run_words"])[None, :]
        units = ((d["sdram_base"] + runs * d["sdram_stride"] + n) % (len(self.sdram) // k))
        sdram = (units.reshape(-1, 1) * k + np.arange(k)).reshape(-1)
        memory = {DMATarget.FEATURE: self.fm_a if kind == OpKind.LOAD else self.fm_b,
                  DMATarget.SQUEEZE: self.squeeze, DMATarget.WEIGHTS: self.weights,
                  DMATarget.CODEBOOK: self.codebook, DMATarget.BIAS: self.bias}[target]
        at = ((d["buffer_base"] + runs * d["buffer_stride"] + n) % len(memory)).reshape(-1)
        if kind == OpKind.STORE:
            self.sdram[sdram] = sdram_of_bytes(self.fm_b[at])
        elif target in (DMATarget.FEATURE, DMATarget.SQUEEZE):
            memory[at] = bytes_of_sdram(self.sdram[sdram], cfg.pc)
        elif target == DMATarget.WEIGHTS:
            if cfg.zero_skipping:
                self.weights[at] = bytes_of_sdram(self.sdram[sdram], skip_unit_bytes(cfg))
            else:
                self.weights[at] = weight_lanes_of_units(
                    bytes_of_sdram(self.sdram[sdram], 2 * k), cfg)
        elif target == DMATarget.CODEBOOK:
            self.codebook[at] = codebook_of_sdram(self.sdram[sdram], cfg.value_bits)
        else:
            self.bias[at] = bytes_of_sdram(self.sdram[sdram], 4).copy().view("<i4").reshape(-1)

    def _band_input(self, mem: np.ndarray, f: dict, d: LayerDescriptor) -> np.ndarray:
        """The input an engine pass reads, padding made explicit: input row ``y`` (of the
        whole map) of channel group ``g`` at the address the engine computes,
        ``pixel_origin + (y - y_origin) * in_w + pad + g * plane``; zero where a row or column
        falls outside the map. No assumption about where the buffer's rows start."""
        cfg, w, kh, kw, pw = self.cfg, d.in_w, d.kernel, d.kernel_w, d.pad_w
        cg = groups(d.in_channels, cfg.pc)
        plane = f["step_group"] + (kh - 1) * w + (kw - 1)
        top, need = f["y_origin"], (d.out_h - 1) * d.stride + kh
        rows = np.arange(need)
        rows = rows[(top + rows >= 0) & (top + rows < d.in_h)]
        addr = (f["pixel_origin"] + pw + rows[:, None, None] * w
                + np.arange(cg)[None, :, None] * plane + np.arange(w)[None, None, :])
        words = mem[addr % len(mem)]                                   # (rows, cg, w, PC)
        padded = np.zeros((cg * cfg.pc, need, w + 2 * pw), np.uint8)
        padded[:, rows, pw:pw + w] = words.transpose(1, 3, 0, 2).reshape(
            cg * cfg.pc, len(rows), w)
        return padded

    def _load(self, mem: np.ndarray, base: int, shape: tuple[int, int, int]) -> np.ndarray:
        """A feature map of ``shape`` (whole channel groups) from word ``base`` of ``mem``."""
        c, h, w = shape
        return feature_map(mem[_span(base, c // self.cfg.pc * h * w, len(mem))], shape, self.cfg)

    def _qconv(self, d: LayerDescriptor, relu: bool = True) -> QConv:
        """The layer as the engine reads it from the parameter memories: every channel of the
        channel groups, codebook table ``codebook_table``, biases from ``bias_base``
        (``relu=False``: its accumulators, for a residual to be added to). Unpadded: the
        input comes with its padding made explicit (``_band_input``)."""
        cfg = self.cfg
        po, kh, kw = cfg.po, d.kernel, d.kernel_w
        og, cg = groups(d.out_channels, po), groups(d.in_channels, cfg.pc)
        if cfg.zero_skipping:
            # ``steps``: the words of a pixel, which hold the weights' values (no codebook):
            # the layer as indices into a codebook of every value.
            units = self.weights[_span(d.weight_base, d.pixel_words, cfg.weight_depth)]
            values = skip_tensor(skip_words_of_units(units.astype(np.uint8), cfg), og, cg, kh,
                                 cfg, kw)
            top = 1 << (cfg.value_bits - 1)
            index_bits, table = cfg.value_bits, np.arange(-top, top)
            idx = (values + top).astype(np.uint16)
        else:
            words = self.weights[_span(d.weight_base, og * cg * kh * kw, cfg.weight_depth)]
            idx = weight_tensor(words, og, cg, kh, cfg, kw)
            if cfg.codebooks:
                entries = cfg.codebook_entries
                index_bits = cfg.index_bits
                table = self.codebook[_span(d.codebook_table * entries, entries,
                                            len(self.codebook))]
            else:              # the words hold values: indices into a codebook of every value
                top = 1 << (cfg.value_bits - 1)
                index_bits, table = cfg.value_bits, np.arange(-top, top)
                idx = (idx + top).astype(np.uint16)
        spec = ConvSpec("device", cg * cfg.pc, og * po, kh, d.stride, 0, relu=relu, kernel_w=kw)
        bias = self.bias[_span(d.bias_base * po, og * po, len(self.bias))]
        return QConv(spec, index_bits, cfg.value_bits, table.astype(np.int32), idx,
                     bias.astype(np.int32), d.mult, d.shift)


def _span(address: int, count: int, depth: int) -> np.ndarray:
    """``count`` consecutive addresses from ``address``, wrapping at ``depth`` as the
    hardware's truncated addresses do."""
    return (address + np.arange(count)) % depth
