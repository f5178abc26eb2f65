"""Where the board's device spends its cycles, layer by layer, against its two roofs
(``make perf-report``).

For each network compiled for the board's device (hw.config.board_config: maps and weights in
the SDRAM), every node's figures come from the program through the RTL-checked cycle model
(host.program.DeviceProgram.timeline): cycles, compute (cycles less DMA waits), waits, and the
bytes its LOADs and STOREs move. Against them:

- the MAC roof: ``mac_units`` multiply-accumulates a cycle; a node achieves its dense MACs /
  cycles (the network's MACs as its definition counts them, every weight, zero or not);
- the SDRAM roof: one 16-bit word a cycle (hw/sdram.py: single data rate at the device clock);
  a node moves bytes / cycles;
- a node is *memory-bound* when moving its bytes at the SDRAM's peak takes longer than its
  computing does (the roofline's definition), *compute-bound* otherwise; the ``wait`` column is
  what the sequencer measured waiting for the DMA queue.

Each network runs on the dense engine and on the zero-skipping one
(``AcceleratorConfig.zero_skipping``: hw.layout.skip_words, each lane's non-zero weights of a
step packed PC to a word), the latter's cycles from the real weights' words, and on the dense
device of twice the MAC units (``--wide``, 128 by default: hw.config.board_config's 32 x 4
with weight words of values).

Writes docs/reports/perf.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from golden.model import Model, random_float_model  # noqa: E402
from golden.network import Bypass, Fire, squeezenet_v1_1  # noqa: E402
from golden.quantize import quantize  # noqa: E402
from host.compiler import compile_network  # noqa: E402
from hw.config import board_config  # noqa: E402
from hw.sdram_chip import MT48LC16M16A2  # noqa: E402

SHARED = ROOT.parent / "shared"
AUTHORS = SHARED / "models" / "squeezenet-v1.0-deep-compression" / "compressed_SqueezeNet.net"
PHOTOS = SHARED / "imagenet-sample"
SDRAM_BYTES_PER_CYCLE = MT48LC16M16A2.dq_bits // 8
SQUEEZEJET2_MS = 70.5          # SqueezeJet-2, SqueezeNet v1.1 on a Zynq-7020 (the peer)


def pruned_to(model: Model, density: float, seed: int = 0) -> Model:
    """``model`` with each layer's smallest weights zeroed to ``density`` (random float weights:
    magnitude pruning is as good as any rule for a stand-in)."""
    weights = {}
    for name, (w, b) in model.float_weights().items():
        keep = max(1, round(density * w.size))
        cut = np.partition(np.abs(w).ravel(), w.size - keep)[w.size - keep]
        weights[name] = (np.where(np.abs(w) >= cut, w, 0).astype(np.float32), b)
    return Model.from_float(model.network, weights,
                            f"{model.network.name} (seeded random weights pruned to "
                            f"{density:.0%})")


def analyse(label: str, q, cfg) -> dict:
    """The network's program on ``cfg``: totals and every node's figures (cycle model)."""
    net = q.network
    prog = compile_network(q, cfg)
    per, waits, total = prog.timeline()
    shapes = net.shapes()
    rows = []
    for fig in prog.node_figures(per, waits):
        i = next(k for k, n in enumerate(net.nodes) if n.name == fig["name"])
        node = net.nodes[i]
        srcs = net.node_inputs(i)
        _, h, w = shapes[srcs[-1] if isinstance(node, Bypass) else srcs[0]]
        macs, density = 0, []
        in_h, in_w = h, w
        for spec in node.convs():
            oh_s, ow_s = spec.output_size(in_h, in_w)
            macs += spec.weight_count * oh_s * ow_s
            density.append((spec.weight_count, float((q.convs[spec.name].weights != 0).mean())))
            if isinstance(node, Fire) and spec is node.convs()[0]:
                in_h, in_w = oh_s, ow_s        # the expands read the squeeze's output
        moved, compute, cycles = fig["sdram_bytes"], fig["compute"], fig["cycles"]
        rows.append({"name": fig["name"], "kind": type(node).__name__, "ops": fig["ops"],
                     "macs": macs, "cycles": cycles, "compute": compute, "wait": fig["wait"],
                     "sdram_bytes": moved,
                     "macs_per_cycle": macs / cycles if cycles else 0.0,
                     "bytes_per_cycle": moved / cycles if cycles else 0.0,
                     "intensity": macs / moved if moved else None,
                     "bound": ("memory" if moved / SDRAM_BYTES_PER_CYCLE > compute
                               else "compute"),
                     "density": (sum(n * d for n, d in density) / sum(n for n, _ in density)
                                 if density else None)})
    return {"network": label, "description": net.name, "zero_skipping": cfg.zero_skipping,
            "ops": len(prog.ops), "segments": len(prog.segment_ranges()), "macs": net.macs,
            "cycles": total, "ms": total / cfg.clock_mhz / 1e3, "wait": sum(waits.values()),
            "sdram_bytes": sum(r["sdram_bytes"] for r in rows),
            "macs_per_cycle": net.macs / total, "nodes": rows}


def networks(photos: int):
    from golden.formats import load_model
    from golden.preprocess import load_image
    rng = np.random.default_rng(1)
    if AUTHORS.exists():
        model = load_model(AUTHORS)
        paths = sorted(PHOTOS.glob("*.JPEG"))[::100][:photos]
        calib = [load_image(p, model.network.input) for p in paths]
        yield "SqueezeNet v1.0 (the authors' Deep Compression model)", model, calib
    else:
        print(f"{AUTHORS} is missing: the authors' model is left out", file=sys.stderr)
    net = squeezenet_v1_1()
    shape = (net.input.channels, net.input.height, net.input.width)
    calib = [rng.normal(0, 40, shape).astype(np.float32) for _ in range(2)]
    dense = random_float_model(net)
    yield "SqueezeNet v1.1, dense random", dense, calib
    yield "SqueezeNet v1.1, 50%-sparse random", pruned_to(dense, 0.5), calib


def _fmax(mac_units: int) -> dict:
    """Synthesised fmax of the whole device, from the files ``make synth-device`` writes
    (tools/synth.py): build/synth/device.json for the 64-unit dense device, device-N.json at
    N units, device-skip-N.json skipping. {"dense": MHz, "skip": MHz} for what exists and was
    routed; other JSON files in that folder (other seeds kept by hand) are not read, so that
    which build counts never depends on file names sorting."""
    synth = ROOT / "build" / "synth"
    out = {}
    for key, name in (("dense", "device.json" if mac_units == 64 else f"device-{mac_units}.json"),
                      ("skip", f"device-skip-{mac_units}.json")):
        path = synth / name
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        if r.get("unit") == "device" and r.get("mac_units") == mac_units and r.get("fmax_mhz"):
            out[key] = r["fmax_mhz"]
    return out


def wide_markdown(wide: list[dict], cfg, fmax: dict) -> str:
    """The dense device of more MAC units: per network its totals, per node of the first its
    cycles, waits and bytes against that device's roofs."""
    peak_b = SDRAM_BYTES_PER_CYCLE
    lines = ["", f"## The dense device at {cfg.mac_units} MAC units", "",
             f"`board_config({cfg.mac_units})`: {cfg.po} output lanes x {cfg.pc} input lanes, "
             f"weight words of values (no codebook copies), memory A of {cfg.fm_depth:,} words, "
             f"at {cfg.clock_mhz:g} MHz" + (f" and at its synthesised {fmax['dense']:.2f} MHz"
                                            if fmax.get("dense") else "") + ".", "",
             "| network | cycles | ms | " + ("ms at fmax | " if fmax.get("dense") else "")
             + "MACs / cycle | waiting | SDRAM MiB | segments |",
             "|---|---:|---:|" + ("---:|" if fmax.get("dense") else "") + "---:|---:|---:|---:|"]
    for r in wide:
        at = (f"{r['cycles'] / fmax['dense'] / 1e3:.1f} | " if fmax.get("dense") else "")
        lines.append(f"| {r['network']} | {r['cycles']:,} | {r['ms']:.1f} | {at}"
                     f"{r['macs_per_cycle']:.1f} | {r['wait'] / r['cycles']:.0%} | "
                     f"{r['sdram_bytes'] / 2**20:.2f} | {r['segments']} |")
    first = wide[0]
    lines += ["", f"{first['network']}, node by node:", "",
              "| node | cycles | compute | wait | SDRAM KiB | MACs / cycle | of peak | bound |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for n in first["nodes"]:
        lines.append(f"| {n['name']} | {n['cycles']:,} | {n['compute']:,} | {n['wait']:,} | "
                     f"{n['sdram_bytes'] / 1024:,.0f} | {n['macs_per_cycle']:.1f} | "
                     f"{n['bytes_per_cycle'] / peak_b:.0%} | {n['bound']} |")
    return "\n".join(lines) + "\n"


def markdown(pairs: list[tuple[dict, dict]], cfg, fmax: dict) -> str:
    peak_b = SDRAM_BYTES_PER_CYCLE
    ridge = cfg.mac_units / peak_b
    lines = [
        "# Performance per layer against the roofs", "",
        f"The board's device, {cfg.mac_units} MAC units at {cfg.clock_mhz:g} MHz, maps and "
        f"weights in the SDRAM ({MT48LC16M16A2.dq_bits}-bit, one word a cycle: {peak_b} bytes a "
        "cycle), with the dense engine and with zero-weight skipping "
        "(`AcceleratorConfig.zero_skipping`). Each network's program through the RTL-checked "
        "cycle model (transfers at their estimate). MACs are the network's dense MACs, every "
        "weight counted, zero or not, so a skipping layer's MACs a cycle can pass the "
        f"{cfg.mac_units} multipliers. Peaks: {cfg.mac_units} MACs and {peak_b} bytes a cycle; "
        f"the ridge is at {ridge:g} MACs per byte. A node is memory-bound when moving its bytes "
        "at the SDRAM's peak takes longer than its compute cycles (cycles less the waits for "
        "the DMA queue). Regenerated by `make perf-report` (tools/perf_report.py).", "",
        "| network | MACs | dense: cycles | ms | MACs / cycle | skipping: cycles | ms | "
        "MACs / cycle | speed-up | waiting (skipping) | SDRAM MiB (skipping) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d, k in pairs:
        lines.append(
            f"| {d['network']} | {d['macs'] / 1e6:.0f} M | {d['cycles']:,} | {d['ms']:.1f} | "
            f"{d['macs_per_cycle']:.1f} | {k['cycles']:,} | {k['ms']:.1f} | "
            f"{k['macs_per_cycle']:.1f} | {d['cycles'] / k['cycles']:.2f}x | "
            f"{k['wait'] / k['cycles']:.0%} | {k['sdram_bytes'] / 2**20:.2f} |")
    if fmax:
        lines += ["", "At the synthesised fmax of the whole device (`make synth-device`, "
                  "build/synth/): " + "; ".join(
                      f"{'skipping' if key == 'skip' else 'dense'} {mhz:.2f} MHz: " + ", ".join(
                          f"{(k if key == 'skip' else d)['network']} "
                          f"{(k if key == 'skip' else d)['cycles'] / mhz / 1e3:.1f} ms"
                          for d, k in pairs) for key, mhz in fmax.items()) + "."]
    v11 = [k for _, k in pairs if "v1.1" in k["network"]]
    if v11:
        lines += ["", f"SqueezeJet-2 runs SqueezeNet v1.1 in {SQUEEZEJET2_MS} ms on a Zynq-7020 "
                  f"(172 DSPs); here, skipping, at {cfg.clock_mhz:g} MHz: " +
                  "; ".join(f"{r['network']} {r['ms']:.1f} ms" for r in v11) + "."]
    for d, k in pairs:
        lines += ["", f"## {d['network']}", "",
                  "| node | MACs | density | dense cycles | skipping cycles | speed-up | compute | "
                  "wait | SDRAM KiB | MACs / cycle | bytes / cycle | of peak | MACs / byte | bound |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for nd, n in zip(d["nodes"], k["nodes"]):
            lines.append(
                f"| {n['name']} | {n['macs'] / 1e6:.1f} M | "
                + (f"{n['density']:.0%}" if n["density"] is not None else "") +
                f" | {nd['cycles']:,} | {n['cycles']:,} | {nd['cycles'] / n['cycles']:.2f}x | "
                f"{n['compute']:,} | {n['wait']:,} | {n['sdram_bytes'] / 1024:,.0f} | "
                f"{n['macs_per_cycle']:.1f} | {n['bytes_per_cycle']:.2f} | "
                f"{n['bytes_per_cycle'] / peak_b:.0%} | "
                + (f"{n['intensity']:.0f}" if n["intensity"] else "") + f" | {n['bound']} |")
    return "\n".join(lines) + "\n"


def plot(pairs: list[tuple[dict, dict]], cfg, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    peak_b = SDRAM_BYTES_PER_CYCLE
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    ax = axes[0]
    xs = np.logspace(0, 3, 200)
    ax.plot(xs, np.minimum(cfg.mac_units, xs * peak_b), "k-", lw=1.5, label="roof")
    markers = "osd^"
    for j, (d, k) in enumerate(pairs):
        for r, filled in ((d, False), (k, True)):
            pts = [(n["intensity"], n["macs_per_cycle"], n["name"]) for n in r["nodes"]
                   if n["intensity"] and n["macs"]]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[j % 4], s=24,
                       facecolors=f"C{j}" if filled else "none", edgecolors=f"C{j}",
                       label=f"{r['network']}, {'skipping' if filled else 'dense'}")
            if j == 0 and filled:
                for x, y, name in pts:
                    ax.annotate(name, (x, y), fontsize=5, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dense MACs per SDRAM byte")
    ax.set_ylabel("dense MACs per cycle")
    ax.set_title(f"Roofline: {cfg.mac_units} MACs, {peak_b} SDRAM bytes a cycle", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1]
    d, k = pairs[0]
    names = [n["name"] for n in k["nodes"]]
    x = np.arange(len(names))
    wdt = 0.4
    for off, r, label in ((-wdt / 2, d, "dense"), (wdt / 2, k, "skipping")):
        ax.bar(x + off, [n["compute"] / 1e6 for n in r["nodes"]], wdt,
               label=f"{label}: compute", color="C0" if label == "dense" else "C2")
        ax.bar(x + off, [n["wait"] / 1e6 for n in r["nodes"]], wdt,
               bottom=[n["compute"] / 1e6 for n in r["nodes"]], label=f"{label}: waiting",
               color="C1" if label == "dense" else "C3")
    ax.set_xticks(x, names, rotation=70, fontsize=6)
    ax.set_ylabel("M cycles")
    ax.set_title(k["network"], fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    from dataclasses import replace
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports"),
                    help="where perf.md, perf.json and perf.png go")
    ap.add_argument("--mac-units", type=int, default=64)
    ap.add_argument("--wide", type=int, default=128,
                    help="the MAC units of the wider dense device beside them (0: none)")
    ap.add_argument("--photos", type=int, default=5,
                    help="shared photos that calibrate the authors' model (every 100th)")
    args = ap.parse_args()
    base = board_config(args.mac_units)
    dense_cfg, skip_cfg = replace(base, zero_skipping=False), replace(base, zero_skipping=True)
    wide_cfg = board_config(args.wide) if args.wide else None
    pairs, wide = [], []
    for label, model, calib in networks(args.photos):
        q = quantize(model, calib, 8)
        d, k = analyse(label, q, dense_cfg), analyse(label, q, skip_cfg)
        print(f"{label}: dense {d['cycles']:,} cycles ({d['ms']:.1f} ms), skipping "
              f"{k['cycles']:,} ({k['ms']:.1f} ms): {d['cycles'] / k['cycles']:.2f}x", flush=True)
        pairs.append((d, k))
        if wide_cfg:
            wide.append(analyse(label, q, wide_cfg))
            print(f"  dense at {args.wide} MAC units: {wide[-1]['cycles']:,} cycles "
                  f"({wide[-1]['ms']:.1f} ms)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fmax = _fmax(args.mac_units)
    wide_fmax = _fmax(args.wide) if wide_cfg else {}
    (out / "perf.json").write_text(json.dumps({
        "config": base.as_dict(), "sdram_bytes_per_cycle": SDRAM_BYTES_PER_CYCLE,
        "fmax_mhz": fmax, "networks": [{"dense": d, "zero_skipping": k} for d, k in pairs],
        **({"wide": {"config": wide_cfg.as_dict(), "fmax_mhz": wide_fmax, "networks": wide}}
           if wide_cfg else {})}, indent=1))
    (out / "perf.md").write_text(markdown(pairs, base, fmax)
                                 + (wide_markdown(wide, wide_cfg, wide_fmax) if wide else ""))
    plot(pairs, base, out / "perf.png")
    print(f"wrote {out / 'perf.md'}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
