"""How close each integer path is to float, beside onnxruntime's own static int8 quantisation.

The same photos go through the float reference, the project's integer paths (golden model,
calibrated on the same photos as the peer) and onnxruntime's QDQ models (per-tensor and
per-channel weights, MinMax calibration on the same photos). Every row gets top-1, top-5, its
agreement with float (top-1, top-5 overlap) and the mean KL divergence of its logits from
float's: the figures of golden/evaluate.py. Writes build/fidelity/report.{json,md}.

    python -m tools.fidelity [--photos DIR] [--calib-count N] [--limit N] [--render]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models/squeezenet-v1.0-deep-compression/compressed_SqueezeNet.net"
OUT = ROOT / "build" / "fidelity"


def onnx_graph(net, weights: dict):
    """The float network as an ONNX model (opset 17), Caffe semantics: convolutions with their
    ReLUs, ceil-mode max pooling, the Fire concat, bypass adds and the global average pool.
    Input ``input`` (N, C, H, W) float32, already normalised; output ``logits`` (N, classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from golden.network import Bypass, Conv, Fire, GlobalAvgPool, MaxPool
    nodes, inits = [], []

    def conv(spec, x):
        w, b = weights[spec.name]
        key = spec.name.replace("/", "_")
        inits.extend([numpy_helper.from_array(np.asarray(w, np.float32), f"{key}_w"),
                      numpy_helper.from_array(np.asarray(b, np.float32), f"{key}_b")])
        y = f"{key}_pre" if spec.relu else key
        nodes.append(helper.make_node(
            "Conv", [x, f"{key}_w", f"{key}_b"], [y], kernel_shape=[spec.kh, spec.kw],
            strides=[spec.stride, spec.stride], pads=[spec.ph, spec.pw, spec.ph, spec.pw],
            group=spec.groups))
        if spec.relu:
            nodes.append(helper.make_node("Relu", [y], [key]))
        return key

    t = {"input": "input"}
    for i, node in enumerate(net.nodes):
        src = [t[s] for s in net.node_inputs(i)]
        name = node.name.replace("/", "_")
        if isinstance(node, Conv):
            t[node.name] = conv(node.convs()[0], src[0])
        elif isinstance(node, Fire):
            sq, e1, e3 = node.convs()
            s = conv(sq, src[0])
            nodes.append(helper.make_node("Concat", [conv(e1, s), conv(e3, s)], [name], axis=1))
            t[node.name] = name
        elif isinstance(node, MaxPool):
            nodes.append(helper.make_node("MaxPool", src[:1], [name], ceil_mode=1,
                                          kernel_shape=[node.kernel, node.kernel],
                                          strides=[node.stride, node.stride]))
            t[node.name] = name
        elif isinstance(node, Bypass):
            other = conv(node.convs()[0], src[1]) if node.complex else src[1]
            nodes.append(helper.make_node("Add", [src[0], other], [f"{name}_sum"]))
            nodes.append(helper.make_node("Relu", [f"{name}_sum"], [name]))
            t[node.name] = name
        elif isinstance(node, GlobalAvgPool):
            nodes.append(helper.make_node("GlobalAveragePool", src[:1], [f"{name}_4d"]))
            nodes.append(helper.make_node("Flatten", [f"{name}_4d"], [name], axis=1))
            t[node.name] = name
    nodes.append(helper.make_node("Identity", [t[net.output_node]], ["logits"]))
    spec = net.input
    graph = helper.make_graph(
        nodes, net.name, [helper.make_tensor_value_info(
            "input", TensorProto.FLOAT, ["N", spec.channels, spec.height, spec.width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", net.classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def onnx_int8(float_path: Path, out: Path, calib: list[np.ndarray], per_channel: bool) -> Path:
    """onnxruntime's static quantisation of ``float_path``: QDQ, uint8 activations, int8
    weights, MinMax calibration on ``calib`` (normalised float inputs, C x H x W)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": x[None].astype(np.float32)} for x in calib])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return out


def scores(logits: np.ndarray, floats: np.ndarray, labels: np.ndarray) -> dict:
    """golden/evaluate.py's figures of one path's logits against float's, photo by photo."""
    from golden.engine import top_k
    from golden.evaluate import kl_divergence
    top1 = top5 = agree = 0
    overlap = kl = 0.0
    for z, f, label in zip(logits, floats, labels):
        order, ref = top_k(z), top_k(f)
        top1 += int(order[0] == label)
        top5 += int(label in order[:5])
        agree += int(order[0] == ref[0])
        overlap += len(set(order.tolist()) & set(ref.tolist())) / len(ref)
        kl += kl_divergence(f, z)
    n = len(labels)
    return {"n": n, "top1": top1 / n, "top5": top5 / n, "agree_top1_with_float": agree / n,
            "agree_top5_with_float": overlap / n, "mean_kl_to_float": kl / n}


def run(photos: Path, model_path: Path, calib_count: int, limit: int, bits: list[int],
        progress: bool = True) -> dict:
    import onnxruntime as ort
    from tqdm import tqdm

    from golden import numerics as nx
    from golden.engine import Golden
    from golden.evaluate import calibration_images, default_synsets
    from golden.formats import load_model
    from golden.preprocess import float_input, list_labelled_images, load_image, read_synsets
    from golden.quantize import quantize
    from golden.reference_float import forward_float_all

    model = load_model(model_path)
    net = model.network
    weights = model.float_weights()
    wnids = [w for w, _ in read_synsets(default_synsets(photos))]
    images = list_labelled_images(photos, wnids)
    if limit:
        images = images[:limit]
    labels = np.array([label for _, label in images])
    calib, calib_names = calibration_images(photos, net.input, calib_count)
    OUT.mkdir(parents=True, exist_ok=True)

    rows: dict[str, dict] = {}
    quantised = {}
    for b in bits:
        t = time.perf_counter()
        quantised[f"ours {b}-bit"] = (Golden(quantize(model, calib, b, nx.DEFAULT_VALUE_BITS)),
                                      time.perf_counter() - t)
    if 8 in bits:          # the rule calibration had before "next" and "mse", for comparison
        t = time.perf_counter()
        quantised["ours 8-bit, percentile clips"] = (
            Golden(quantize(model, calib, 8, nx.DEFAULT_VALUE_BITS, rule="percentile")),
            time.perf_counter() - t)
    float_path = OUT / "float.onnx"
    import onnx
    onnx.save(onnx_graph(net, weights), str(float_path))
    normalised = [float_input(x, net.input) for x in calib]
    sessions = {"float (onnxruntime)": ort.InferenceSession(str(float_path))}
    for per_channel in (False, True):
        label = f"onnxruntime int8 {'per-channel' if per_channel else 'per-tensor'}"
        t = time.perf_counter()
        path = onnx_int8(float_path, OUT / f"int8-{'channel' if per_channel else 'tensor'}.onnx",
                         normalised, per_channel)
        sessions[label] = ort.InferenceSession(str(path))
        quantised[label] = (None, time.perf_counter() - t)
    names = ["float", *[n for n in quantised if n.startswith("ours")],
             *[n for n in sessions]]
    logits = {n: [] for n in names}
    for path, _ in tqdm(images, desc="fidelity", unit="img", disable=not progress):
        pixels = load_image(path, net.input)
        x = float_input(pixels, net.input)
        logits["float"].append(forward_float_all(net, weights, [x])[0][net.output_node].ravel())
        for n, (golden, _) in quantised.items():
            if golden is not None:
                logits[n].append(golden(pixels).astype(np.float64) * golden.q.logits_scale())
        for n, sess in sessions.items():
            logits[n].append(sess.run(["logits"], {"input": x[None]})[0][0])
    floats = np.stack(logits["float"])
    # The photos calibration did not see: the same figures without them.
    unseen = np.array([Path(path).name not in set(calib_names) for path, _ in images])
    held = {}
    for n in names:
        z = np.stack(logits[n])
        rows[n] = scores(z, floats, labels)
        held[n] = scores(z[unseen], floats[unseen], labels[unseen])
        if n in quantised:
            rows[n]["quantise_s"] = round(quantised[n][1], 1)
    return {"model": str(model_path), "photos": os.path.relpath(photos, ROOT), "n": len(images),
            "calibration": {"count": len(calib), "images": calib_names}, "rows": rows,
            "rows_without_calibration_photos": held, "compress": compress_rows()}


def compress_rows(folder: Path = ROOT / "build" / "compress") -> dict:
    """The held-out half's figures of make compress-imagenet, where it has run: the float
    model, the authors' 8-bit, and the re-clustered (refit) and fine-tuned 6/4-bit files."""
    files = {"float": "eval-float.json", "authors' model, 8-bit": "eval-authors-8.json",
             "authors' model, 6-bit (the quantiser: re-clustered, refit, calibrated)":
                 "eval-authors-6.json",
             "authors' model, 4-bit (the quantiser)": "eval-authors-4.json",
             "compressed 6-bit (re-clustered, refit)": "eval-6.json",
             "compressed 6-bit, fine-tuned": "eval-6-ft.json",
             "compressed 6-bit, fine-tuned through the 8-bit activations":
                 "eval-6-ft-ste.json",
             "compressed 4-bit (re-clustered, refit)": "eval-4.json",
             "compressed 4-bit, fine-tuned": "eval-4-ft.json",
             "compressed 4-bit, fine-tuned through the 8-bit activations":
                 "eval-4-ft-ste.json"}
    out = {}
    for name, f in files.items():
        if (folder / f).exists():
            r = json.loads((folder / f).read_text())
            out[name] = {k: r.get(k) for k in ("n", "top1", "top5", "agree_top1_with_float",
                                                 "agree_top5_with_float", "mean_kl_to_float")}
    return out


def markdown(report: dict) -> str:
    lines = [f"# Fidelity to float: {Path(report['model']).name}", "",
             f"{report['n']} photos of `{report['photos']}`; every integer path calibrated on "
             f"the same {report['calibration']['count']} of them (spread evenly over the "
             "sorted folder). Agreement and KL are against this project's float reference "
             "(golden/reference_float), photo by photo.", "",
             *table(report["rows"]), "",
             f"The same without the {report['calibration']['count']} calibration photos:", "",
             *table(report["rows_without_calibration_photos"])]
    if report.get("compress"):
        n = next(iter(report["compress"].values()))["n"]
        lines += ["", "## Weight sharing and fine-tuning (make compress-imagenet)", "",
                  f"The held-out half ({n} photos). The compressed files are refit and "
                  "fine-tuned on the other half, and every integer path is calibrated on it; "
                  "agreement and KL are against the authors' float model.", "",
                  *table(report["compress"])]
    return "\n".join(lines) + "\n"


def table(rows: dict) -> list[str]:
    lines = ["| path | top-1 | top-5 | agree top-1 | agree top-5 | mean KL (nats) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        agree = (f"{100 * r['agree_top1_with_float']:.1f}% | "
                 f"{100 * r['agree_top5_with_float']:.1f}% | {r['mean_kl_to_float']:.4f}"
                 if r.get("agree_top1_with_float") is not None else "| |")
        lines.append(f"| {name} | {100 * r['top1']:.1f}% | {100 * r['top5']:.1f}% | {agree} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=SHARED / "imagenet-sample",
                    help="folder of <wnid>_<name> photos (default: the shared 500)")
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--calib-count", type=int, default=50,
                    help="calibration photos for every integer path (default 50)")
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4],
                    help="the project's index widths to score (default 8 6 4)")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N photos")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite report.md from report.json, with make "
                         "compress-imagenet's current figures")
    args = ap.parse_args(argv)
    if args.render:
        report = json.loads((OUT / "report.json").read_text())
        report["compress"] = compress_rows()
    else:
        report = run(args.photos, args.model, args.calib_count, args.limit, args.bits,
                     progress=not args.quiet)
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    (OUT / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
