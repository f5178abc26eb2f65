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


FILES = {"1.0-SqNxt-23": (1.0, "23", False), "1.0-SqNxt-23v5": (1.0, "23v5", False),
         "1.0-G-SqNxt-23": (1.0, "23", True), "2.0-SqNxt-23": (2.0, "23", False),
         "2.0-SqNxt-23v5": (2.0, "23v5", False)}


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_squeezenext_descriptions_are_the_authors_files(name):
    """golden.network.squeezenext, convolution by convolution and add by add, against the
    authors' train_val.prototxt: channels, kernel rows x columns, stride, padding, groups, and
    which two tensors each Eltwise adds. Parameters: the file counts BatchNorm's Scale (gamma
    and beta) and no fc1000 bias; the description folds each BatchNorm into one bias per
    output channel and gives the classifier a bias."""
    from golden.network import Bypass, squeezenext
    g = read_caffe_graph(shared_file(SQNXT / name / "train_val.prototxt"))
    net = squeezenext(*FILES[name][:2], grouped=FILES[name][2])
    caffe = g.of_type("Convolution")
    ours = net.convs()[:-1]                                 # the classifier is fc1000
    assert [(c.in_shape[0], c.out_shape[0], c.kernel, c.stride[0], c.pad, c.group)
            for c in caffe] == [(s.in_channels, s.out_channels, (s.kh, s.kw), s.stride,
                                 (s.ph, s.pw), s.groups) for s in ours]
    # Each add's operands, as positions in the list of convolutions (an Eltwise bottom is a
    # convolution's top or an earlier Eltwise's).
    def positions(tops, names):
        return [tops.index(n) if n in tops else n for n in names]
    caffe_tops = [c.top for c in caffe] + [e.top for e in g.of_type("Eltwise")]
    our_tops = [s.name for s in ours] + [b.name for b in net.nodes if isinstance(b, Bypass)]
    caffe_adds = [sorted(positions(caffe_tops, e.bottoms)) for e in g.of_type("Eltwise")]
    our_adds = [sorted(positions(our_tops, b.inputs)) for b in net.nodes if isinstance(b, Bypass)]
    assert caffe_adds == our_adds
    shapes = net.shapes()
    assert shapes["conv_final"] == g.of_type("Convolution")[-1].out_shape == (128, 7, 7)
    bn_channels = sum(c.out_shape[0] for c in caffe)
    fc = g.layers[-1].params
    assert net.parameter_count == (g.parameter_count - 2 * bn_channels + bn_channels
                                   + fc + 1000 - fc)
