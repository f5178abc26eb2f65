"""The memory plan of a network on a device whose feature maps live in SDRAM: for every layer,
the row bands its on-chip tiles allow, the bytes it moves through the SDRAM, its compute
cycles from hw.timing and its transfer cycles, and whether it is bound by compute or memory.

    python -m host.memory_plan [--mac-units 64] [--mhz 100] [--tile-words N] [--no-fusion]
                               [--json OUT] [--markdown OUT]

An analytical plan, made before the device had its DMA units (the compiler's real plan is
host/sdram_plan.py, its figures host/sdram_report.py's), kept for what it estimates that the
device does not do yet (pooling fused into the layer that feeds it): bands are computed exactly (hw.layout.LayerDescriptor.band, halos and edge rows
included), every band's engine cycles come from the cycle model, but the transfer time is the
bytes over the SDRAM's sustained rate (``STREAM_WORDS_PER_CYCLE``, measured by the controller
bench), and the overlap of transfers with compute assumes double-buffered tiles. It does not
replace an RTL count.

The dataflow it plans:

- a convolution reads its input in row bands (each band's rows plus the kernel's halo, the
  halos read twice) into the input tile and writes its output band by band;
- a Fire module runs band by band: squeeze of the band's rows plus one row either side into the
  squeeze buffer, both expands from there, so the squeeze output never leaves the chip;
- with fusion, a 3x3/2 max pooling runs on the output band of the layer that feeds it (conv1,
  fire4, fire8): only the pooled map is written; and the global sum accumulates conv_final's
  output as it is produced: only the sums are written;
- weights are read once per layer as dense indices, with the codebook and biases.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from golden.network import Conv, Fire, GlobalAvgPool, MaxPool, Network
from hw.config import AcceleratorConfig
from hw.layout import describe, groups
from hw.protocol import BIAS_BYTES, CODEBOOK_BYTES
from hw.sdram_chip import MT48LC16M16A2
from hw.timing import OP_OVERHEAD, engine_cycles, ideal_cycles

__all__ = ["LayerPlan", "plan_network", "STREAM_WORDS_PER_CYCLE", "BYTES_PER_WORD"]

# SDRAM words a long sequential stream moves per cycle, measured by sim/board/sdram_bench.cpp
# at 100 MHz (tests/test_sdram.py requires > 0.95): refresh and row changes cost the rest.
STREAM_WORDS_PER_CYCLE = 0.98
BYTES_PER_WORD = MT48LC16M16A2.dq_bits // 8


@dataclass
class LayerPlan:
    name: str
    kind: str
    band_rows: int
    bands: int
    read_bytes: int
    write_bytes: int
    weight_bytes: int
    compute_cycles: int
    ideal_cycles: float
    transfer_cycles: int
    cycles: int                   # with transfers overlapped with compute (double buffering)

    @property
    def wait_cycles(self) -> int:
        return self.cycles - self.compute_cycles

    @property
    def bound(self) -> str:
        return "memory" if self.transfer_cycles > self.compute_cycles else "compute"


def _transfer(nbytes: int) -> int:
    return round(nbytes / BYTES_PER_WORD / STREAM_WORDS_PER_CYCLE)


def _map_bytes(c: int, h: int, w: int, cfg: AcceleratorConfig) -> int:
    """A map as it is stored: whole channel groups (PC bytes a word)."""
    return groups(c, cfg.pc) * cfg.pc * h * w


def _weights(spec, cfg: AcceleratorConfig) -> int:
    words = groups(spec.out_channels, cfg.po) * groups(spec.in_channels, cfg.pc) * spec.kh * spec.kw
    return (words * cfg.lanes * cfg.weight_bits // 8
            + (cfg.codebook_entries * CODEBOOK_BYTES if cfg.codebooks else 0)
            + groups(spec.out_channels, cfg.po) * cfg.po * BIAS_BYTES)


def _overlapped(compute: list[int], loads: list[int], stores: list[int]) -> int:
    """Bands in a pipeline of three (load band i+1, compute band i, store band i-1), each
    stage waiting for the slowest: the first load and the last store stand alone."""
    n = len(compute)
    total = loads[0] + stores[-1]
    for i in range(n):
        total += max(compute[i], loads[i + 1] if i + 1 < n else 0, stores[i - 1] if i else 0)
    return total


def _largest_band(fits, rows: int) -> int:
    best = 0
    for r in range(1, rows + 1):
        if fits(r):
            best = r
    if not best:
        raise ValueError("not even one output row fits the tiles: give the device larger "
                         "tiles (--tile-words)")
    return best


def plan_network(net: Network, cfg: AcceleratorConfig, tile_words: int,
                 fusion: bool = True) -> list[LayerPlan]:
    """``tile_words``: words per bank for the input, output and squeeze tiles together (each of
    the input and output tiles double-buffered)."""
    shapes = net.shapes()
    consumers = {}
    for i, node in enumerate(net.nodes):
        for src in net.node_inputs(i):
            consumers.setdefault(src, []).append(node)
    plans = []
    fused_into = {}                  # pooling node -> the layer it is fused into
    for i, node in enumerate(net.nodes):
        src = net.node_inputs(i)[0]
        c, h, w = shapes[src]
        oc, oh, ow = shapes[node.name]
        after = consumers.get(node.name, [])
        pool = (after[0] if fusion and len(after) == 1
                and isinstance(after[0], (MaxPool, GlobalAvgPool)) else None)
        if isinstance(node, (MaxPool, GlobalAvgPool)) and node.name in fused_into:
            continue
        if isinstance(node, Conv):
            spec = node.convs()[0]
            whole = describe(spec, h, w)

            def fits(r, whole=whole, c=c, oc=oc):
                band = whole.band(0, r)
                return (2 * groups(c, cfg.pc) * band.buffer_rows * w
                        + 2 * groups(oc, cfg.po) * cfg.po // cfg.pc * r * ow) <= tile_words
            rows = _largest_band(fits, oh)
            starts = list(range(0, oh, rows))
            bands = [whole.band(r0, min(rows, oh - r0)) for r0 in starts]
            compute = [engine_cycles(b, cfg) + OP_OVERHEAD for b in bands]
            loads = [_transfer(groups(c, cfg.pc) * cfg.pc * b.buffer_rows * w) for b in bands]
            out_bytes = [_map_bytes(oc, b.out_h, ow, cfg) for b in bands]
            if pool is not None:
                pc_, ph, pw = shapes[pool.name]
                scale = _map_bytes(pc_, ph, pw, cfg) / _map_bytes(oc, oh, ow, cfg)
                out_bytes = [round(x * scale) for x in out_bytes]
                fused_into[pool.name] = node.name
            stores = [_transfer(x) for x in out_bytes]
            weight = _weights(spec, cfg)
            read = sum(groups(c, cfg.pc) * cfg.pc * b.buffer_rows * w for b in bands)
            plans.append(LayerPlan(node.name + (f"+{pool.name}" if pool is not None else ""),
                                   "conv", rows, len(bands), read, sum(out_bytes), weight,
                                   sum(compute), ideal_cycles(whole, cfg),
                                   sum(loads) + sum(stores) + _transfer(weight),
                                   _overlapped(compute, [loads[0] + _transfer(weight)]
                                               + loads[1:], stores)))
        elif isinstance(node, Fire):
            sq, e1, e3 = node.convs()
            d_sq, d_e1, d_e3 = (describe(s, h, w) for s in (sq, e1, e3))

            def fits(r, c=c, oc=oc, sq=sq):
                halo = d_e3.band(0, r).buffer_rows
                return (2 * groups(c, cfg.pc) * halo * w
                        + groups(sq.out_channels, cfg.po) * cfg.po // cfg.pc * halo * w
                        + 2 * groups(oc, cfg.pc) * r * w) <= tile_words
            rows = _largest_band(fits, h)
            compute, loads, stores, read = [], [], [], 0
            for r0 in range(0, h, rows):
                n = min(rows, h - r0)
                band3 = d_e3.band(r0, n)
                sq_band = d_sq.band(band3.in_row0, band3.buffer_rows)
                compute.append(sum(engine_cycles(b, cfg) + OP_OVERHEAD
                                   for b in (sq_band, d_e1.band(r0, n), band3)))
                nbytes = groups(c, cfg.pc) * cfg.pc * sq_band.buffer_rows * w
                read += nbytes
                loads.append(_transfer(nbytes))
                stores.append(_transfer(_map_bytes(oc, n, w, cfg)))
            out = _map_bytes(oc, oh, ow, cfg)
            if pool is not None:
                pc_, ph, pw = shapes[pool.name]
                out = _map_bytes(pc_, ph, pw, cfg)
                stores = [round(s * out / _map_bytes(oc, oh, ow, cfg)) for s in stores]
                fused_into[pool.name] = node.name
            weight = sum(_weights(s, cfg) for s in (sq, e1, e3))
            plans.append(LayerPlan(node.name + (f"+{pool.name}" if pool is not None else ""),
                                   "fire", rows, len(compute), read, out, weight, sum(compute),
                                   sum(ideal_cycles(d, cfg) for d in (d_sq, d_e1, d_e3)),
                                   sum(loads) + sum(stores) + _transfer(weight),
                                   _overlapped(compute, [loads[0] + _transfer(weight)]
                                               + loads[1:], stores)))
        elif isinstance(node, (MaxPool, GlobalAvgPool)):
            read, write = _map_bytes(c, h, w, cfg), _map_bytes(oc, oh, ow, cfg)
            compute = groups(c, cfg.pc) * h * w
            transfer = _transfer(read) + _transfer(write)
            plans.append(LayerPlan(node.name, "pool", h, 1, read, write, 0, compute, 0,
                                   transfer, max(compute, transfer)))
        else:
            raise ValueError(f"{node.name}: {type(node).__name__} has no memory plan yet")
    return plans


def report(plans: list[LayerPlan], cfg: AcceleratorConfig, mhz: float, tile_words: int,
           fusion: bool) -> dict:
    total = {k: sum(getattr(p, k) for p in plans)
             for k in ("read_bytes", "write_bytes", "weight_bytes", "compute_cycles",
                       "transfer_cycles", "cycles")}
    total["wait_cycles"] = total["cycles"] - total["compute_cycles"]
    return {"mac_units": cfg.mac_units, "clock_mhz": mhz, "tile_words_per_bank": tile_words,
            "fusion": fusion, "stream_words_per_cycle": STREAM_WORDS_PER_CYCLE,
            "layers": [{**asdict(p), "wait_cycles": p.wait_cycles, "bound": p.bound}
                       for p in plans],
            "total": {**total, "sdram_bytes": total["read_bytes"] + total["write_bytes"]
                      + total["weight_bytes"],
                      "wait_share": total["wait_cycles"] / total["cycles"],
                      "ms_per_image": total["cycles"] / (mhz * 1e3)}}


def markdown(rep: dict) -> str:
    t = rep["total"]
    lines = [f"# Memory plan: SqueezeNet v1.0, {rep['mac_units']} MAC units, "
             f"{rep['clock_mhz']:g} MHz, tiles of {rep['tile_words_per_bank']:,} words per bank, "
             f"fusion {'on' if rep['fusion'] else 'off'}", "",
             "Analytical (host/memory_plan.py): band cycles from the RTL-checked cycle model, "
             "transfers at the SDRAM bench's measured stream rate "
             f"({rep['stream_words_per_cycle']} words per cycle), double-buffered tiles.", "",
             "| layer | band rows | bands | read KB | write KB | weights KB | compute cycles | "
             "transfer cycles | cycles | wait | bound |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in rep["layers"]:
        lines.append(f"| {p['name']} | {p['band_rows']} | {p['bands']} | "
                     f"{p['read_bytes'] / 1024:,.0f} | {p['write_bytes'] / 1024:,.0f} | "
                     f"{p['weight_bytes'] / 1024:,.0f} | {p['compute_cycles']:,} | "
                     f"{p['transfer_cycles']:,} | {p['cycles']:,} | {p['wait_cycles']:,} | "
                     f"{p['bound']} |")
    lines += [f"| **total** | | | {t['read_bytes'] / 1024:,.0f} | {t['write_bytes'] / 1024:,.0f} | "
              f"{t['weight_bytes'] / 1024:,.0f} | {t['compute_cycles']:,} | "
              f"{t['transfer_cycles']:,} | {t['cycles']:,} | {t['wait_cycles']:,} | |", "",
              f"SDRAM traffic {t['sdram_bytes'] / 2**20:.2f} MiB per image; waits "
              f"{t['wait_share']:.1%} of all cycles; {t['ms_per_image']:.1f} ms per image at "
              f"{rep['clock_mhz']:g} MHz (pooling and sums not fused are counted at one word "
              "per cycle)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from golden.network import squeezenet_v1_0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mac-units", type=int, default=64)
    ap.add_argument("--mhz", type=float, default=100.0)
    ap.add_argument("--tile-words", type=int, default=48 * 1024,
                    help="words per bank for the input, output and squeeze tiles together")
    ap.add_argument("--no-fusion", action="store_true",
                    help="write every pooling's input to SDRAM and read it back")
    ap.add_argument("--json", help="write the plan as JSON")
    ap.add_argument("--markdown", help="write the plan as a Markdown table")
    args = ap.parse_args(argv)
    cfg = AcceleratorConfig(mac_units=args.mac_units)
    plans = plan_network(squeezenet_v1_0(), cfg, args.tile_words, not args.no_fusion)
    rep = report(plans, cfg, args.mhz, args.tile_words, not args.no_fusion)
    text = markdown(rep)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rep, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
