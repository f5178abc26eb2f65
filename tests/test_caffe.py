"""The Caffe reader (golden/formats/caffe.py) on the seeds' network descriptions."""

import pytest

from golden.formats.caffe import CaffeFormatError, parse_prototxt, read_caffe_graph
from golden.network import squeezenet_v1_0

from conftest import SHARED, shared_file

SQNXT = SHARED / "models" / "squeezenext"

# Every parameter each file declares: convolution and InnerProduct weights and biases, Scale's
# gamma and beta (BatchNorm's statistics are folded, not counted). fc1000 has bias_term: false
# in all five files, so these are 1,000 below counts that give it a bias.
PARAMETERS = {"1.0-SqNxt-23": 717_280, "1.0-SqNxt-23v5": 930_016, "1.0-G-SqNxt-23": 543_072,
              "2.0-SqNxt-23": 2_361_728, "2.0-SqNxt-23v5": 3_222_912}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_squeezenext_descriptions_read_with_their_parameters_and_structure(name):
    g = read_caffe_graph(shared_file(SQNXT / name / "train_val.prototxt"))
    assert g.input_shape == (3, 227, 227)
    assert g.parameter_count == PARAMETERS[name]
    convs = g.of_type("Convolution")
    assert all(not c.bias for c in convs)                 # BatchNorm + Scale follow each
    assert len(g.of_type("Scale")) == len(g.of_type("BatchNorm")) == len(convs)
    assert len(g.of_type("Eltwise")) == 21                # 21 SqueezeNext blocks
    first = convs[0]
    assert first.kernel == ((5, 5) if name.endswith("v5") else (7, 7)) and first.stride == (2, 2)
    # The separable pair: 3x1 with its padding on the rows, 1x3 on the columns.
    assert {(c.kernel, c.pad) for c in convs} >= {((3, 1), (1, 0)), ((1, 3), (0, 1))}
    assert any(c.group > 1 for c in convs) == ("G-" in name)
    assert g.layers[-1].type == "InnerProduct" and g.layers[-1].out_shape == (1000, 1, 1)
    pool = g.of_type("Pooling")[-1]
    assert pool.pool == "AVE" and pool.out_shape[1:] == (1, 1)


def test_the_macs_of_squeezenext_and_squeezenet_at_227():
    macs = {n: read_caffe_graph(shared_file(SQNXT / n / "train_val.prototxt")).macs
            for n in ("1.0-SqNxt-23", "1.0-SqNxt-23v5")}
    assert round(macs["1.0-SqNxt-23"] / 1e6) == 278
    assert round(macs["1.0-SqNxt-23v5"] / 1e6) == 225
    deploy = shared_file(SHARED / "models" / "squeezenet-v1.0-deep-compression"
                         / "SqueezeNet_deploy.prototxt")
    g = read_caffe_graph(deploy, (3, 227, 227))
    assert g.parameter_count == squeezenet_v1_0().parameter_count == 1_248_424
    assert round(g.macs / 1e6) == 861


def test_bad_descriptions_are_refused_by_name():
    with pytest.raises(CaffeFormatError, match="a '}' is missing"):
        parse_prototxt('layer { name: "a" type: "ReLU"')
    with pytest.raises(CaffeFormatError, match="closes nothing"):
        parse_prototxt("}")
    text = ('input: "data" layer { name: "data" type: "Input" top: "data" input_param { shape '
            '{ dim: 1 dim: 3 dim: 8 dim: 8 } } } layer { name: "lrn" type: "LRN" '
            'bottom: "data" top: "lrn" }')
    with pytest.raises(CaffeFormatError, match="layer lrn: type LRN is not one"):
        read_caffe_graph(text)
    grouped = text.replace('name: "lrn" type: "LRN"', 'name: "c" type: "Convolution" '
                           'convolution_param { num_output: 4 kernel_h: 1 kernel_w: 3 '
                           'pad_w: 1 group: 2 }')
    with pytest.raises(CaffeFormatError, match="layer c: 3 input and 4 output channels do not "
                                               "split into 2 groups"):
        read_caffe_graph(grouped)
    conv = read_caffe_graph(grouped.replace("dim: 3", "dim: 6")).layers[0]
    # 4 outputs of 6 / 2 inputs each, a 1x3 kernel, and a bias (bias_term defaults to true)
    assert (conv.params, conv.out_shape, conv.macs) == (4 * 3 * 3 + 4, (4, 8, 8), 4 * 9 * 64)
