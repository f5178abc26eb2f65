"""cocotb bench: the UART PHY (hw/uart.py) in the generated Verilog at bit level. The bench
drives the receiver's line cycle by cycle: seeded random bytes back to back at the baud and
with the sender 2% slow and 2% fast, glitches shorter than half a bit and noise between bytes,
a break; and decodes the transmitter's line by sampling each bit's middle. A faster baud than
a board's (sim.tops.UART_BENCH_DIVISOR cycles a bit): the same logic.

Environment: SQZ_SIM_SEED.
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from hw.uart import BITS
from sim.tb import uart_line
from sim.tops import UART_BENCH_DIVISOR as DIVISOR

SEED = int(os.environ.get("SQZ_SIM_SEED", "20261201"))


async def start(dut):
    for name, value in (("rx", 1), ("rx_o__ready", 1), ("tx_i__valid", 0),
                        ("tx_i__payload", 0)):
        getattr(dut, name).value = value
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def drive_line(dut, levels) -> list[int]:
    """Put ``levels`` on the receiver's line, a cycle each (set at the falling edge); the
    bytes it delivers (``ready`` is held high: a byte is taken in the cycle it is valid)."""
    got = []
    for level in levels:
        await FallingEdge(dut.clk)
        dut.rx.value = level
        await RisingEdge(dut.clk)
        await ReadOnly()
        if dut.rx_o__valid.value:
            got.append(int(dut.rx_o__payload.value))
    return got


async def counts(dut):
    await RisingEdge(dut.clk)
    await ReadOnly()
    return int(dut.framing_errors.value), int(dut.overruns.value)


@cocotb.test()
async def random_bytes_back_to_back_at_and_2_percent_off_the_baud(dut):
    await start(dut)
    rng = random.Random(SEED)
    for skew in (1.0, 0.98, 1.02):
        data = [rng.randrange(256) for _ in range(60)] + [0x00, 0xFF, 0x55, 0xAA]
        got = await drive_line(dut, uart_line([("byte", b) for b in data], DIVISOR * skew,
                                              idle=2 * DIVISOR, tail=2 * DIVISOR))
        assert got == data, f"sender at {skew:.2f} x the baud: sent {data}, received {got}"
    assert await counts(dut) == (0, 0)


@cocotb.test()
async def glitches_and_noise_between_bytes_are_ignored(dut):
    await start(dut)
    rng = random.Random(SEED + 1)
    data = [rng.randrange(256) for _ in range(30)]
    events = []
    for b in data:
        events += [("low", rng.randrange(1, DIVISOR // 2 - 2)), ("idle", rng.randrange(3, 30)),
                   ("byte", b)]
    got = await drive_line(dut, uart_line(events, DIVISOR, idle=2 * DIVISOR,
                                          tail=2 * DIVISOR))
    assert got == data
    assert (await counts(dut))[0] == 0


@cocotb.test()
async def a_break_is_one_framing_error_and_the_next_bytes_arrive(dut):
    await start(dut)
    events = [("byte", 0x41), ("low", 3 * BITS * DIVISOR), ("idle", 2 * DIVISOR),
              ("byte", 0x42), ("byte", 0x43)]
    got = await drive_line(dut, uart_line(events, DIVISOR, idle=2 * DIVISOR,
                                          tail=2 * DIVISOR))
    assert got == [0x41, 0x42, 0x43]
    assert (await counts(dut))[0] == 1


@cocotb.test()
async def the_transmitter_sends_8n1_back_to_back(dut):
    """Bytes offered as fast as the transmitter takes them; the line sampled at each bit's
    middle: a start bit, 8 data bits LSB first, a stop bit, no gap."""
    await start(dut)
    rng = random.Random(SEED + 2)
    data = [rng.randrange(256) for _ in range(24)]
    line = []

    async def sample():
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            line.append(int(dut.tx.value))

    sampler = cocotb.start_soon(sample())
    for b in data:                       # offered at the falling edge, taken at the next rise
        while True:
            await FallingEdge(dut.clk)
            dut.tx_i__payload.value = b
            dut.tx_i__valid.value = 1
            await ReadOnly()
            if dut.tx_i__ready.value:
                break
    await FallingEdge(dut.clk)
    dut.tx_i__valid.value = 0
    for _ in range(2 * BITS * DIVISOR):
        await RisingEdge(dut.clk)
    sampler.cancel()
    line = [1] + line                  # the idle line before the first byte's start bit
    got, t, first = [], 1, None
    while t < len(line):
        if line[t] == 0 and line[t - 1] == 1:            # a start bit begins
            bits = [line[t + DIVISOR // 2 + k * DIVISOR] for k in range(BITS)]
            assert bits[0] == 0 and bits[-1] == 1, f"byte {len(got)}: not 8N1 ({bits})"
            got.append(sum(bit << i for i, bit in enumerate(bits[1:9])))
            if first is None:
                first = t
            t += (BITS - 1) * DIVISOR + DIVISOR // 2     # into the stop bit
        else:
            t += 1
    assert got == data
    # back to back: the last byte's stop bit ends BITS * DIVISOR cycles a byte after the first
    # start bit, with no idle bit between bytes
    assert all(line[first + k * BITS * DIVISOR] == 0 for k in range(len(data)))
