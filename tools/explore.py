"""Design-space exploration of Fire-module metaparameters with hardware cost (``sqz explore``).

The paper's microarchitecture sweeps (section 5: squeeze ratio SR, fraction of 3x3 filters
pct3x3; section 6: bypass variants), reproduced on scikit-learn's digits with the project's
small SqueezeNet. Each point is trained (PyTorch extra), then measured: parameters, the size of
its Deep Compression file (k-means weight sharing at ``bits``, Huffman-coded if asked), held-out
accuracy on the float path and on the integer path of the compressed model (golden), and
device cycles per image from the hardware's cycle model (hw.timing.network_cycles, which the
RTL benches check on every simulated layer and Fire module).

Points run in parallel on the local cores, one process per point. Each finished point is a
JSON file (and its trained model, .npz) under OUT/points/, so a rerun skips what is done
(resumable) and a changed setting is a new point. Cycles are not cached: every run takes them
from the current cycle model. OUT/table.csv, OUT/table.md and two plots (accuracy against size and against
cycles, Pareto front marked) summarise the sweep.

CONFIG (JSON):

    {"sr": [0.125, 0.25, 0.5, 1.0], "pct3x3": [0.01, 0.5, 0.99], "bypass": ["none"],
     "extra_points": [{"sr": 0.25, "pct3x3": 0.5, "bypass": "simple"}],
     "width": 32, "epochs": 40, "seed": 0, "bits": 8, "huffman": true, "mac_units": 64}

Every (sr, pct3x3, bypass) combination of the three lists is a point, plus ``extra_points``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

DEFAULTS = {"sr": [0.25], "pct3x3": [0.5], "bypass": ["none"], "extra_points": [],
            "width": 32, "epochs": 40, "seed": 0, "bits": 8, "huffman": True, "mac_units": 64}
COLUMNS = ["sr", "pct3x3", "bypass", "parameters", "bytes", "float_accuracy",
           "int_accuracy", "cycles", "pareto_size", "pareto_cycles"]

__all__ = ["load_config", "points", "run_point", "explore"]


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        cfg = {**DEFAULTS, **json.loads(path.read_text())}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    for sr in cfg["sr"]:
        if not 0 < sr <= 1:
            raise ValueError(f"{path}: SR {sr} is outside (0, 1]")
    for pct in cfg["pct3x3"]:
        if not 0 < pct < 1:
            raise ValueError(f"{path}: pct3x3 {pct} is outside (0, 1)")
    return cfg


def points(cfg: dict) -> list[dict]:
    grid = [{"sr": sr, "pct3x3": pct, "bypass": b}
            for b in cfg["bypass"] for sr in cfg["sr"] for pct in cfg["pct3x3"]]
    for p in cfg["extra_points"]:
        if p not in grid:
            grid.append(dict(p))
    common = {k: cfg[k] for k in ("width", "epochs", "seed", "bits", "huffman", "mac_units")}
    return [{**p, **common} for p in grid]


def _key(point: dict) -> str:
    text = json.dumps(point, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_point(point: dict, model_path: Path | None = None) -> dict:
    """Train, compress, measure one point (runs in a worker process, one thread); the trained
    float model is kept at ``model_path``."""
    import torch
    torch.set_num_threads(1)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")

    from golden import compress as C
    from golden.digits import accuracy, train
    from golden.formats.packed import packed_bytes
    from golden.network import digits_net

    net = digits_net(point["sr"], point["pct3x3"], point["bypass"], point["width"])
    model = train(net, point["epochs"], point["seed"], log=lambda *_: None)
    if model_path is not None:
        from golden.formats import save_model
        save_model(model, model_path)
    shared = C.share_weights(model, point["bits"])
    data, _ = packed_bytes(shared, point["huffman"])
    return {**point, "network": net.name, "parameters": model.parameter_count,
            "bytes": len(data), "float_accuracy": accuracy(model, "float"),
            "int_accuracy": accuracy(shared, str(point["bits"]))}


def add_cycles(row: dict) -> dict:
    """Device cycles from the current cycle model (not cached: it follows the hardware)."""
    from golden.network import digits_net
    from hw.timing import network_cycles
    from hw.config import AcceleratorConfig
    net = digits_net(row["sr"], row["pct3x3"], row["bypass"], row["width"])
    cycles = network_cycles(net, AcceleratorConfig(mac_units=row["mac_units"]))
    return {**row, "cycles": sum(cycles.values()), "cycles_per_unit": cycles}


def _pareto(rows: list[dict], cost: str) -> list[bool]:
    """A point is on the front if no other is at least as accurate and at most as costly,
    and strictly better in one of the two (integer-path accuracy)."""
    flags = []
    for r in rows:
        dominated = any(o is not r and o["int_accuracy"] >= r["int_accuracy"]
                        and o[cost] <= r[cost]
                        and (o["int_accuracy"] > r["int_accuracy"] or o[cost] < r[cost])
                        for o in rows)
        flags.append(not dominated)
    return flags


def explore(config: str | Path, out: str | Path, jobs: int | None = None,
            progress=None) -> list[dict]:
    cfg = load_config(config)
    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    todo, rows = [], []
    for p in points(cfg):
        path = out / "points" / f"{_key(p)}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
        else:
            todo.append((p, path))
    total = len(rows) + len(todo)
    if progress:
        progress(len(rows), total)
    jobs = jobs or os.cpu_count() or 1
    if todo:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            futures = {pool.submit(run_point, p, path.with_suffix(".npz")): path
                       for p, path in todo}
            for f in as_completed(futures):
                row = f.result()
                futures[f].write_text(json.dumps(row, indent=1))
                rows.append(row)
                if progress:
                    progress(len(rows), total)
    rows = [add_cycles(r) for r in rows]
    rows.sort(key=lambda r: (r["bypass"], r["sr"], r["pct3x3"]))
    for cost in ("bytes", "cycles"):
        for r, flag in zip(rows, _pareto(rows, cost)):
            r[f"pareto_{'size' if cost == 'bytes' else cost}"] = flag
    _write_tables(rows, out)
    _plot(rows, out)
    return rows


def _write_tables(rows: list[dict], out: Path) -> None:
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = ["| SR | pct3x3 | bypass | parameters | bytes | float acc | int acc | cycles | "
             "Pareto (size / cycles) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        front = "/".join("yes" if r[k] else "-" for k in ("pareto_size", "pareto_cycles"))
        lines.append(f"| {r['sr']} | {r['pct3x3']} | {r['bypass']} | {r['parameters']:,} | "
                     f"{r['bytes']:,} | {100 * r['float_accuracy']:.2f}% | "
                     f"{100 * r['int_accuracy']:.2f}% | {r['cycles']:,} | {front} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


def _plot(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for cost, flag, label, name in (("bytes", "pareto_size", "compressed model (bytes)",
                                     "accuracy_vs_size.png"),
                                    ("cycles", "pareto_cycles", "device cycles per image",
                                     "accuracy_vs_cycles.png")):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for bypass, marker in (("none", "o"), ("simple", "s"), ("complex", "^")):
            sel = [r for r in rows if r["bypass"] == bypass]
            if not sel:
                continue
            sc = ax.scatter([r[cost] for r in sel], [100 * r["int_accuracy"] for r in sel],
                            c=[r["sr"] for r in sel], cmap="viridis", marker=marker,
                            vmin=0, vmax=1, label=f"bypass: {bypass}")
        front = sorted((r for r in rows if r[flag]), key=lambda r: r[cost])
        ax.plot([r[cost] for r in front], [100 * r["int_accuracy"] for r in front], "r--",
                drawstyle="steps-post",
                label="Pareto front")
        for r in rows:
            ax.annotate(f"{r['pct3x3']:g}", (r[cost], 100 * r["int_accuracy"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out accuracy, integer path (%)")
        ax.set_title("digits SqueezeNet: colour = SR, label = pct3x3")
        fig.colorbar(sc, ax=ax, label="squeeze ratio SR")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
