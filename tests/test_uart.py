"""The UART PHY (hw/uart.py) at bit level in the Amaranth simulator: a software sender drives
the receiver's line with seeded random bytes back to back, at the exact baud and 2% off either
way, with glitches, a break and noise between bytes; the transmitter's line is decoded by a
software sampler. The divisor is small here (a faster baud in simulation: the same logic)."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.uart import BITS, UARTReceiver, UARTTransmitter, baud_divisor
from sim.tb import uart_line

DIVISOR = 16


def line_of(events, bit_time: float, idle: int = 40, tail: int = 3 * DIVISOR):
    return uart_line(events, bit_time, idle, tail)


def offer(tx, data):
    """A testbench that offers ``data`` to a transmitter as fast as it takes them."""
    async def source(ctx):
        for b in data:
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)
    return source


def receive(levels, divisor: int = DIVISOR):
    """The bytes a receiver at ``divisor`` takes from ``levels``, and its error counts."""
    dut = UARTReceiver(divisor)
    got = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for level in levels:
            ctx.set(dut.rx, level)
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
        result.update(framing=ctx.get(dut.framing_errors), overruns=ctx.get(dut.overruns))

    result = {}
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, result


@pytest.mark.parametrize("skew", [1.0, 0.98, 1.02])
def test_random_bytes_back_to_back_at_and_off_the_baud(skew):
    rng = random.Random(int(skew * 100))
    data = [rng.randrange(256) for _ in range(120)] + [0x00, 0xFF, 0x55, 0xAA]
    got, counts = receive(line_of([("byte", b) for b in data], DIVISOR * skew))
    assert got == data
    assert counts == {"framing": 0, "overruns": 0}


@pytest.mark.parametrize("baud", [3_000_000, 1_000_000, 115_200])
def test_the_built_bauds_at_75_mhz_send_and_receive_2_percent_off(baud):
    """The divisors a board is built with (25, 75, 651 cycles a bit): the receiver takes bytes
    from a sender 2% slow, and the transmitter's bytes come back through the receiver."""
    divisor = baud_divisor(75e6, baud)
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(max(4, 4000 // divisor))]
    tx = UARTTransmitter(divisor)
    levels = line_of([("byte", b) for b in data], divisor * 1.02, idle=3 * divisor,
                     tail=3 * divisor)
    got, _ = receive(levels, divisor)
    assert got == data

    back = []
    loop = UARTReceiver(divisor)

    source = offer(tx, data)

    async def wire(ctx):
        ctx.set(loop.o.ready, 1)
        for _ in range((len(data) + 2) * BITS * divisor):
            ctx.set(loop.rx, ctx.get(tx.tx))
            await ctx.tick()
            if ctx.get(loop.o.valid):
                back.append(ctx.get(loop.o.payload))

    from amaranth import Module
    top = Module()
    top.submodules.tx, top.submodules.rx = tx, loop
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(wire)
    sim.run()
    assert back == data


def test_a_glitch_shorter_than_half_a_bit_and_noise_between_bytes_are_ignored():
    rng = random.Random(3)
    data = [rng.randrange(256) for _ in range(30)]
    events = []
    for b in data:
        events += [("low", rng.randrange(1, DIVISOR // 2 - 2)), ("idle", rng.randrange(3, 30)),
                   ("byte", b)]
    got, counts = receive(line_of(events, DIVISOR))
    assert got == data
    assert counts["framing"] == 0


def test_a_break_is_one_framing_error_and_the_next_bytes_arrive():
    events = [("byte", 0x41), ("low", 3 * BITS * DIVISOR), ("idle", 2 * DIVISOR),
              ("byte", 0x42), ("byte", 0x43)]
    got, counts = receive(line_of(events, DIVISOR))
    assert got == [0x41, 0x42, 0x43]
    assert counts["framing"] == 1


def test_a_byte_with_a_bad_stop_bit_is_dropped():
    # A byte whose stop bit is 0 (a sender at the wrong baud would do this): dropped, counted.
    bad = [0] + [1] * 8 + [0]
    levels = [1] * 40 + [b for b in bad for _ in range(DIVISOR)] + [1] * (3 * DIVISOR)
    levels += line_of([("byte", 0x5A)], DIVISOR)
    got, counts = receive(levels)
    assert got == [0x5A] and counts["framing"] == 1


def test_transmitter_sends_8n1_back_to_back():
    rng = random.Random(9)
    data = [rng.randrange(256) for _ in range(40)]
    dut = UARTTransmitter(DIVISOR)
    line = []

    source = offer(dut, data)

    async def sampler(ctx):
        for _ in range((len(data) + 2) * BITS * DIVISOR):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sampler)
    sim.run()
    start = line.index(0)
    decoded = []
    for n in range(len(data)):
        at = start + n * BITS * DIVISOR          # back to back: a byte every BITS bits exactly
        bits = [line[at + i * DIVISOR + DIVISOR // 2] for i in range(BITS)]
        assert bits[0] == 0 and bits[-1] == 1, f"byte {n}: start/stop bits {bits[0]}/{bits[-1]}"
        decoded.append(sum(b << i for i, b in enumerate(bits[1:9])))
    assert decoded == data


def test_baud_divisors_at_build_time():
    assert baud_divisor(75e6, 3_000_000) == 25
    assert baud_divisor(75e6, 1_000_000) == 75
    assert baud_divisor(75e6, 115_200) == 651
    with pytest.raises(ValueError, match="choose a clock that is a multiple of the baud"):
        baud_divisor(100e6, 3_000_000)
