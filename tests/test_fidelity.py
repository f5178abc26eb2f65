"""tools/fidelity: the float network as ONNX computes what golden/reference_float computes,
onnxruntime's int8 models of it run, and the figures follow golden/evaluate.py's."""

from pathlib import Path

import numpy as np
import pytest

from golden.formats import load_model
from golden.preprocess import float_input
from golden.reference_float import forward_float

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["digits-squeezenet.npz", "cifar10-e3.sqz"])
def test_onnx_graph_equals_the_float_reference(name):
    import onnxruntime as ort

    from tools.fidelity import onnx_graph
    model = load_model(ROOT / "models" / name)
    net, weights = model.network, model.float_weights()
    sess = ort.InferenceSession(onnx_graph(net, weights).SerializeToString())
    rng = np.random.default_rng(1)
    spec = net.input
    for _ in range(2):
        pixels = rng.integers(0, 256, (spec.channels, spec.height, spec.width)).astype(np.uint8)
        x = float_input(pixels, spec)
        want = forward_float(net, weights, x)
        got = sess.run(["logits"], {"input": x[None]})[0][0]
        assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_onnxruntime_int8_and_scores(tmp_path):
    import onnx
    import onnxruntime as ort

    from golden.digits import calibration_set, load_digits_split
    from tools.fidelity import onnx_graph, onnx_int8, scores
    model = load_model(ROOT / "models/digits-squeezenet.npz")
    net, weights = model.network, model.float_weights()
    onnx.save(onnx_graph(net, weights), str(tmp_path / "float.onnx"))
    calib = [float_input(x, net.input) for x in calibration_set(8)]
    _, _, test_x, test_y = load_digits_split()
    floats = np.stack([forward_float(net, weights, float_input(x, net.input))
                       for x in test_x[:40]])
    for per_channel in (False, True):
        path = onnx_int8(tmp_path / "float.onnx", tmp_path / f"q{per_channel}.onnx", calib,
                         per_channel)
        graph = onnx.load(str(path))
        assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
        sess = ort.InferenceSession(str(path))
        got = np.stack([sess.run(["logits"], {"input": float_input(x, net.input)[None]})[0][0]
                        for x in test_x[:40]])
        r = scores(got, floats, test_y[:40])
        assert r["n"] == 40 and 0.8 <= r["agree_top1_with_float"] <= 1.0
        assert 0 < r["mean_kl_to_float"] < 0.5 and r["top1"] > 0.7
    same = scores(floats, floats, test_y[:40])
    assert same["agree_top1_with_float"] == 1.0 and same["agree_top5_with_float"] == 1.0
    assert abs(same["mean_kl_to_float"]) < 1e-12
