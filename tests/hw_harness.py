"""Drive a hw.conv_layer.ConvLayer in Amaranth's simulator with the same load sequence the
cocotb benches use (hw.compiler.layer_load)."""

import numpy as np
from amaranth.sim import Simulator

from hw.compiler import layer_load, unpack_feature_map
from hw.conv_layer import ConvLayer


def run_layer(cfg, qc, x, timeout=200_000):
    dut = ConvLayer(cfg)
    load = layer_load(qc, x, cfg)
    result = {}

    async def tb(ctx):
        async def pulse(**values):
            for k, v in values.items():
                ctx.set(getattr(dut, k), v)
            await ctx.tick()
        for bank, addr, byte in load.fm_writes:
            await pulse(host_wr_bank=bank, host_wr_addr=addr, host_wr_data=byte, host_wr_en=1)
        ctx.set(dut.host_wr_en, 0)
        for addr, word in load.weight_writes:
            await pulse(weight_wr_addr=addr, weight_wr_data=word, weight_wr_en=1)
        ctx.set(dut.weight_wr_en, 0)
        for addr, value in load.codebook_writes:
            await pulse(codebook_wr_addr=addr, codebook_wr_data=value, codebook_wr_en=1)
        ctx.set(dut.codebook_wr_en, 0)
        for addr, lane, value in load.bias_writes:
            await pulse(bias_wr_addr=addr, bias_wr_lane=lane, bias_wr_data=value, bias_wr_en=1)
        ctx.set(dut.bias_wr_en, 0)
        for k, v in load.descriptor.ports(cfg).items():
            ctx.set(getattr(dut, k), v)
        await pulse(start=1)
        ctx.set(dut.start, 0)
        cycles = 0
        while not ctx.get(dut.done):
            await ctx.tick()
            cycles += 1
            assert cycles < timeout, "engine did not finish"
        result["cycles"] = ctx.get(dut.cycles)
        c, h, w = load.out_shape
        groups = -(-c // cfg.pc)
        banks = [np.zeros(groups * h * w, np.uint8) for _ in range(cfg.pc)]
        for addr in range(groups * h * w):
            ctx.set(dut.host_rd_addr, addr)
            await ctx.tick()
            row = ctx.get(dut.host_rd_data)
            for t in range(cfg.pc):
                banks[t][addr] = row[t]
        result["out"] = unpack_feature_map(banks, load.out_shape, cfg)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return result, load
