"""Pooling and bypass units on pixel streams, in Amaranth's simulator, against golden's plain
integer reference, with and without idle input cycles and output backpressure."""

import numpy as np
import pytest

from golden import reference_int
from golden.network import pool_output_size
from hw.config import AcceleratorConfig
from hw.pool import GlobalSumUnit, MaxPoolUnit

from hw_harness import run_stream

CFG = AcceleratorConfig(mac_units=64)          # 4 channels per beat
TRAFFIC = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4)]   # (idle, stall) probabilities


def frames(x: np.ndarray, pc: int) -> list[list[int]]:
    """(C, H, W) -> beats: one frame per channel group, raster order, PC lanes per beat."""
    c, h, w = x.shape
    groups = -(-c // pc)
    padded = np.zeros((groups * pc, h, w), np.int64)
    padded[:c] = x
    return [list(map(int, padded[g * pc:(g + 1) * pc, y, xx]))
            for g in range(groups) for y in range(h) for xx in range(w)]


def unframe(beats, c: int, h: int, w: int, pc: int) -> np.ndarray:
    groups = -(-c // pc)
    a = np.array(beats, np.int64).reshape(groups, h, w, pc).transpose(0, 3, 1, 2)
    return a.reshape(groups * pc, h, w)[:c]


@pytest.mark.parametrize("kernel", [3, 2])
@pytest.mark.parametrize("idle,stall", TRAFFIC)
def test_maxpool_unit(idle, stall, kernel):
    rng = np.random.default_rng(int(100 * idle + 10 * stall) + kernel)
    for h, w in [(7, 7), (6, 9), (2, 5), (1, 3), (13, 4), (33, 8), (1, 1)]:
        c = int(rng.integers(1, 9))
        x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
        if h == 7:
            x[0] = 255                              # saturated and flat planes
            x[-1] = 0
        oh, ow = pool_output_size(h, kernel, 2), pool_output_size(w, kernel, 2)
        want = reference_int.maxpool(x, kernel, 2)
        dut = MaxPoolUnit(CFG, max_width=16)
        beats = frames(x, CFG.pc)
        got = run_stream(dut, {"in_h": h, "in_w": w, "out_h": oh, "out_w": ow,
                               "two": int(kernel == 2)},
                         {"i": beats}, len(frames(want, CFG.pc)), seed=h * 31 + w,
                         idle=idle, stall=stall)
        out = unframe(got, c, oh, ow, CFG.pc)
        if not np.array_equal(out, want):
            ch, y, xx = np.argwhere(out != want)[0]
            pytest.fail(f"{kernel}x{kernel} pool of {c}x{h}x{w}: channel {ch}, row {y}, "
                        f"column {xx}: hardware "
                        f"{out[ch, y, xx]}, golden {want[ch, y, xx]}")


@pytest.mark.parametrize("idle,stall", TRAFFIC)
def test_global_sum_unit(idle, stall):
    rng = np.random.default_rng(7)
    for c, h, w in [(10, 3, 3), (5, 15, 15), (3, 1, 1)]:
        x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
        if h == 15:
            x[:] = 255                              # the largest sum of a 15x15 plane
        want = reference_int.global_sum(x)
        dut = GlobalSumUnit(CFG)
        got = run_stream(dut, {"pixels": h * w}, {"i": frames(x, CFG.pc)},
                         -(-c // CFG.pc), seed=c, idle=idle, stall=stall)
        sums = np.array(got, np.int64).reshape(-1)[:c]
        assert sums.tolist() == want.astype(np.int64).tolist(), (c, h, w)


@pytest.mark.parametrize("idle,stall", TRAFFIC)
@pytest.mark.parametrize("complex_bypass", [False, True])
def test_bypass_add_unit(idle, stall, complex_bypass):
    from golden import numerics as nx
    from golden.quantize import QAdd
    from hw.bypass import BypassAddUnit
    rng = np.random.default_rng(int(complex_bypass))
    c, h, w = 6, 5, 4
    a = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    if complex_bypass:                        # raw accumulators, extremes included
        b = rng.integers(-(1 << 24), 1 << 24, (c, h, w)).astype(np.int32)
        b[0, 0, :2] = [nx.ACC_MIN, nx.ACC_MAX]
    else:
        b = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    qa = QAdd(int(rng.integers(1 << 15, 1 << 16)), int(rng.integers(1 << 15, 1 << 16)),
              24 if complex_bypass else 16)
    want = reference_int.bypass_add(a, b, qa)
    got = run_stream(BypassAddUnit(CFG), {"mult_a": qa.mult_a, "mult_b": qa.mult_b,
                                          "shift": qa.shift},
                     {"a": frames(a, CFG.pc), "b": frames(b, CFG.pc)},
                     len(frames(want, CFG.pc)), seed=3, idle=idle, stall=stall)
    out = unframe(got, c, h, w, CFG.pc)
    assert np.array_equal(out, want), np.argwhere(out != want)[:3]
