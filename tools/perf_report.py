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

The zero-skipping columns count the non-zero weights of the real file in the skipping engine's
word format (hw.layout.skip_words: a chunk of up to SKIP_ROWS output groups, each lane's
non-zeros of a step packed PC to a word), and project each convolution's engine cycles from
those word counts; they are a projection of a design, marked as such in the report, until the
engine runs that format.

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
from golden.network import Bypass, Conv, Fire, squeezenet_v1_1  # noqa: E402
from golden.quantize import quantize  # noqa: E402
from host.compiler import compile_network  # noqa: E402
from hw.config import board_config  # noqa: E402
from hw.layout import SKIP_ROWS, describe, groups, skip_words  # noqa: E402
from hw.sdram_chip import MT48LC16M16A2  # noqa: E402
from hw.timing import ENGINE_LATENCY, engine_cycles  # noqa: E402

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


def skipping_cycles(qc, h: int, w: int, cfg) -> tuple[int, int, int]:
    """(dense engine cycles, projected zero-skipping engine cycles, skipping words) of one
    convolution on an h x w input, the whole layer as one engine run per chunk."""
    desc = describe(qc.spec, h, w)
    dense = engine_cycles(desc, cfg)
    weights = qc.weights
    pixels = desc.out_h * desc.out_w
    chunk = SKIP_ROWS * cfg.po
    total = words = 0
    for c0 in range(0, weights.shape[0], chunk):
        sw = skip_words(weights[c0:c0 + chunk], cfg, qc.name)
        rows = groups(min(chunk, weights.shape[0] - c0), cfg.po)
        drain = rows * cfg.po // cfg.pc
        total += (pixels - 1) * max(sw.words, drain) + sw.words + drain + ENGINE_LATENCY
        words += sw.words
    return dense, total, words


def analyse(label: str, q, cfg) -> dict:
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
        oc, oh, ow = shapes[node.name]
        macs = dense = skip = 0
        density = []
        in_h, in_w = h, w
        for spec in node.convs():
            oh_s, ow_s = spec.output_size(in_h, in_w)
            macs += spec.weight_count * oh_s * ow_s
            d, s, _ = skipping_cycles(q.convs[spec.name], in_h, in_w, cfg)
            dense += d
            skip += s
            density.append((spec.weight_count, float((q.convs[spec.name].weights != 0).mean())))
            if isinstance(node, Fire) and spec is node.convs()[0]:
                in_h, in_w = oh_s, ow_s        # the expands read the squeeze's output
        moved = fig["sdram_bytes"]
        compute = fig["compute"]
        memory_time = moved / SDRAM_BYTES_PER_CYCLE
        row = {"name": fig["name"], "kind": type(node).__name__, "ops": fig["ops"],
               "macs": macs, "cycles": fig["cycles"], "compute": compute, "wait": fig["wait"],
               "sdram_bytes": moved,
               "macs_per_cycle": macs / fig["cycles"] if fig["cycles"] else 0.0,
               "bytes_per_cycle": moved / fig["cycles"] if fig["cycles"] else 0.0,
               "intensity": macs / moved if moved else None,
               "bound": "memory" if memory_time > compute else "compute",
               "density": (sum(n * d for n, d in density) / sum(n for n, _ in density)
                           if density else None)}
        if dense:
            # The projection scales the node's compute cycles by the engine's own ratio, and a
            # node cannot go below its SDRAM time at the peak.
            row["skip_engine_ratio"] = dense / skip
            row["skip_compute"] = round(compute * skip / dense)
            row["skip_cycles_bound"] = round(max(row["skip_compute"], memory_time))
        rows.append(row)
    macs = net.macs
    return {"network": label, "description": q.network.name, "ops": len(prog.ops),
            "segments": len(prog.segment_ranges()), "macs": macs, "cycles": total,
            "ms": total / cfg.clock_mhz / 1e3, "wait": sum(waits.values()),
            "sdram_bytes": sum(r["sdram_bytes"] for r in rows),
            "macs_per_cycle": macs / total,
            "skip_cycles_bound": sum(r.get("skip_cycles_bound", r["cycles"]) for r in rows),
            "nodes": rows}


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


def markdown(results: list[dict], cfg) -> str:
    peak_b = SDRAM_BYTES_PER_CYCLE
    ridge = cfg.mac_units / peak_b
    lines = [
        "# Performance per layer against the roofs", "",
        f"The board's device: {cfg.mac_units} MAC units at {cfg.clock_mhz:g} MHz, maps and "
        f"weights in the SDRAM (one {MT48LC16M16A2.dq_bits}-bit word a cycle: {peak_b} bytes "
        f"a cycle). Peaks: {cfg.mac_units} MACs a cycle, {peak_b} bytes a cycle; the ridge is at "
        f"{ridge:g} MACs per byte. Cycles from each compiled program through the RTL-checked "
        "cycle model (transfers at their estimate); MACs are the network's dense MACs (zero "
        "weights counted). `bound`: memory when moving the node's bytes at the SDRAM's peak "
        "takes longer than its compute cycles. Regenerated by `make perf-report` "
        "(tools/perf_report.py).", "",
        "| network | MACs | ops | cycles | ms | MACs / cycle | of peak | waiting | SDRAM MiB | "
        "bytes / cycle | zero-skipping bound (projected) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['network']} | {r['macs'] / 1e6:.0f} M | {r['ops']:,} | {r['cycles']:,} | "
            f"{r['ms']:.1f} | {r['macs_per_cycle']:.1f} | "
            f"{r['macs_per_cycle'] / cfg.mac_units:.0%} | {r['wait'] / r['cycles']:.0%} | "
            f"{r['sdram_bytes'] / 2**20:.2f} | {r['sdram_bytes'] / r['cycles']:.2f} | "
            f"{r['skip_cycles_bound']:,} ({r['skip_cycles_bound'] / cfg.clock_mhz / 1e3:.1f} ms) |")
    v11 = [r for r in results if "v1.1" in r["network"]]
    if v11:
        lines += ["", "SqueezeJet-2 runs SqueezeNet v1.1 in "
                  f"{SQUEEZEJET2_MS} ms on a Zynq-7020; here: " +
                  "; ".join(f"{r['network']} {r['ms']:.1f} ms" for r in v11) + "."]
    lines += [
        "", "The zero-skipping bound is a projection, not a measurement: each convolution's "
        "engine cycles recomputed from the word counts of its real weights in the skipping "
        "format (hw.layout.skip_words), the node's compute cycles scaled by that ratio, and "
        "no node faster than its SDRAM time at the peak.", ""]
    for r in results:
        lines += [f"## {r['network']}", "",
                  "| node | MACs | density | cycles | compute | wait | SDRAM KiB | MACs / cycle | "
                  "of peak | bytes / cycle | of peak | MACs / byte | bound | skipping engine "
                  "speed-up (projected) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for n in r["nodes"]:
            lines.append(
                f"| {n['name']} | {n['macs'] / 1e6:.1f} M | "
                + (f"{n['density']:.0%}" if n["density"] is not None else "") +
                f" | {n['cycles']:,} | {n['compute']:,} | {n['wait']:,} | "
                f"{n['sdram_bytes'] / 1024:,.0f} | {n['macs_per_cycle']:.1f} | "
                f"{n['macs_per_cycle'] / cfg.mac_units:.0%} | {n['bytes_per_cycle']:.2f} | "
                f"{n['bytes_per_cycle'] / peak_b:.0%} | "
                + (f"{n['intensity']:.0f}" if n["intensity"] else "") +
                f" | {n['bound']} | "
                + (f"{n['skip_engine_ratio']:.2f}x" if "skip_engine_ratio" in n else "") + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], cfg, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    peak_b = SDRAM_BYTES_PER_CYCLE
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    ax = axes[0]
    xs = np.logspace(0, 3, 200)
    ax.plot(xs, np.minimum(cfg.mac_units, xs * peak_b), "k-", lw=1.5, label="roof")
    markers = "osd^"
    for k, r in enumerate(results):
        pts = [(n["intensity"], n["macs_per_cycle"], n["name"]) for n in r["nodes"]
               if n["intensity"] and n["macs"]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[k % 4], s=22,
                   label=r["network"], alpha=0.8)
        if k == 0:
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=5, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per SDRAM byte")
    ax.set_ylabel("MACs per cycle")
    ax.set_title(f"Roofline: {cfg.mac_units} MACs, {peak_b} SDRAM bytes a cycle")
    ax.legend(fontsize=7)
    ax = axes[1]
    r = results[0]
    names = [n["name"] for n in r["nodes"]]
    x = np.arange(len(names))
    ax.bar(x, [n["compute"] / 1e6 for n in r["nodes"]], label="compute")
    ax.bar(x, [n["wait"] / 1e6 for n in r["nodes"]],
           bottom=[n["compute"] / 1e6 for n in r["nodes"]], label="waiting for SDRAM")
    ax.scatter(x, [n.get("skip_cycles_bound", n["cycles"]) / 1e6 for n in r["nodes"]],
               color="k", marker="_", s=80, label="zero-skipping bound (projected)", zorder=3)
    ax.set_xticks(x, names, rotation=70, fontsize=6)
    ax.set_ylabel("M cycles")
    ax.set_title(r["network"], fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "reports"),
                    help="where perf.md, perf.json and perf.png go")
    ap.add_argument("--mac-units", type=int, default=64)
    ap.add_argument("--photos", type=int, default=5,
                    help="shared photos that calibrate the authors' model (every 100th)")
    args = ap.parse_args()
    cfg = board_config(args.mac_units)
    results = []
    for label, model, calib in networks(args.photos):
        r = analyse(label, quantize(model, calib, 8), cfg)
        print(f"{label}: {r['cycles']:,} cycles ({r['ms']:.1f} ms), {r['macs_per_cycle']:.1f} "
              f"MACs a cycle, zero-skipping bound {r['skip_cycles_bound']:,} (projected)",
              flush=True)
        results.append(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps({"config": cfg.as_dict(),
                                               "sdram_bytes_per_cycle": SDRAM_BYTES_PER_CYCLE,
                                               "networks": results}, indent=1))
    (out / "perf.md").write_text(markdown(results, cfg))
    plot(results, cfg, out / "perf.png")
    print(f"wrote {out / 'perf.md'}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
