"""The device's blocks one at a time in the Amaranth simulator, each against a plain software
reference: the link's frame receiver and transmitter (bytes in, frames out, as
hw.protocol.FrameParser and encode_frame), the runner's buffer reader, buffer writer and sum
serialiser, the weight decoder (hw.layout.pack_entries' inverse), and the requantiser
(golden.reference_int.requantize). Each states its latency in hw/timing.py; these tests hold
the RTL to it, so a bug is found in seconds rather than through a whole board."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from golden import numerics as nx
from golden import reference_int
from hw import protocol as proto
from hw.config import AcceleratorConfig
from hw.conv_engine import Requantizer
from hw.device import WeightDecoder
from hw.layout import pack_entries, sum_words, weight_entries
from hw.link import FrameReceiver, FrameTransmitter
from hw.runner import BufferReader, BufferWriter, SumSerializer
from hw.timing import FM_READ_LATENCY, READER_LATENCY, REQUANT_LATENCY, WRITER_LATENCY

CFG = AcceleratorConfig(mac_units=64)


def simulate(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


# ---- the link ----------------------------------------------------------------------------------

class _ReceiverTop(Elaboratable):
    """A FrameReceiver with its frame buffer, as the device has it."""

    def __init__(self, timeout):
        self.rx = FrameReceiver(timeout)
        self.buf = memory.Memory(shape=8, depth=proto.MAX_PAYLOAD, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx, m.submodules.buf = self.rx, self.buf
        wr = self.buf.write_port()
        self.rd = self.buf.read_port(domain="comb")
        m.d.comb += [wr.addr.eq(self.rx.buf_addr), wr.data.eq(self.rx.buf_data),
                     wr.en.eq(self.rx.buf_en)]
        return m


def receive(data: bytes, timeout: int = 64, gaps: dict | None = None):
    """Bytes in (``gaps``: idle cycles before byte i) -> the frames the receiver holds, each
    taken as soon as it is held: (code, seq, payload, check)."""
    top = _ReceiverTop(timeout)
    rx = top.rx
    frames, finished = [], []

    async def source(ctx):
        for i, b in enumerate(data):
            ctx.set(rx.i.valid, 0)
            for _ in range((gaps or {}).get(i, 0)):
                await ctx.tick()
            ctx.set(rx.i.payload, b)
            ctx.set(rx.i.valid, 1)
            await ctx.tick().until(rx.i.ready)
        ctx.set(rx.i.valid, 0)
        for _ in range(timeout + 20):
            await ctx.tick()
        finished.append(True)

    async def sink(ctx):
        while not finished:
            await ctx.tick()
            if not ctx.get(rx.frame):
                continue
            length = ctx.get(rx.length) if ctx.get(rx.check) == proto.Status.OK else 0
            payload = bytearray()
            for a in range(length):
                ctx.set(top.rd.addr, a)
                payload.append(ctx.get(top.rd.data))
            frames.append((ctx.get(rx.code), ctx.get(rx.seq), bytes(payload),
                           proto.Status(ctx.get(rx.check))))
            ctx.set(rx.taken, 1)
            await ctx.tick()
            ctx.set(rx.taken, 0)

    simulate(top, source, sink)
    return frames


def test_frame_receiver_matches_the_protocol_parser_on_good_bad_and_garbled_frames():
    rng = random.Random(11)
    frames = [proto.encode_frame(rng.randrange(1, 8), s, rng.randbytes(rng.randrange(0, 40)))
              for s in range(6)]
    bad_crc = bytearray(frames[2])
    bad_crc[-2] ^= 0x40
    too_long = bytes(proto.SYNC) + bytes([3, 9]) + (proto.MAX_PAYLOAD + 1).to_bytes(2, "little")
    stream = (b"\x00\xa5\x13" + frames[0] + b"\xa5\xa5" + frames[1] + bytes(bad_crc) + too_long
              + b"noise\x5a" + frames[3] + frames[4] + frames[5])
    # (A payload matters only in a frame that checks out: the device answers the others with
    # their error alone.)
    want = [(c, s, p if k == proto.Status.OK else b"", k)
            for c, s, p, k in proto.FrameParser().feed(stream)]
    assert [f[3] for f in want] == [proto.Status.OK] * 2 + [proto.Status.BAD_CRC,
                                                             proto.Status.BAD_LENGTH] + [
        proto.Status.OK] * 3
    assert receive(stream) == want


def test_frame_receiver_drops_a_frame_that_stops_arriving():
    cut = proto.encode_frame(proto.Command.WRITE, 1, b"0123456789")[:9]
    whole = proto.encode_frame(proto.Command.IDENTIFY, 2)
    # After the cut frame the link is silent for longer than the timeout.
    got = receive(cut + whole, timeout=32, gaps={len(cut): 40})
    assert got == [(proto.Command.IDENTIFY, 2, b"", proto.Status.OK)]


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_frame_transmitter_sends_what_encode_frame_encodes(stall):
    rng = random.Random(5)
    replies = [(rng.randrange(0, 6), rng.randrange(256), rng.randbytes(n)) for n in (0, 1, 7, 64)]
    tx = FrameTransmitter()
    out = bytearray()

    async def driver(ctx):
        for code, seq, payload in replies:
            ctx.set(tx.code, code)
            ctx.set(tx.seq, seq)
            ctx.set(tx.length, len(payload))
            ctx.set(tx.start, 1)
            await ctx.tick()
            ctx.set(tx.start, 0)
            for b in payload:
                ctx.set(tx.payload.payload, b)
                ctx.set(tx.payload.valid, 1)
                await ctx.tick().until(tx.payload.ready & tx.o.ready)
            ctx.set(tx.payload.valid, 0)
            await ctx.tick().until(~tx.busy)

    async def sink(ctx):
        while True:
            ready = rng.random() >= stall
            ctx.set(tx.o.ready, ready)
            await ctx.tick()

    sim = Simulator(tx)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_process(sink)

    async def collect(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(tx.o.valid, tx.o.ready,
                                                                  tx.o.payload):
            if valid and ready:
                out.append(payload)
    sim.add_process(collect)
    sim.run_until(1e-8 * 4000)
    assert bytes(out) == b"".join(proto.encode_frame(c, s, p) for c, s, p in replies)


# ---- the runner's stream blocks ----------------------------------------------------------------

def test_buffer_reader_streams_its_words_with_the_stated_latency_under_backpressure():
    dut = BufferReader(CFG, CFG.fm_addr_bits)
    memory_words = {a: [(a * 7 + t) % 256 for t in range(CFG.pc)] for a in range(64)}
    got, first = [], []
    rng = random.Random(3)

    async def tb(ctx):
        ctx.set(dut.base, 10)
        ctx.set(dut.count, 20)
        ctx.set(dut.start, 1)
        ctx.set(dut.o.ready, 1)
        cycle, addrs = 0, [None] * FM_READ_LATENCY
        while len(got) < 20:
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycle += 1
            if addrs[0] is not None:           # the buffer's read data, FM_READ_LATENCY later
                ctx.set(dut.rd_data, memory_words[addrs[0]])
            addrs = addrs[1:] + [ctx.get(dut.rd_addr) % 64]
            ready = not first or rng.random() > 0.3
            ctx.set(dut.o.ready, ready)
            if ctx.get(dut.o.valid):
                if not first:
                    first.append(cycle)
                if ready:
                    got.append([int(v) for v in ctx.get(dut.o.payload)])
            assert cycle < 500

    simulate(dut, tb)
    assert first == [READER_LATENCY]
    assert got == [memory_words[a] for a in range(10, 30)]


def test_buffer_reader_pairs_take_the_second_map_from_the_fields_held_at_start():
    """An ADD's reader reads word i of its first map, then word i of the second, which starts
    ``count`` words after ``base``. The fields change in the very cycle of ``start`` (an op
    whose ``dma_wait`` lets it start in its first cycle in START, fields decoded the cycle
    before): the second map's address comes from them, not from the op before."""
    dut = BufferReader(CFG, CFG.fm_addr_bits)
    memory_words = {a: [(a * 5 + t) % 256 for t in range(CFG.pc)] for a in range(64)}
    got = []

    async def tb(ctx):
        ctx.set(dut.base, 3)               # an op before: its fields held for a while
        ctx.set(dut.count, 30)
        ctx.set(dut.pairs, 1)
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.base, 10)              # the ADD's fields and start in the same cycle
        ctx.set(dut.count, 6)
        ctx.set(dut.start, 1)
        ctx.set(dut.o.ready, 1)
        addrs = [None] * FM_READ_LATENCY
        for _ in range(100):
            await ctx.tick()
            ctx.set(dut.start, 0)
            if addrs[0] is not None:
                ctx.set(dut.rd_data, memory_words[addrs[0]])
            addrs = addrs[1:] + [ctx.get(dut.rd_addr) % 64]
            if ctx.get(dut.o.valid):
                got.append([int(v) for v in ctx.get(dut.o.payload)])
            if len(got) == 12:
                break

    simulate(dut, tb)
    assert got == [memory_words[a] for i in range(6) for a in (10 + i, 16 + i)]


def test_buffer_writer_writes_consecutive_words_and_says_done_after_the_last():
    dut = BufferWriter(CFG, CFG.fm_addr_bits)
    writes, done_at = [], []

    async def tb(ctx):
        ctx.set(dut.base, 100)
        ctx.set(dut.count, 5)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for cycle in range(20):
            beat = cycle % 2 == 0 and len(writes) < 5
            ctx.set(dut.i.valid, beat)
            ctx.set(dut.i.payload, [cycle] * CFG.pc)
            if ctx.get(dut.wr_en):
                writes.append((cycle, ctx.get(dut.wr_addr), int(ctx.get(dut.wr_data)[0])))
            if ctx.get(dut.done) and not done_at:
                done_at.append(cycle)
            await ctx.tick()

    simulate(dut, tb)
    assert [(a, v) for _, a, v in writes] == [(100 + k, 2 * k) for k in range(5)]
    assert done_at == [writes[-1][0] + WRITER_LATENCY]


def test_sum_serializer_writes_the_sum_words_of_hw_layout():
    dut = SumSerializer(CFG, nx.LOGIT_BITS)
    rng = np.random.default_rng(2)
    sums = rng.integers(0, 1 << 32, 3 * CFG.pc, dtype=np.uint64).astype(np.uint32)
    out = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for g in range(3):
            ctx.set(dut.i.payload, [int(v) for v in sums[g * CFG.pc:(g + 1) * CFG.pc]])
            ctx.set(dut.i.valid, 1)
            while True:
                out.append([int(v) for v in ctx.get(dut.o.payload)])
                taken = ctx.get(dut.i.ready)
                await ctx.tick()
                if taken:
                    break
        ctx.set(dut.i.valid, 0)

    simulate(dut, tb)
    np.testing.assert_array_equal(np.array(out), sum_words(sums, CFG))


# ---- the weight decoder ------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [4, 6, 8])
def test_weight_decoder_writes_each_entry_at_its_position(bits):
    rng = np.random.default_rng(bits)
    cfg = AcceleratorConfig(mac_units=16, index_bits=8, weight_depth=64)
    dense = np.where(rng.random(40 * cfg.lanes) < 0.3,
                     rng.integers(1, 1 << bits, 40 * cfg.lanes), 0)
    dense[:50] = 0                           # a long zero run: filler entries
    entries = weight_entries(dense)
    data = pack_entries(entries, bits)
    start = 3 * cfg.lanes + 5                # a WRITE's address need not start a word
    dut = WeightDecoder(cfg)
    seen = np.zeros(64 * cfg.lanes, np.int64)
    writes = []

    async def tb(ctx):
        ctx.set(dut.position, start)
        ctx.set(dut.count, len(entries))
        ctx.set(dut.index_bits, bits)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        k, cycles = 0, 0
        while (ctx.get(dut.left) or ctx.get(dut.busy)) and cycles < 20_000:
            ctx.set(dut.i.valid, k < len(data))
            ctx.set(dut.i.payload, data[k] if k < len(data) else 0)
            if ctx.get(dut.wr_valid):
                lanes = ctx.get(dut.wr_lanes)
                assert lanes and lanes & (lanes - 1) == 0, "one index per write"
                lane = lanes.bit_length() - 1
                pos = ctx.get(dut.wr_addr) * cfg.lanes + lane
                seen[pos] = (ctx.get(dut.wr_data) >> (lane * cfg.index_bits)) & 0xFF
                writes.append(pos)
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready) and k < len(data):
                k += 1
            await ctx.tick()
            cycles += 1

    simulate(dut, tb)
    assert len(writes) == len(entries)
    want = np.zeros_like(seen)
    want[start:start + len(dense)] = dense
    np.testing.assert_array_equal(seen, want)


# ---- the requantiser ---------------------------------------------------------------------------

def test_requantizer_equals_golden_on_random_and_extreme_values_with_its_stated_latency():
    """One value a cycle with M and S held (the engine holds them for a whole layer): every
    result appears exactly REQUANT_LATENCY cycles after its accumulator."""
    rng = np.random.default_rng(7)
    extremes = [nx.ACC_MIN, nx.ACC_MAX, 0, -1, 1, 255 << 20, -(1 << 30)]
    params = [(1 << 15, 1), ((1 << 16) - 1, nx.SHIFT_MAX), (1 << 15, 35), (40000, 20)]
    params += [(int(rng.integers(1 << 15, 1 << 16)), int(rng.integers(nx.SHIFT_MIN,
                                                                      nx.SHIFT_MAX + 1)))
               for _ in range(8)]
    dut = Requantizer(CFG)
    L = REQUANT_LATENCY
    for mult, shift in params:
        accs = extremes + [int(v) for v in rng.integers(nx.ACC_MIN, nx.ACC_MAX, 60)]
        # Small accumulators too, so that the outputs are not all clamped at a large shift.
        span = 1 << min(shift + 9, nx.ACC_BITS - 1)
        accs += [int(v) for v in rng.integers(-span, span, 60)]
        got = []

        async def tb(ctx, accs=accs, mult=mult, shift=shift):
            ctx.set(dut.mult, mult)
            ctx.set(dut.shift, shift)
            for acc in accs + [0] * L:
                ctx.set(dut.acc, acc)
                await ctx.tick()
                got.append(ctx.get(dut.y))

        simulate(dut, tb)
        want = [int(v) for v in reference_int.requantize(np.array(accs, np.int64), mult, shift)]
        assert got[L - 1:L - 1 + len(accs)] == want, (mult, shift)
        assert got[L - 2:L - 2 + len(accs)] != want, "the result came early"


def _latency(dut, inputs: dict, ports: dict, last: int) -> int:
    """Cycles from the acceptance of input beat ``last`` (every stream fed a beat a cycle,
    the output always ready) to the first output beat being valid."""
    seen = {}

    async def tb(ctx):
        for k, v in ports.items():
            ctx.set(getattr(dut, k), v)
        ctx.set(dut.o.ready, 1)
        beats = len(next(iter(inputs.values())))
        for n in range(beats + 10):
            for name, values in inputs.items():
                port = getattr(dut, name)
                ctx.set(port.valid, n < beats)
                if n < beats:
                    ctx.set(port.payload, values[n])
            if ctx.get(dut.o.valid) and "out" not in seen:
                seen["out"] = n
            await ctx.tick()
            if n == last:
                seen["in"] = n

    simulate(dut, tb)
    return seen["out"] - seen["in"]


def test_the_stream_units_have_their_stated_latencies():
    from hw.bypass import BypassAddUnit
    from hw.pool import GlobalSumUnit, MaxPoolUnit
    from hw.timing import ADD_LATENCY, POOL_LATENCY, SUM_LATENCY
    pixels = [[n] * CFG.pc for n in range(9)]
    # A 3x3 map pools to one pixel, completed by its last beat.
    assert _latency(MaxPoolUnit(CFG), {"i": pixels},
                    {"in_h": 3, "in_w": 3, "out_h": 1, "out_w": 1}, 8) == POOL_LATENCY
    assert _latency(GlobalSumUnit(CFG), {"i": pixels}, {"pixels": 9}, 8) == SUM_LATENCY
    assert _latency(BypassAddUnit(CFG), {"a": pixels[:1], "b": pixels[:1]},
                    {"mult_a": 1 << 15, "mult_b": 1 << 15, "shift": 16}, 0) == ADD_LATENCY
