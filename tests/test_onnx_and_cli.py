import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from golden.formats import load_model
from golden.network import digits_net, squeezenet_v1_0, squeezenet_v1_1
from golden.formats.onnx import UnsupportedGraphError, export_onnx, import_onnx
from golden.reference_float import forward_float

from conftest import ROOT, random_float_model


@pytest.mark.parametrize("make", [squeezenet_v1_1, lambda: squeezenet_v1_0("complex"),
                                  lambda: digits_net(bypass="simple")])
def test_round_trip_and_onnxruntime_agree_with_float_reference(make):
    import onnxruntime as ort
    net = make()
    m = random_float_model(net)
    proto = export_onnx(m)
    back = import_onnx(proto, input_spec=net.input)
    assert back.network.parameter_count == net.parameter_count
    x = np.random.default_rng(1).normal(0, 1, (net.input.channels, net.input.height,
                                               net.input.width)).astype(np.float32)
    want = forward_float(net, m.float_weights(), x)
    got = forward_float(back.network, back.float_weights(), x)
    assert np.array_equal(want, got)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, {"data": x[None]})[0][0]
    assert np.allclose(ort_out, want, rtol=1e-4, atol=1e-4)


def _tiny_graph(extra_node=None):
    """conv(1->4, 3x3) -> relu -> [extra] -> global average pool, opset 13."""
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu")]
    last = "r"
    if extra_node is not None:
        nodes.append(extra_node)
        last = extra_node.output[0]
    nodes.append(helper.make_node("GlobalAveragePool", [last], ["y"], name="gap"))
    g = helper.make_graph(nodes, "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])],
                          [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_tiny_graph_imports():
    m = import_onnx(_tiny_graph())
    assert [type(n).__name__ for n in m.network.nodes] == ["Conv", "GlobalAvgPool"]


def test_unsupported_node_is_named():
    sig = helper.make_node("Sigmoid", ["r"], ["s"], name="my_sigmoid")
    with pytest.raises(UnsupportedGraphError, match="my_sigmoid.*Sigmoid is not supported"):
        import_onnx(_tiny_graph(sig))
    avg = helper.make_node("AveragePool", ["r"], ["a"], name="local_avg", kernel_shape=[2, 2])
    with pytest.raises(UnsupportedGraphError, match="local_avg.*whole"):
        import_onnx(_tiny_graph(avg))


def test_damaged_onnx_file(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07garbage")
    with pytest.raises(Exception, match="bad.onnx"):
        load_model(p)


def test_cli_help_explains_every_command(capsys):
    from host.cli import build_parser
    text = build_parser().format_help()
    for cmd in ("info", "eval", "infer", "quantize", "export-onnx", "bench-golden", "demo"):
        assert cmd in text


def test_shipped_digits_model_accuracy():
    from golden.digits import accuracy
    m = load_model(ROOT / "models/digits-squeezenet.npz")
    acc = {b: accuracy(m, b) for b in ("float", "8", "6")}
    assert acc["float"] > 0.85
    assert acc["8"] >= acc["float"] - 0.01
    assert acc["6"] >= acc["float"] - 0.03


def test_demo_and_infer_run(tmp_path, capsys):
    from PIL import Image

    from host.cli import main
    from golden.digits import load_digits_split
    _, _, test_x, test_y = load_digits_split()
    img = tmp_path / "digit.png"
    Image.fromarray(255 - test_x[0, 0]).save(img)       # dark ink on light paper
    assert main(["demo", "--count", "4", "--image", str(img)]) == 0
    out = capsys.readouterr().out
    assert "held-out digits classified correctly" in out and "digit.png: top-3" in out
    js = tmp_path / "infer.json"
    Image.fromarray(test_x[1, 0]).save(tmp_path / "d1.png")
    assert main(["infer", str(tmp_path / "d1.png"), "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert r["results"][0]["top5"][0]["class"] == int(test_y[1])


def test_wrong_image_is_explained(tmp_path, capsys):
    from host.cli import main
    p = tmp_path / "notes.png"
    p.write_text("not an image")
    assert main(["infer", str(p)]) == 2
    assert "not a readable image" in capsys.readouterr().err


def test_board_list_finds_ft231x_ports_only(capsys):
    from types import SimpleNamespace

    from host.cli import main
    from host.transport import find_boards
    ports = [SimpleNamespace(device="/dev/ttyUSB0", description="FT231X USB UART", vid=0x0403,
                             pid=0x6015, serial_number="D00123"),
             SimpleNamespace(device="/dev/ttyUSB1", description="CP2102", vid=0x10C4,
                             pid=0xEA60, serial_number="x"),
             SimpleNamespace(device="/dev/ttyS0", description="n/a", vid=None, pid=None,
                             serial_number=None)]
    assert find_boards(ports) == [{"port": "/dev/ttyUSB0", "description": "FT231X USB UART",
                                   "serial": "D00123"}]
    assert main(["board", "list"]) == 0            # this machine has no board: it says so
    assert "no ULX3S found" in capsys.readouterr().out


def test_infer_on_a_device_reports_memory_waits_bytes_and_the_configuration(tmp_path):
    """sqz infer --device --json: per image the cycles waited for the SDRAM and the bytes
    moved, per op and per node the same, and the configuration the board is built from."""
    from PIL import Image

    from golden.digits import load_digits_split
    from host.cli import main
    from hw.config import board_config
    _, _, test_x, _ = load_digits_split()
    Image.fromarray(test_x[2, 0]).save(tmp_path / "d2.png")
    js = tmp_path / "infer.json"
    assert main(["infer", str(tmp_path / "d2.png"), "--device", "golden", "--check", "--quiet",
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert r["bit_exact"] and r["config"] == board_config().as_dict()
    assert 0 < r["memory_wait_cycles"] < r["cycles"]
    nodes = {n["name"]: n for n in r["nodes"]}
    assert sum(n["sdram_bytes"] for n in nodes.values()) == r["sdram_bytes"] > 0
    assert all(n["compute"] + n["wait"] == n["cycles"] for n in nodes.values())
    assert sum(n["wait"] for n in nodes.values()) <= r["memory_wait_cycles"]
    assert sum(x["wait"] for x in r["layers"]) <= r["memory_wait_cycles"]   # the rest: END


def test_eval_reads_the_class_folder_layout(tmp_path):
    """``DIR/<class>/*.png`` (classes in sorted folder order, as torchvision's ImageFolder):
    scored with no synsets, each photo's label its folder's index, the same top-1 as the golden
    model counted directly; a folder count that is not the model's classes is refused."""
    from PIL import Image

    from golden.digits import load_digits_split
    from golden.engine import Golden, top_k
    from golden.evaluate import evaluate
    from golden.preprocess import load_image
    from golden.quantize import quantize
    model = load_model(ROOT / "models/digits-squeezenet.npz")
    _, _, test_x, test_y = load_digits_split()
    names = [f"class{d}" for d in range(10)]       # sorted order = the digit
    for d in range(10):                            # three photos of each digit
        folder = tmp_path / names[d]
        folder.mkdir()
        for i in np.flatnonzero(test_y == d)[:3]:
            Image.fromarray(test_x[i][0]).save(folder / f"{i:04d}.png")
    report = evaluate(model, tmp_path, "8", calib_count=5, progress=False)
    assert report["n"] == 30
    files = sorted(tmp_path.glob("*/*.png"))
    calib = [load_image(files[int(i * len(files) / 5)], model.network.input) for i in range(5)]
    golden = Golden(quantize(model, calib, 8))
    right = sum(top_k(golden(load_image(p, model.network.input)))[0] == names.index(p.parent.name)
                for p in files)
    assert report["top1"] == right / 30
    (tmp_path / "zz").mkdir()
    (tmp_path / "zz" / "a.png").write_bytes(files[0].read_bytes())
    with pytest.raises(ValueError, match="11 class folders for a 10-class model"):
        evaluate(model, tmp_path, "float", progress=False)


def test_eval_against_a_float_reference(tmp_path):
    """A compressed model scored against the float model it came from: its agreement counts
    what weight sharing lost, which its own float weights hide; another network is refused."""
    from PIL import Image

    from golden import compress as C
    from golden.digits import load_digits_split
    from golden.evaluate import evaluate
    from golden.network import digits_net
    model = load_model(ROOT / "models/digits-squeezenet.npz")
    small = C.share_weights(C.prune(model, 0.3), 4)
    _, _, test_x, test_y = load_digits_split()
    for d in range(10):
        folder = tmp_path / f"class{d}"
        folder.mkdir()
        for i in np.flatnonzero(test_y == d)[:4]:
            Image.fromarray(test_x[i][0]).save(folder / f"{i:04d}.png")
    own = evaluate(small, tmp_path, "8", calib_count=5, progress=False)
    against = evaluate(small, tmp_path, "8", calib_count=5, progress=False, reference=model)
    assert own["top1"] == against["top1"] and "float_reference" in against
    assert against["mean_kl_to_float"] > own["mean_kl_to_float"]
    with pytest.raises(ValueError, match="integer path"):
        evaluate(small, tmp_path, "float", progress=False, reference=model)
    from golden.model import Model
    other = digits_net(width=16)                  # another network: half the channels
    rng = np.random.default_rng(0)
    wrong = Model.from_float(other, {c.name: (rng.normal(0, 0.1, c.weight_shape).astype(np.float32),
                                              np.zeros(c.out_channels, np.float32))
                                     for c in other.convs()})
    with pytest.raises(ValueError, match="not the network"):
        evaluate(small, tmp_path, "8", calib_count=5, progress=False, reference=wrong)
