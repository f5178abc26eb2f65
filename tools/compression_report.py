"""Gather the reports `make compress-imagenet` writes into one table next to paper Table 2.

    python tools/compression_report.py build/compress   -> report.json, report.md there
"""

import json
import sys
from pathlib import Path

MIB = 2 ** 20
# SqueezeNet rows of paper Table 2 (sizes in MB as printed; 2**20 bytes, as 4.8 MB for
# 1,248,424 float32 parameters shows).
PAPER = {"float32": 4.8, "8": 0.66, "6": 0.47}


def main() -> int:
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "build/compress")

    def load(name):
        p = d / name
        return json.loads(p.read_text()) if p.exists() else None

    rows = []
    ref = load("eval-float.json")
    base = load("sqn-8.json")
    if base:
        rows.append({"variant": "dense float32", "bits": 32, "huffman": False,
                     "bytes": base["dense_float32_bytes"], "paper_mb": PAPER["float32"],
                     "top1": ref and ref["top1"], "top5": ref and ref["top5"]})
    authors = load("eval-authors-8.json")
    net = load("sqn-8-net.json")
    if net:
        rows.append({"variant": "authors' file layout (.net)", "bits": 8, "huffman": False,
                     "bytes": net["bytes"], "paper_mb": PAPER["8"],
                     "top1": authors and authors["top1"], "top5": authors and authors["top5"],
                     "note": "accuracy: the authors' own codebooks"})
    for bits in (8, 6, 4):
        for suffix, label in (("", "packed .sqz"), ("-huff", "packed .sqz, Huffman"),
                              ("-ft", "packed .sqz, fine-tuned"),
                              ("-ft-ste", "packed .sqz, fine-tuned through the 8-bit "
                                          "activations")):
            rep = load(f"sqn-{bits}{suffix}.json")
            if not rep:
                continue
            ev = load(f"eval-{bits}{'' if suffix == '-huff' else suffix}.json")
            rows.append({"variant": label, "bits": bits, "huffman": rep["huffman"],
                         "bytes": rep["bytes"], "paper_mb": PAPER.get(str(bits)),
                         "code_bytes": rep.get("code_bytes"), "gap_bytes": rep.get("gap_bytes"),
                         "top1": ev and ev["top1"], "top5": ev and ev["top5"]})
    (d / "report.json").write_text(json.dumps(rows, indent=1))
    lines = ["| variant | bits | bytes | MiB | paper Table 2 (MB) | top-1 | top-5 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = f"{r['paper_mb']}" if r.get("paper_mb") else ""
        acc = (f"{100 * r['top1']:.1f}%", f"{100 * r['top5']:.1f}%") if r.get("top1") is not None \
            else ("", "")
        lines.append(f"| {r['variant']} | {r['bits']} | {r['bytes']:,} | {r['bytes'] / MIB:.3f} "
                     f"| {paper} | {acc[0]} | {acc[1]} |")
    six, six_h = load("sqn-6.json"), load("sqn-6-huff.json")
    if six and six_h:
        codes_only = six["bytes"] - six["code_bytes"] + six_h["code_bytes"]
        gaps_only = six["bytes"] - six["gap_bytes"] + six_h["gap_bytes"]
        lines += ["", "6-bit, Huffman coding of one stream only (from the two reports): codes "
                  f"{codes_only:,} bytes ({codes_only / MIB:.3f} MiB), gaps {gaps_only:,} bytes "
                  f"({gaps_only / MIB:.3f} MiB)."]
    if six and "bytes_with_gap_bits" in six:
        what_if = ", ".join(f"{g}-bit gaps {b / MIB:.3f} MiB"
                            for g, b in six["bytes_with_gap_bits"].items())
        lines += ["", f"6-bit with other fixed gap widths: {what_if}."]
    lines += ["", "Accuracy on the held-out half of ../shared/imagenet-sample (250 photos); "
              "fine-tuning used only the other half."]
    (d / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
