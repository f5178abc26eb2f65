"""The design-space sweep (a two-point run, as CI can afford) and the cycle model it uses,
checked against the Fire unit's RTL on a sweep point's own Fire module."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


def test_two_point_sweep_writes_table_plots_and_resumes(tmp_path):
    pytest.importorskip("torch", reason="the PyTorch extra (pip install -e '.[train]')")
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "host.cli", "explore",
           str(ROOT / "configs/explore-two-points.json"), "--out", str(out), "--jobs", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [float(r["sr"]) for r in rows] == [0.125, 1.0]
    small, large = rows
    assert int(small["parameters"]) < int(large["parameters"])
    assert int(small["bytes"]) < int(large["bytes"])
    assert int(small["cycles"]) < int(large["cycles"])
    # Each row's accuracies are the kept model's, measured again here.
    from golden import compress as C
    from golden.digits import accuracy
    from golden.formats import load_model
    for point in (out / "points").glob("*.json"):
        r = json.loads(point.read_text())
        model = load_model(point.with_suffix(".npz"))
        assert r["float_accuracy"] == pytest.approx(accuracy(model, "float"))
        assert r["int_accuracy"] == pytest.approx(
            accuracy(C.share_weights(model, r["bits"]), str(r["bits"])))
        row = next(x for x in rows if float(x["sr"]) == r["sr"])
        assert float(row["int_accuracy"]) == pytest.approx(r["int_accuracy"])
    for name in ("accuracy_vs_size.png", "accuracy_vs_cycles.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = sorted((out / "points").glob("*.json"))
    assert len(points) == 2
    stamps = [p.stat().st_mtime_ns for p in points]
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0
    assert [p.stat().st_mtime_ns for p in points] == stamps      # cached: nothing retrained


def test_pareto_front():
    from tools.explore import _pareto
    rows = [{"int_accuracy": 0.9, "bytes": 100}, {"int_accuracy": 0.8, "bytes": 50},
            {"int_accuracy": 0.7, "bytes": 80}, {"int_accuracy": 0.9, "bytes": 120}]
    assert _pareto(rows, "bytes") == [True, True, False, False]


def test_bad_config_is_named(tmp_path):
    from tools.explore import load_config
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"sr": [0.1], "pcx": [0.5]}))
    with pytest.raises(ValueError, match="unknown settings"):
        load_config(path)
    path.write_text(json.dumps({"pct3x3": [1.0]}))
    with pytest.raises(ValueError, match="pct3x3 1.0 is outside"):
        load_config(path)


def test_cycle_model_matches_the_fire_unit_on_a_sweep_point():
    """The sweep's cycles come from hw.timing.network_cycles; run one of its Fire modules
    (random weights: cycles do not depend on them) on the RTL and compare."""
    from golden.network import Fire, digits_net
    from hw.timing import network_cycles
    from hw.config import AcceleratorConfig
    from hw_harness import run_fire
    from sim.cases import random_conv
    cfg = AcceleratorConfig(mac_units=16, fm_depth=2048, squeeze_depth=1024, weight_depth=512,
                            bias_depth=16)
    net = digits_net(sr=0.25, pct3x3=0.5, width=16)
    shapes = net.shapes()
    rng = np.random.default_rng(0)
    i, fire = next((i, n) for i, n in enumerate(net.nodes) if isinstance(n, Fire))
    c, h, w = shapes[net.node_inputs(i)[0]]
    layers = tuple(random_conv(rng, s.in_channels, s.out_channels, s.kernel, s.stride, s.pad,
                               cfg.value_bits, 8) for s in fire.convs())
    x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    got, _ = run_fire(cfg, layers, x)
    assert got["cycles"] == network_cycles(net, cfg)[fire.name]
