"""Golden int8 against onnxruntime fp32 on the same float weights, in one process, batch 1."""

from __future__ import annotations

import time
from pathlib import Path


def _rate(fn, inputs, seconds: float) -> float:
    fn(inputs[0])                                   # warm: JIT cache, BLAS threads, ORT arena
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(inputs[n % len(inputs)])
        n += 1
    return n / (time.perf_counter() - start)


def bench_golden(model_path: str | Path, images: int = 8, seconds: float = 10.0) -> dict:
    import onnxruntime as ort

    from .engine import Golden
    from .evaluate import calibration_images
    from .formats import load_model
    from .formats.onnx import export_onnx
    from .preprocess import float_input
    from .quantize import quantize

    model = load_model(model_path)
    spec = model.network.input
    sample = Path(__file__).resolve().parents[2] / "shared" / "imagenet-sample"
    pixels, _ = calibration_images(sample, spec, images)
    t = time.perf_counter()
    from . import kernels
    kernels.warm_up()
    first_call = time.perf_counter() - t
    golden = Golden(quantize(model, pixels, 8))
    opts = ort.SessionOptions()
    sess = ort.InferenceSession(export_onnx(model).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    floats = [float_input(p, spec)[None] for p in pixels]
    ort_rate = _rate(lambda x: sess.run(None, {"data": x}), floats, seconds)
    golden_rate = _rate(golden, pixels, seconds)
    return {"model": str(model_path), "batch": 1, "images": len(pixels),
            "numba_int8_images_per_s": golden_rate,
            "onnxruntime_fp32_images_per_s": ort_rate,
            "ratio": golden_rate / ort_rate,
            "golden_first_call_s": first_call,
            "onnxruntime_threads": opts.intra_op_num_threads or "default"}
