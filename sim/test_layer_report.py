"""cocotb: every convolution of the authors' SqueezeNet v1.0 at full size on the RTL, bit-exact
against golden, with its cycles against the ideal (MACs / MAC units). Writes
build/sim/utilization.json and build/sim/utilization.md (make sim-report)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from hw.layout import describe, groups
from hw.timing import ideal_cycles
from sim.test_conv_layer import CFG, ConvLayerTB, run_case

SHARED = Path(__file__).resolve().parents[2] / "shared"

OUT = Path(__file__).resolve().parents[1] / "build" / "sim"


def where_the_rest_goes(desc, cfg) -> str:
    notes = []
    if desc.in_channels % cfg.pc:
        share = desc.in_channels / (groups(desc.in_channels, cfg.pc) * cfg.pc)
        notes.append(f"{desc.in_channels} input channels fill {share:.0%} of {cfg.pc} input lanes")
    if desc.out_channels % cfg.po:
        share = desc.out_channels / (groups(desc.out_channels, cfg.po) * cfg.po)
        notes.append(f"{desc.out_channels} outputs fill {share:.1%} of the last {cfg.po}-lane group")
    steps = groups(desc.in_channels, cfg.pc) * desc.kernel * desc.kernel_w
    if steps < cfg.po // cfg.pc:
        notes.append(f"{steps} steps per pixel < {cfg.po // cfg.pc}-cycle drain: idle cycles")
    notes.append("pipeline fill/drain once per layer")
    return "; ".join(notes)


@cocotb.test()
async def full_layers(dut):
    net_file = SHARED / "models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net"
    if not net_file.exists():
        raise AssertionError(f"{net_file} is missing (see ../shared/README.md)")
    from golden.quantize import _conv_input
    from sim.cases import authors_model_on_a_photo
    model, q, acts = authors_model_on_a_photo(SHARED)
    tb = ConvLayerTB(dut)
    await tb.reset()
    rows = []
    only = os.environ.get("SQZ_REPORT_LAYERS")
    for spec in model.network.convs():
        if only and spec.name not in only.split(","):
            continue
        qc = q.convs[spec.name]
        x = _conv_input(model.network, spec, acts)
        cycles = await run_case(tb, qc, x, spec.name)
        desc = describe(qc.spec, x.shape[1], x.shape[2], qc.mult, qc.shift)
        ideal = ideal_cycles(desc, CFG)
        macs = int(ideal * CFG.mac_units)
        rows.append({"layer": spec.name, "macs": macs, "mac_units": CFG.mac_units,
                     "cycles": cycles, "ideal_cycles": ideal, "utilization": ideal / cycles,
                     "weight_words": (groups(spec.out_channels, CFG.po)
                                      * groups(spec.in_channels, CFG.pc) * spec.kh * spec.kw),
                     "where_the_rest_goes": where_the_rest_goes(desc, CFG)})
        dut._log.info(f"{spec.name}: {cycles} cycles, ideal {ideal:.0f}, "
                      f"utilization {ideal / cycles:.1%}, bit-exact")
    total = {"macs": sum(r["macs"] for r in rows), "cycles": sum(r["cycles"] for r in rows)}
    total["utilization"] = total["macs"] / CFG.mac_units / total["cycles"]
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"network": model.network.name, "mac_units": CFG.mac_units, "layers": rows,
              "total": total, "clock_mhz_for_time": 100,
              "ms_per_image_at_100mhz": total["cycles"] / 100e6 * 1e3}
    (OUT / "utilization.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Cycles per layer, SqueezeNet v1.0 (authors' weights), {CFG.mac_units} MAC units",
             "", "Measured in RTL simulation (Verilator); every output byte checked against "
             "golden. Weight loading is not overlapped and not counted (weight words listed).", "",
             "| layer | MACs | cycles | ideal | utilization | weight words | where the rest goes |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['macs']:,} | {r['cycles']:,} | {r['ideal_cycles']:,.0f} "
                     f"| {r['utilization']:.1%} | {r['weight_words']:,} | {r['where_the_rest_goes']} |")
    lines.append(f"| **total** | {total['macs']:,} | {total['cycles']:,} | "
                 f"{total['macs'] / CFG.mac_units:,.0f} | {total['utilization']:.1%} | | "
                 f"{report['ms_per_image_at_100mhz']:.1f} ms per image at 100 MHz |")
    (OUT / "utilization.md").write_text("\n".join(lines) + "\n")
