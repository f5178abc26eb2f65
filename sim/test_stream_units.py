"""cocotb bench: the stream units (max pool, global sum, bypass add) in the generated Verilog
against golden/reference_int.py, through stream drivers and monitors that insert idle cycles
and backpressure at random (seeded).

Environment: SQZ_SIM_SEED, SQZ_MAC_UNITS.
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from golden import numerics as nx
from golden import reference_int
from golden.network import pool_output_size
from golden.quantize import QAdd
from hw.layout import groups
from sim.sim_config import sim_config
from sim.tb import StreamDriver, StreamMonitor, pack_lanes, scoreboard, unpack_lanes

CFG = sim_config()
SEED = int(os.environ.get("SQZ_SIM_SEED", "20261122"))
TRAFFIC = [(0.0, 0.0), (0.25, 0.0), (0.0, 0.35), (0.25, 0.35)]


def frames(x: np.ndarray, bits: int = 8) -> list[int]:
    """(C, H, W) -> packed beats, one frame per channel group, raster order."""
    c, h, w = x.shape
    g = groups(c, CFG.pc)
    padded = np.zeros((g * CFG.pc, h, w), np.int64)
    padded[:c] = x
    return [pack_lanes(padded[k * CFG.pc:(k + 1) * CFG.pc, y, xx], bits)
            for k in range(g) for y in range(h) for xx in range(w)]


def unframe(beats, c, h, w, bits=8) -> np.ndarray:
    g = groups(c, CFG.pc)
    a = np.array([unpack_lanes(b, bits, CFG.pc) for b in beats], np.int64)
    return a.reshape(g, h, w, CFG.pc).transpose(0, 3, 1, 2).reshape(g * CFG.pc, h, w)[:c]


async def start(dut):
    # Every input defined from the first edge (handshakes idle, descriptors zero): an undriven
    # input is X in an event-driven simulator and would be latched into the pipelines.
    for name in ("mp_i_valid", "mp_o_ready", "gs_i_valid", "gs_o_ready", "ba_a_valid",
                 "ba_b_valid", "ba_o_ready", "mp_in_h", "mp_in_w", "mp_out_h", "mp_out_w",
                 "gs_pixels", "ba_mult_a", "ba_mult_b", "ba_shift"):
        getattr(dut, name).value = 0
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def max_pool(dut):
    await start(dut)
    rng = np.random.default_rng(SEED)
    for case, (idle, stall) in enumerate(TRAFFIC * 3):
        c, h, w = int(rng.integers(1, 10)), int(rng.integers(2, 16)), int(rng.integers(2, 16))
        x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
        oh, ow = pool_output_size(h, 3, 2), pool_output_size(w, 3, 2)
        for k, v in (("in_h", h), ("in_w", w), ("out_h", oh), ("out_w", ow)):
            getattr(dut, f"mp_{k}").value = v
        traffic = random.Random(SEED + case)
        drv = StreamDriver(dut, "mp_i", traffic, idle)
        mon = StreamMonitor(dut, "mp_o", traffic, stall)
        want = reference_int.maxpool(x, 3, 2)
        cocotb.start_soon(drv.send(frames(x)))
        got = await mon.receive(len(frames(want)))
        scoreboard(f"maxpool case {case} {c}x{h}x{w} (idle {idle}, stall {stall})",
                   unframe(got, c, oh, ow), want)


@cocotb.test()
async def global_sum(dut):
    await start(dut)
    rng = np.random.default_rng(SEED + 1)
    for case, (idle, stall) in enumerate(TRAFFIC):
        c, h = int(rng.integers(1, 12)), int(rng.integers(1, 16))
        x = rng.integers(0, 256, (c, h, h)).astype(np.uint8)
        dut.gs_pixels.value = h * h
        traffic = random.Random(SEED + case)
        drv = StreamDriver(dut, "gs_i", traffic, idle)
        mon = StreamMonitor(dut, "gs_o", traffic, stall)
        cocotb.start_soon(drv.send(frames(x)))
        got = await mon.receive(groups(c, CFG.pc))
        sums = np.array([unpack_lanes(b, nx.LOGIT_BITS, CFG.pc) for b in got]).reshape(-1)[:c]
        want = reference_int.global_sum(x).astype(np.int64)
        assert sums.tolist() == want.tolist(), f"global sum case {case}: {sums} != {want}"


@cocotb.test()
async def bypass_add(dut):
    await start(dut)
    rng = np.random.default_rng(SEED + 2)
    for case, (idle, stall) in enumerate(TRAFFIC * 2):
        c, h, w = int(rng.integers(1, 10)), int(rng.integers(1, 8)), int(rng.integers(1, 8))
        a = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
        complex_bypass = case % 2 == 1
        if complex_bypass:
            b = rng.integers(-(1 << 24), 1 << 24, (c, h, w)).astype(np.int64)
        else:
            b = rng.integers(0, 256, (c, h, w)).astype(np.int64)
        qa = QAdd(int(rng.integers(1 << 15, 1 << 16)), int(rng.integers(1 << 15, 1 << 16)),
                  24 if complex_bypass else 16)
        dut.ba_mult_a.value, dut.ba_mult_b.value, dut.ba_shift.value = qa.mult_a, qa.mult_b, qa.shift
        traffic = random.Random(SEED + case)
        drv_a = StreamDriver(dut, "ba_a", traffic, idle)
        drv_b = StreamDriver(dut, "ba_b", random.Random(SEED - case), idle)
        mon = StreamMonitor(dut, "ba_o", traffic, stall)
        want = reference_int.bypass_add(a, b, qa)
        cocotb.start_soon(drv_a.send(frames(a)))
        cocotb.start_soon(drv_b.send(frames(b, nx.ACC_BITS)))
        got = await mon.receive(len(frames(want)))
        scoreboard(f"bypass case {case} {c}x{h}x{w} ({'complex' if complex_bypass else 'simple'})",
                   unframe(got, c, h, w), want)
