"""``sqz``: the command-line front end (model inspection, evaluation, inference, benchmarks)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from golden.quantize import (CALIBRATION_IMAGES, CALIBRATION_RULES, DEFAULT_ACTIVATION_REFIT,
                             DEFAULT_BIAS_CORRECTION, DEFAULT_RULE)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "digits-squeezenet.npz"
SHARED = ROOT.parent / "shared"


def _write_json(data: dict, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {path}")


def class_names(classes: int, labels: str | None = None, network: str = "") -> list[str]:
    """Names of the outputs: --labels file (one per line, or 'index wnid name'), else ImageNet
    synsets for 1000 classes, CIFAR-10's for a cifar10 network, digits for other 10-class ones."""
    from golden.preprocess import read_synsets
    if labels:
        lines = Path(labels).read_text().splitlines()
        if lines and len(lines[0].split()) >= 3 and lines[0].split()[0].isdigit():
            return [n for _, n in read_synsets(labels)]
        return lines
    if classes == 10 and network.startswith("cifar10"):
        from golden.cifar10 import CLASSES
        return list(CLASSES)
    if classes == 10:
        return [str(i) for i in range(10)]
    syn = SHARED / "imagenet-sample" / "synsets.txt"
    if classes == 1000 and syn.exists():
        return [n for _, n in read_synsets(syn)]
    return [f"class {i}" for i in range(classes)]


def cmd_info(args) -> int:
    from golden.formats import load_model
    m = load_model(args.model)
    layers = []
    for spec in m.network.convs():
        lw = m.layers[spec.name]
        layers.append({"name": spec.name, "shape": list(spec.weight_shape),
                       "stored": lw.stored if lw.stored is not None else int(np.count_nonzero(
                           lw.weights)),
                       "density": round(lw.density, 4), "codebook_size": int(len(lw.codebook))})
    report = {"model": str(args.model), "network": m.network.name,
              "parameters": m.parameter_count, "layers": layers}
    print(f"{m.network.name}: {m.parameter_count:,} parameters, {len(layers)} convolutions")
    print(f"{'layer':<20} {'shape':<20} {'stored':>8} {'density':>8} {'codebook':>9}")
    for l in layers:
        print(f"{l['name']:<20} {str(tuple(l['shape'])):<20} {l['stored']:>8} "
              f"{l['density']:>8.3f} {l['codebook_size']:>9}")
    _write_json(report, args.json)
    return 0


def _quantized(args, model):
    """The model as the device runs it: quantised on calibration images."""
    from golden import numerics as nx
    from golden.evaluate import calibration_images
    from golden.quantize import load_quantized, quantize
    if str(args.model).endswith(".q.npz"):
        return load_quantized(args.model)
    if args.calib:
        calib, _ = calibration_images(Path(args.calib), model.network.input, args.calib_count)
    elif model.network.name.startswith("digits"):
        from golden.digits import calibration_set
        calib = calibration_set(args.calib_count)
    elif (SHARED / "imagenet-sample").exists():
        calib, _ = calibration_images(SHARED / "imagenet-sample", model.network.input,
                                      args.calib_count)
    else:
        raise ValueError("no calibration images: pass --calib DIR (a few photos like the inputs)")
    return quantize(model, calib, int(args.bits), args.value_bits or nx.DEFAULT_VALUE_BITS,
                    refit=args.refit, rule=args.calib_rule,
                    bias_correction=args.bias_correction,
                    activation_refit=args.activation_refit)


def cmd_eval(args) -> int:
    from golden.evaluate import evaluate
    from golden.formats import load_model
    model = load_model(args.model)
    reference = load_model(args.reference) if args.reference else None
    r = evaluate(model, args.dir, args.bits, args.synsets, args.calib, args.calib_count,
                 args.value_bits, args.limit, progress=not args.quiet, refit=args.refit,
                 rule=args.calib_rule, bias_correction=args.bias_correction,
                 activation_refit=args.activation_refit, reference=reference)
    agree = ("n/a" if r["agree_top1_with_float"] is None else
             f"top-1 {100 * r['agree_top1_with_float']:.1f}%, top-5 "
             f"{100 * r['agree_top5_with_float']:.1f}%, mean KL {r['mean_kl_to_float']:.4f}")
    print(f"{r['n']} images, bits {r['bits']}: top-1 {100 * r['top1']:.1f}%  "
          f"top-5 {100 * r['top5']:.1f}%  agree with float: {agree}  "
          f"{r['images_per_s']:.1f} images/s")
    _write_json(r, args.json)
    return 0


def cmd_infer(args) -> int:
    from golden.formats import load_model
    from golden.preprocess import load_image
    model = load_model(args.model)
    if args.device and args.bits == "float":
        raise ValueError("--device runs the integer model: choose --bits 8 or 6")
    if args.check and not args.device:
        raise ValueError("--check compares a device with golden: give --device")
    names = class_names(model.network.classes, args.labels, model.network.name)
    images = [(image, load_image(image, model.network.input)) for image in args.images]
    if args.device:
        results, summary = _infer_on_device(args, model, names, images)
    else:
        results, summary = _infer_in_process(args, model, names, images), {}
    _write_json({"model": str(args.model), "bits": args.bits, "device": args.device,
                 **summary, "results": results}, args.json)
    return 1 if any(r.get("bit_exact") is False for r in results) else 0


def _print_top5(image, logits, scores, names) -> list[dict]:
    from golden.engine import top_k
    p = np.exp(scores - scores.max())
    p /= p.sum()
    order = top_k(logits, 5)
    print(f"{image}:")
    for rank, c in enumerate(order):
        print(f"  {rank + 1}. {names[c]:<30} p={p[c]:.3f}  logit={scores[c]:.3f}")
    return [{"class": int(c), "name": names[c], "probability": float(p[c]),
             "logit": int(logits[c]) if logits.dtype.kind in "ui" else float(logits[c])}
            for c in order]


def _infer_in_process(args, model, names, images) -> list[dict]:
    from golden.engine import Golden
    from golden.preprocess import float_input
    from golden.reference_float import forward_float
    results = []
    golden = None if args.bits == "float" else Golden(_quantized(args, model))
    for image, pixels in images:
        t = time.perf_counter()
        if golden is None:
            logits = forward_float(model.network, model.float_weights(),
                                   float_input(pixels, model.network.input))
            scores = logits
        else:
            logits = golden(pixels)
            scores = logits.astype(np.float64) * golden.q.logits_scale()
        seconds = time.perf_counter() - t
        results.append({"image": str(image), "top5": _print_top5(image, logits, scores, names),
                        "seconds": seconds})
    return results


def _infer_on_device(args, model, names, images):
    from host.board import Board, first_mismatch
    from golden.engine import Golden
    from hw.config import board_config
    q = _quantized(args, model)
    golden = Golden(q) if args.check else None
    cfg = board_config(args.mac_units, args.zero_skipping)
    progress = not args.quiet
    with Board(q, args.device, cfg, progress=progress) as board:
        prog = board.program
        print(f"{model.network.name} on {args.device} ({cfg.mac_units} MAC units): model uploaded, "
              f"{board.upload_bytes:,} bytes on the link in {board.upload_seconds:.1f} s")
        ideal = prog.ideal_cycles()
        results = []
        for image, pixels in images:
            r = board.classify(pixels, progress=progress)
            scores = r.logits.astype(np.float64) * q.logits_scale()
            top5 = _print_top5(image, r.logits, scores, names)
            layers = []
            moved = prog.sdram_bytes()
            for op in prog.ops:
                ideal_op = op.ideal_cycles(cfg)
                layers.append({"name": op.name, "cycles": r.layers[op.name],
                               "wait": r.waits[op.name],
                               "sdram_bytes": moved.get(op.name, 0),
                               "ideal": None if ideal_op is None else round(ideal_op, 1)})
            # Per network node: its ops' cycles, and of those the waits for the DMA queue
            # (the engine idle until a transfer it needs is done).
            nodes = prog.node_figures(r.layers, r.waits)
            wait = prog.wait_cycles(r.waits)
            sdram = sum(moved.values())
            # (zero-skipping: the dense MACs' ideal, which skipping passes)
            print(f"  device: {r.cycles:,} cycles ({ideal:,.0f} ideal at {cfg.mac_units} MACs: "
                  f"{100 * ideal / r.cycles:.1f}% of peak"
                  f"{' in dense MACs' if cfg.zero_skipping else ''}), {r.seconds:.1f} s"
                  + (f"; waits for the SDRAM {wait:,} cycles ({100 * wait / r.cycles:.1f}%), "
                     f"{sdram / 2**20:.2f} MiB moved" if cfg.maps_in_sdram else ""))
            if args.layers:
                for row in layers:
                    print(f"    {row['name']:<20} {row['cycles']:>12,}"
                          + (f"  ideal {row['ideal']:>12,.0f}" if row["ideal"] else ""))
            entry = {"image": str(image), "top5": top5, "cycles": r.cycles,
                     "ideal_cycles": ideal, "memory_wait_cycles": wait, "sdram_bytes": sdram,
                     "nodes": nodes, "layers": layers, "seconds": r.seconds}
            if golden is not None:
                problem = first_mismatch(r.logits, golden(pixels), prog.output_node)
                entry["bit_exact"] = problem is None
                print("  check: every output byte equals golden" if problem is None
                      else f"  check: MISMATCH: {problem}")
            results.append(entry)
        summary = {"bytes_sent": board.driver.stats.bytes_sent,
                   "model_bytes_sent": board.upload_bytes,
                   "upload_seconds": board.upload_seconds, "mac_units": cfg.mac_units,
                   "retries": board.driver.stats.retries, "config": cfg.as_dict()}
        if len(results) == 1:      # the single-image fields the issue names, at the top level
            summary.update({k: results[0][k] for k in ("top5", "cycles", "memory_wait_cycles",
                                                        "sdram_bytes", "nodes", "layers",
                                                        "seconds")})
            if "bit_exact" in results[0]:
                summary["bit_exact"] = results[0]["bit_exact"]
    return results, summary


def cmd_selftest(args) -> int:
    from host.driver import Driver
    from host.selftest import run_selftest
    from host.transport import open_device
    from hw.config import board_config
    transport, timeout = open_device(args.device, board_config(args.mac_units))
    try:
        report = run_selftest(Driver(transport, timeout), args.base, args.words, args.seed,
                              args.frames)
    finally:
        transport.close()
    ident, link, sdram = report["identity"], report["link"], report["sdram"]
    print(f"identity: protocol {ident['version']}, {ident['mac_units']} MAC units "
          f"({ident['po']} x {ident['pc']}), {ident['sdram_words'] * 2 >> 20} MB SDRAM")
    print(f"link: {link['frames']} echo frames, {link['payload_bytes']:,} bytes, "
          f"{link['wrong_replies']} wrong, {link['retries']} retries: "
          f"{'ok' if link['ok'] else 'FAILED'}")
    f = sdram["first_failure"]
    print(f"sdram: {sdram['reads_checked']:,} reads of words {sdram['base']:#x}.."
          f"{sdram['base'] + sdram['words'] - 1:#x}, {sdram['errors']} wrong: "
          + ("ok" if sdram["ok"] else
             f"FAILED first in the {f['phase']} phase at word {f['address']:#08x}: expected "
             f"{f['expected']}, read {f['got']} (bits {f['bits']} differ)"
             + (f"; the word written at {f['written_at']:#08x} (address line "
                f"{f['address_line']}) arrived instead" if "written_at" in f else "")))
    _write_json(report, args.json)
    return 0 if report["ok"] else 1


def cmd_board(args) -> int:
    from host.transport import find_boards
    boards = find_boards()
    for b in boards:
        print(f"{b['port']}  {b['description']}  serial {b['serial'] or '?'}  "
              f"(--device serial:{b['port']})")
    if not boards:
        print("no ULX3S found (no FT231X, USB 0403:6015, on this machine's serial ports); is the "
              "board plugged into its US1 port, and is the ftdi_sio driver loaded?")
    _write_json({"boards": boards}, args.json)
    return 0


def cmd_board_sim(args) -> int:
    from sim.board.build import BoardProcess
    from hw.config import board_config
    with BoardProcess(board_config(args.mac_units, args.zero_skipping), port=args.port) as board:
        print(f"simulated board ({args.mac_units} MAC units"
              f"{', zero-skipping' if args.zero_skipping else ''}) at {board.url}; "
              f"use: sqz infer IMAGE --device {board.url}   (Ctrl-C stops it)", flush=True)
        try:
            board.proc.wait()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_quantize(args) -> int:
    from golden.formats import load_model
    from golden.quantize import save_quantized
    model = load_model(args.model)
    q = _quantized(args, model)
    save_quantized(q, args.out)
    print(f"wrote {args.out}: {q.index_bits}-bit indices, {q.value_bits}-bit codebook values")
    return 0


def cmd_export_onnx(args) -> int:
    from golden.formats import load_model
    from golden.formats.onnx import export_onnx
    export_onnx(load_model(args.model), args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_bench_golden(args) -> int:
    from golden.bench import bench_golden
    r = bench_golden(args.model, args.images, args.seconds)
    for k, v in r.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    _write_json(r, args.json)
    return 0


def _density_arg(text: str):
    """'paper' (Table 1), a fraction, or a JSON file {layer: fraction}."""
    from golden.compress import PAPER_DENSITY
    if text == "paper":
        return PAPER_DENSITY
    try:
        return float(text)
    except ValueError:
        pass
    path = Path(text)
    if not path.exists():
        raise ValueError(f"--density {text!r}: not 'paper', a fraction, or an existing JSON file")
    table = json.loads(path.read_text())
    return {str(k): float(v) for k, v in table.items()}


def cmd_compress(args) -> int:
    from golden import compress as C
    from golden import sparse
    from golden.formats import load_model
    from golden.formats.deep_compression import net_bytes
    from golden.formats.packed import packed_bytes, size_report
    model = load_model(args.model)
    pruned = C.prune(model, _density_arg(args.density))
    shared = C.share_weights(pruned, args.bits)
    refit_dir = args.calib or args.finetune
    refit = None
    if refit_dir and any(len(model.layers[n].codebook) > len(lw.codebook)
                         for n, lw in shared.layers.items()):
        # Re-clustered codebooks get the quantiser's least-squares refit to the input
        # model's outputs before any fine-tuning (docs/NUMERICS.md).
        from golden.evaluate import calibration_images
        from golden.quantize import refit_codebooks
        calib, _ = calibration_images(Path(refit_dir), model.network.input, args.calib_count)
        shared = refit_codebooks(shared, model, calib)
        refit = {"images": len(calib), "folder": str(refit_dir)}
    finetune = None
    if args.finetune:
        shared, finetune = _finetune(args, model, shared)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".net":
        if args.bits != 8 or args.huffman:
            raise ValueError("the .net format holds 8-bit codes without Huffman coding; "
                             "write .sqz for other widths or --huffman")
        data = net_bytes(shared)
        per_layer = [{"name": s.name, "stored": len(sparse.encode(shared.layers[s.name]
                                                                  .indices)[0])}
                     for s in shared.network.convs()]
    elif out.suffix == ".sqz":
        data, per_layer = packed_bytes(shared, args.huffman)
    else:
        raise ValueError(f"--out {out}: write .sqz (packed, any width) or .net (8-bit)")
    out.write_bytes(data)
    report = size_report(shared, args.bits, args.huffman, data, per_layer)
    report.update({"model": str(args.model), "out": str(out), "refit": refit,
                   "finetune": finetune})
    print(f"{out}: {report['bytes']:,} bytes ({report['mib']:.3f} MiB), {args.bits}-bit codes"
          f"{', Huffman-coded' if args.huffman else ''}, {report['stored']:,} stored entries, "
          f"density {report['density']:.3f}; dense float32 {report['dense_float32_bytes']:,} "
          f"bytes ({report['dense_float32_bytes'] / report['bytes']:.1f}x)")
    _write_json(report, args.json)
    return 0


def _finetune(args, teacher, student):
    """Distil the float model into the compressed one's shared values (golden/finetune.py),
    every fifth image held out: the values kept are those of the lowest KL divergence on
    them, so the result is never worse on them than the start. Returns (model, report)."""
    from tqdm import tqdm

    from golden.finetune import finetune_codebooks, load_training_images
    images = load_training_images(args.finetune, teacher.network)
    held, train = images[::5], [x for i, x in enumerate(images) if i % 5]
    if not held or not train:
        raise ValueError(f"{args.finetune}: fine-tuning needs at least 2 images (every fifth "
                         "is held out to validate)")
    bar = tqdm(total=args.finetune_steps, desc=f"fine-tune {args.bits}-bit on {len(train)} "
                                               f"images ({len(held)} held out)", unit="step")

    def progress(step, loss):
        bar.update(1)
        bar.set_postfix(kl=f"{loss:.4f}")
    report: dict = {"images": len(train), "validation_images": len(held),
                    "steps": args.finetune_steps, "straight_through": args.straight_through}
    clips = None
    if args.straight_through:
        from golden.evaluate import calibration_images
        from golden.quantize import calibrate
        calib, _ = calibration_images(Path(args.finetune), teacher.network.input,
                                      args.calib_count)
        clips = calibrate(student, calib)
    try:
        tuned = finetune_codebooks(student, teacher, train, steps=args.finetune_steps,
                                   lr=args.finetune_lr, progress=progress, validation=held,
                                   report=report, clips=clips)
    finally:
        bar.close()
    print(f"fine-tune: validation KL {report['start_kl']:.4f} at the start, "
          f"{report['best_kl']:.4f} kept (step {report['best_step']})")
    return tuned, report


def cmd_convert(args) -> int:
    from golden.formats import load_model, save_model
    from golden.formats.deep_compression import write_deep_compression
    from golden.formats.packed import write_packed
    model = load_model(args.input)
    out = Path(args.out)
    if args.to == "net":
        size = write_deep_compression(model, out)
    elif args.to == "sqz":
        write_packed(model, out, args.huffman)
        size = out.stat().st_size
    else:
        save_model(model, out)
        size = out.stat().st_size
    print(f"wrote {out}: {size:,} bytes")
    return 0


def cmd_explore(args) -> int:
    from tqdm import tqdm

    from tools.explore import explore
    bar = tqdm(desc="design points", unit="point")

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()
    try:
        rows = explore(args.config, args.out, args.jobs, progress)
    finally:
        bar.close()
    print((Path(args.out) / "table.md").read_text(), end="")
    print(f"wrote {args.out}/table.csv, table.md, accuracy_vs_size.png, accuracy_vs_cycles.png "
          f"({len(rows)} points)")
    return 0


def cmd_demo(args) -> int:
    status = _digits_demo(args)
    if args.cifar:
        status |= _cifar_demo(args)
    return status


def _cifar_demo(args) -> int:
    """The shipped CIFAR-10 model on the shipped CIFAR-10 test photos, on the same device."""
    from golden import cifar10
    model = cifar10.shipped_model(ROOT / "models")
    photos = ROOT / "models" / "photos"
    print()
    if args.device == "none":
        return cifar10.demo(model, photos)
    from golden.formats import load_model
    from golden.preprocess import load_image
    from golden.quantize import quantize
    from host.board import Board
    m = load_model(model)
    q = quantize(m, [load_image(p, m.network.input) for p, _ in cifar10.demo_photos(photos)], 8)
    with Board(q, args.device) as board:
        print(f"CIFAR-10 model uploaded to the {args.device} board: {board.upload_bytes:,} bytes "
              "on the link")
        cycles = []

        def classify(x):
            r = board.classify(x)
            cycles.append(r.cycles)
            return r.logits

        status = cifar10.demo(model, photos, classify, f"the {args.device} board", q)
        print(f"{cycles[0]:,} device cycles per photo")
        return status


def _digits_demo(args) -> int:
    from golden.digits import demo
    if args.device == "none":
        return demo(args.model, args.image, args.count)
    from host.board import Board
    from golden import numerics as nx
    from golden.digits import calibration_set
    from golden.formats import load_model
    from golden.quantize import quantize
    q = quantize(load_model(args.model), calibration_set(), 8, nx.DEFAULT_VALUE_BITS)
    with Board(q, args.device) as board:
        print(f"model uploaded to the {args.device} board: {board.upload_bytes:,} bytes on the link")
        cycles = []

        def classify(x):
            r = board.classify(x)
            cycles.append(r.cycles)
            return r.logits

        status = demo(args.model, args.image, args.count, classify=classify,
                      where=f"the {args.device} board")
        print(f"{cycles[0]:,} device cycles per image")
        return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sqz", description="SqueezeNet on a fixed-point accelerator: inspect models, "
        "evaluate the float / 8-bit / 6-bit paths, classify images, benchmark the golden model.",
        epilog="Models: the project's .npz, the authors' Deep Compression .net, or a float .onnx. "
               "'sqz COMMAND --help' explains each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_arg(sp, required=True):
        if required:
            sp.add_argument("model", help="model file (.npz, .net, .onnx)")
        else:
            sp.add_argument("--model", default=str(DEFAULT_MODEL),
                            help="model file (default: the shipped digits model)")

    def quant_args(sp, default_bits="8"):
        sp.add_argument("--bits", default=default_bits, choices=["float", "8", "6", "4"],
                        help="weight index width, or 'float' for the float reference "
                             f"(default {default_bits})")
        sp.add_argument("--value-bits", type=int, default=None,
                        help="width of a codebook value (8..16; default from docs/NUMERICS.md)")
        sp.add_argument("--calib", default=None,
                        help="folder of calibration photos (default: see docs/NUMERICS.md)")
        sp.add_argument("--calib-count", type=int, default=CALIBRATION_IMAGES,
                        help="how many calibration photos to use, spread evenly over the "
                             f"folder (default {CALIBRATION_IMAGES})")
        sp.add_argument("--no-refit", dest="refit", action="store_false",
                        help="6/4-bit: re-cluster only, skip the reassignment by output error "
                             "and the least-squares refit of the codebook values "
                             "(docs/NUMERICS.md)")
        sp.add_argument("--calib-rule", default=DEFAULT_RULE, choices=CALIBRATION_RULES,
                        help="how each activation's clip is chosen: 'next', the one that least "
                             "changes the outputs of the layers reading it; 'mse', the least "
                             "8-bit quantisation error of the activation itself; 'percentile', "
                             f"its 99.99th percentile (default {DEFAULT_RULE}; docs/NUMERICS.md)")
        sp.add_argument("--bias-correction", action=argparse.BooleanOptionalAction,
                        default=DEFAULT_BIAS_CORRECTION,
                        help="take each activation's mean quantisation error out of the "
                             "biases of the layers that read it (docs/NUMERICS.md; default "
                             f"{'on' if DEFAULT_BIAS_CORRECTION else 'off'}: it did not help "
                             "on the authors' model)")
        sp.add_argument("--activation-refit", action=argparse.BooleanOptionalAction,
                        default=DEFAULT_ACTIVATION_REFIT,
                        help="refit every layer's codebook values once more, on inputs "
                             "quantised to their calibrated 8 bits (docs/NUMERICS.md; default "
                             f"{'on' if DEFAULT_ACTIVATION_REFIT else 'off'}: it lowers the KL "
                             "but not the top-1 agreement)")

    sp = sub.add_parser("info", help="layers, stored weights, densities and parameter count")
    model_arg(sp)
    sp.add_argument("--json", help="write the report as JSON here")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("eval", help="top-1/top-5 on a folder of labelled photos",
                        description="Classify every <wnid>_<name>.JPEG in DIR (ImageNet "
                        "labels from synsets.txt), or every photo of DIR's class folders "
                        "(DIR/<class>/*.jpg, classes in sorted folder order), and report "
                        "accuracy; integer paths are quantised on --calib photos first.")
    sp.add_argument("dir", help="folder of labelled photos, or of class folders")
    sp.add_argument("--model", required=True, help="model file")
    quant_args(sp)
    sp.add_argument("--synsets", help="synsets.txt (default: beside the photos, else ../shared)")
    sp.add_argument("--reference", metavar="MODEL",
                    help="the float model agreement and KL are measured against (default: "
                         "--model's own float weights; give a compressed model's original to "
                         "count what weight sharing lost)")
    sp.add_argument("--limit", type=int, default=0, help="only the first N photos")
    sp.add_argument("--json", help="write {n, top1, top5, agree_top1_with_float, "
                                   "agree_top5_with_float, mean_kl_to_float, images_per_s} here")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser(
        "infer", help="classify images on a device (or with the golden model in process)",
        description="Print the top-5 classes of each image. With --device the model is "
        "compiled for the device, uploaded once (into the board's SDRAM: weights, codebooks, "
        "biases, the program on chip), and every image runs on the device: sim starts a simulated board "
        "(Verilator, the RTL that would be synthesised), golden an in-process model of the "
        "device speaking the same protocol, serial:PORT a real board (3 Mbaud), socket://HOST:PORT "
        "a simulated board started with 'sqz board-sim'. Without --device the golden model "
        "runs in this process.")
    sp.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    model_arg(sp, required=False)
    quant_args(sp)
    sp.add_argument("--device", default=None,
                    help="sim, golden, serial:PORT or socket://HOST:PORT (default: none, the "
                         "golden model in this process)")
    sp.add_argument("--check", action="store_true",
                    help="compare every output byte of the device with the golden model")
    sp.add_argument("--layers", action="store_true", help="print the cycles of every layer")
    sp.add_argument("--mac-units", type=int, default=64,
                    help="MAC units of the device configuration (default 64; 128: 32 x 4 with "
                         "weight words of values, hw.config.board_config)")
    sp.add_argument("--zero-skipping", action="store_true",
                    help="the device whose engine skips zero weights (its weights are packed "
                         "for it; a board must run that bitstream: make bitstream SKIP=1)")
    sp.add_argument("--labels", help="class names, one per line")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.add_argument("--json", help="write the results here: top5, bit_exact, cycles, "
                                   "memory_wait_cycles, sdram_bytes, nodes and layers (name, "
                                   "cycles, wait, sdram_bytes), seconds, bytes_sent, config")
    sp.set_defaults(func=cmd_infer)

    sp = sub.add_parser("board-sim", help="run a simulated board, serving its link on a socket",
                        description="Build (once) and run the device top level under Verilator; "
                        "its host link is a TCP socket that 'sqz infer --device socket://...' "
                        "or any pyserial program opens like a serial port.")
    sp.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    sp.add_argument("--mac-units", type=int, default=64,
                    help="MAC units (default 64; 128: 32 x 4 with weight words of values)")
    sp.add_argument("--zero-skipping", action="store_true",
                    help="the device whose engine skips zero weights")
    sp.set_defaults(func=cmd_board_sim)

    sp = sub.add_parser("selftest", help="bring-up self-tests of a board: identity, link, SDRAM",
                        description="The first thing to run on a new board: IDENTIFY; a soak "
                        "of ECHO frames of random sizes (wrong replies and retries counted); the "
                        "device's own SDRAM test (walking ones on the data lines, a distinct "
                        "word on every address line, seeded random data), naming the first "
                        "failure: phase, address, expected and read words, the bits that "
                        "differ.")
    sp.add_argument("--device", required=True,
                    help="sim, golden, serial:PORT or socket://HOST:PORT")
    sp.add_argument("--base", type=lambda x: int(x, 0), default=0,
                    help="first SDRAM word to test (default 0)")
    sp.add_argument("--words", type=lambda x: int(x, 0), default=1 << 24,
                    help="SDRAM words to test (default all 16 Mi: 32 MB)")
    sp.add_argument("--seed", type=int, default=1, help="the random pattern's seed")
    sp.add_argument("--frames", type=int, default=200, help="ECHO frames of the link soak")
    sp.add_argument("--mac-units", type=int, default=64)
    sp.add_argument("--json", help="write {ok, identity, link, sdram} here")
    sp.set_defaults(func=cmd_selftest)

    sp = sub.add_parser("board", help="boards on this machine's USB ports",
                        description="'sqz board list': the serial ports of ULX3S boards (their "
                        "FT231X, USB VID:PID 0403:6015), for --device serial:PORT.")
    sp.add_argument("action", choices=["list"])
    sp.add_argument("--json", help="write the ports found as JSON")
    sp.set_defaults(func=cmd_board)

    sp = sub.add_parser("quantize", help="quantise a model to the integer contract (.q.npz)")
    model_arg(sp)
    quant_args(sp)
    sp.add_argument("--out", required=True, help="output file, ending in .q.npz")
    sp.set_defaults(func=cmd_quantize)

    sp = sub.add_parser("export-onnx", help="write the float model as ONNX")
    model_arg(sp)
    sp.add_argument("--out", required=True)
    sp.set_defaults(func=cmd_export_onnx)

    sp = sub.add_parser("bench-golden", help="golden int8 vs onnxruntime fp32, same process",
                        description="Images/s of the Numba golden model (8-bit) and of "
                        "onnxruntime fp32 on the same float weights, batch 1, and their ratio.")
    sp.add_argument("--model", default=str(SHARED / "models/squeezenet-v1.0-deep-compression/"
                                                    "compressed_SqueezeNet.net"))
    sp.add_argument("--images", type=int, default=8, help="distinct photos to cycle through")
    sp.add_argument("--seconds", type=float, default=10.0, help="time per contender")
    sp.add_argument("--json", default="build/bench/golden.json")
    sp.set_defaults(func=cmd_bench_golden)

    sp = sub.add_parser(
        "compress", help="Deep Compression: prune, share weights, optionally Huffman-code",
        description="Magnitude-prune each layer to its target density and share its weights "
        "(2**bits values, entry 0 = 0.0): a trained codebook is re-clustered as the quantiser "
        "does it and, given photos (--calib or --finetune), refit by least squares; float "
        "weights get k-means with linear initialisation. Optionally fine-tune the shared "
        "values by distillation (--finetune). Writes the packed model (.sqz) or the authors' "
        "layout (.net, 8-bit); the report gives the file's size and each layer's stored "
        "entries and bytes.")
    model_arg(sp)
    sp.add_argument("--bits", type=int, choices=[8, 6, 4], required=True,
                    help="codebook index width")
    sp.add_argument("--density", default="paper",
                    help="'paper' (SqueezeNet v1.0's Table 1 densities, by layer name; the "
                         "default), one fraction for every layer, or a JSON file "
                         "{layer: fraction}")
    sp.add_argument("--huffman", action="store_true",
                    help="Huffman-code the codes and the position gaps (.sqz only)")
    sp.add_argument("--finetune", metavar="DIR",
                    help="fine-tune the shared values on the (unlabelled) images in DIR, with "
                         "the input model as teacher (needs the PyTorch extra: pip install "
                         "-e '.[train]'); evaluate on other photos")
    sp.add_argument("--finetune-steps", type=int, default=200,
                    help="optimizer steps of 16 random crops each (default 200)")
    sp.add_argument("--finetune-lr", type=float, default=1e-4, help="Adam learning rate")
    sp.add_argument("--straight-through", action="store_true",
                    help="fine-tune through the integer path's 8-bit activations (each "
                         "calibrated on --calib-count of the --finetune images; the rounding's "
                         "gradient passed straight through)")
    sp.add_argument("--calib", metavar="DIR", default=None,
                    help="photos for the reassignment and least-squares refit of "
                         "re-clustered codebooks (default: the --finetune folder; without "
                         "either, no refit)")
    sp.add_argument("--calib-count", type=int, default=CALIBRATION_IMAGES,
                    help="how many of them the refit uses, as the quantiser does (default "
                         f"{CALIBRATION_IMAGES})")
    sp.add_argument("--out", required=True, help="output file: .sqz or .net")
    sp.add_argument("--json", help="write the size report here")
    sp.set_defaults(func=cmd_compress)

    sp = sub.add_parser("convert", help="rewrite a model in another format",
                        description="Read any model file and write it as the authors' .net, "
                        "the packed .sqz, or the project's .npz. Reading the authors' file and "
                        "writing it back as .net gives the identical bytes.")
    sp.add_argument("input", help="model file (.net, .sqz, .npz, .onnx)")
    sp.add_argument("--to", choices=["net", "sqz", "npz"], required=True)
    sp.add_argument("--huffman", action="store_true", help=".sqz: Huffman-code the entries")
    sp.add_argument("--out", required=True)
    sp.set_defaults(func=cmd_convert)

    sp = sub.add_parser(
        "explore", help="sweep Fire metaparameters: accuracy, size and cycles, Pareto plots",
        description="Train and measure a grid of digits SqueezeNets (SR, pct3x3, bypass; see "
        "configs/explore-digits.json), in parallel, cached in OUT/points/ so a rerun resumes. "
        "Writes OUT/table.csv, OUT/table.md and plots of accuracy against compressed size and "
        "against device cycles with the Pareto front. Needs the PyTorch extra.")
    sp.add_argument("config", help="sweep settings (JSON)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--jobs", type=int, default=None, help="parallel points (default: cores)")
    sp.set_defaults(func=cmd_explore)

    sp = sub.add_parser("demo", help="classify held-out digits (and --image) with the default "
                        "model, then CIFAR-10 photos with the shipped CIFAR-10 model")
    model_arg(sp, required=False)
    sp.add_argument("--image", default=None, help="also classify this image file")
    sp.add_argument("--count", type=int, default=8, help="held-out digits to show")
    sp.add_argument("--device", default="sim",
                    help="where the digits run: sim (default: the simulated board), golden, "
                         "serial:PORT, socket://HOST:PORT, or none (the golden model in process)")
    sp.add_argument("--no-cifar", dest="cifar", action="store_false",
                    help="skip the second part: the shipped CIFAR-10 model (models/cifar10-*.sqz) "
                         "on the shipped CIFAR-10 test photos (models/photos/)")
    sp.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    from golden.torch_net import MissingExtraError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError, MissingExtraError, RuntimeError) as e:
        # RuntimeError: the device's (LinkError, DeviceError) and the board build's
        print(f"sqz {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
