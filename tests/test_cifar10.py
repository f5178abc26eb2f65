"""The CIFAR-10 study: its networks, the batched golden arithmetic that scores it, the shipped
model (sqz eval and infer on 32x32 photos; on the simulated board in test_device.py), and the
photos' split."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from golden.batched import BatchedGolden
from golden.cifar10 import CLASSES, demo_photos, shipped_model
from golden.engine import Golden
from golden.network import (CIFAR10_VARIANTS, InputSpec, cifar10_squeezenet, digits_net,
                            squeezenet_v1_1, squeezenext)
from golden.quantize import quantize

from conftest import ROOT, random_float_model

PHOTOS = ROOT / "models" / "photos"


def test_the_variants_have_the_studys_parameters_and_sizes():
    """baseline = v1.0 with 10 classes, e2 and e4 a 2x2 conv1 (12,960 fewer), e3 without fire3
    (12,432 fewer than e2; the study's 715,169 is 7 more, see docs/reports/cifar10.md)."""
    p = {v: cifar10_squeezenet(v).parameter_count for v in CIFAR10_VARIANTS}
    assert p == {"baseline": 740_554, "e1": 740_554, "e2": 727_594, "e3": 715_162,
                 "e4": 727_594}
    shapes = {v: cifar10_squeezenet(v).shapes() for v in CIFAR10_VARIANTS}
    assert shapes["e4"]["conv1"] == (96, 33, 33)                 # 2x2/1 with padding 1
    assert shapes["e4"]["pool4"] == (256, 17, 17) and shapes["e4"]["pool8"][1:] == (9, 9)
    assert "fire3" not in shapes["e3"] and shapes["e3"]["fire4"][0] == 256
    assert shapes["baseline"]["pool1"][1:] == (6, 6) and shapes["e1"]["pool1"][1:] == (7, 7)
    with pytest.raises(ValueError, match="unknown CIFAR-10 variant 'e9'"):
        cifar10_squeezenet("e9")


@pytest.mark.parametrize("make", [
    lambda: cifar10_squeezenet("e4"), lambda: digits_net(bypass="complex"),
    lambda: squeezenext(0.5, "23v5", grouped=True, classes=10,
                        input_spec=InputSpec(3, 48, 48, "RGB", (0.0,), (255.0,)))],
    ids=["cifar10-e4", "digits-complex-bypass", "squeezenext-G-48px"])
@pytest.mark.parametrize("bits", [8, 6])
def test_batched_golden_equals_golden_on_every_logit(make, bits):
    """The batch path's logits equal the golden model's, photo for photo: pooling 2x2 and
    3x3, both bypasses (the complex one's accumulator), 3x1 / 1x3 and grouped layers."""
    net = make()
    rng = np.random.default_rng(bits)
    shape = (net.input.channels, net.input.height, net.input.width)
    x = rng.integers(0, 256, (6, *shape), dtype=np.uint8)
    q = quantize(random_float_model(net, 2), list(x[:2]), bits)
    got = BatchedGolden(q)(x)
    g = Golden(q)
    for i in range(len(x)):
        np.testing.assert_array_equal(got[i], g(x[i]), err_msg=f"photo {i}")
    BatchedGolden(q).check(x[:2])
    with pytest.raises(ValueError, match="takes a batch of uint8 pixels"):
        BatchedGolden(q)(x[0])


def test_batched_golden_names_a_difference():
    net = squeezenet_v1_1(classes=10)
    q = quantize(random_float_model(net, 4), [np.zeros((3, 224, 224), np.float32)], 8)
    bg = BatchedGolden(q)
    bg.params["conv_final"][2][3] += 1000               # a wrong bias on class 3
    with pytest.raises(AssertionError, match="photo 0, class 3"):
        bg.check(np.full((1, 3, 224, 224), 100, np.uint8))


def test_the_shipped_model_and_photos():
    model = shipped_model(ROOT / "models")
    assert model.name.startswith("cifar10-") and model.suffix == ".sqz"
    assert len(list((ROOT / "models").glob("cifar10*"))) == 1
    photos = demo_photos(PHOTOS)
    assert len(photos) == 12 and {label for _, label in photos} == set(range(10))
    assert sum(p.stat().st_size for p, _ in photos) < 20_000


def test_sqz_eval_scores_a_class_folder_and_infer_takes_32x32_photos(tmp_path):
    """``sqz eval DIR --model models/cifar10-*.sqz --bits 8`` on a DIR/<class>/*.jpg folder
    with nothing else given; ``sqz infer`` names the CIFAR-10 classes."""
    for p, label in demo_photos(PHOTOS):
        (tmp_path / "photos" / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, tmp_path / "photos" / CLASSES[label] / p.name)
    model = shipped_model(ROOT / "models")
    sqz = [sys.executable, "-m", "host.cli"]
    out = subprocess.run(sqz + ["eval", str(tmp_path / "photos"), "--model", str(model),
                                "--bits", "8", "--quiet", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["n"] == 12 and "12 images, bits 8" in out.stdout
    assert r["top1"] >= 0.5                  # the shipped model knows these classes
    # the fidelity figures beside them: top-1 and top-5 agreement with float, the mean KL
    assert 0.5 <= r["agree_top1_with_float"] <= 1 and 0.5 <= r["agree_top5_with_float"] <= 1
    assert 0 < r["mean_kl_to_float"] < 0.5
    assert "top-5" in out.stdout and "mean KL" in out.stdout
    cat = next(p for p, label in demo_photos(PHOTOS) if CLASSES[label] == "ship")
    out = subprocess.run(sqz + ["infer", str(cat), "--model", str(model), "--calib",
                                str(PHOTOS)], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert "1. ship" in out.stdout
