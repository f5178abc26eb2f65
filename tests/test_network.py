import dataclasses
import pytest

from golden.network import (Bypass, Conv, Fire, GlobalAvgPool, MaxPool, Network, digits_net,
                            pool_output_size, squeezenet_from_metaparameters, squeezenet_v1_0,
                            squeezenet_v1_1)


def test_v1_0_matches_paper_table_1():
    net = squeezenet_v1_0()
    assert net.parameter_count == 1_248_424
    shapes = net.shapes()
    assert shapes["conv1"] == (96, 111, 111)
    assert shapes["pool1"] == (96, 55, 55)
    assert shapes["fire4"] == (256, 55, 55) and shapes["pool4"] == (256, 27, 27)
    assert shapes["fire9"] == (512, 13, 13)
    # conv_final has padding 1: a 15x15 map whose border is bias only.
    assert shapes["conv_final"] == (1000, 15, 15)
    fires = {n.name: (n.squeeze, n.expand1x1, n.expand3x3) for n in net.nodes if isinstance(n, Fire)}
    assert fires["fire2"] == (16, 64, 64) and fires["fire9"] == (64, 256, 256)
    assert fires["fire6"] == (48, 192, 192)


def test_metaparameters_reproduce_v1_0():
    gen = squeezenet_from_metaparameters(base_e=128, incr_e=128, pct3x3=0.5, freq=2, sr=0.125)
    assert gen.nodes == squeezenet_v1_0().nodes


def test_metaparameters_vary_squeeze_ratio_and_pct3x3():
    net = squeezenet_from_metaparameters(sr=0.75, pct3x3=0.25)
    fire2 = net.nodes[2]
    assert (fire2.squeeze, fire2.expand1x1, fire2.expand3x3) == (96, 96, 32)


def test_v1_1_matches_torchvision():
    net = squeezenet_v1_1()
    assert net.parameter_count == 1_235_496
    assert net.shapes()["conv_final"] == (1000, 13, 13)


def test_bypass_variants():
    simple = squeezenet_v1_0("simple")
    assert [n.name for n in simple.nodes if isinstance(n, Bypass)] == [
        "bypass3", "bypass5", "bypass7", "bypass9"]
    assert simple.parameter_count == 1_248_424          # simple bypass adds no parameters
    cplx = squeezenet_v1_0("complex")
    added = [n for n in cplx.nodes if isinstance(n, Bypass) and n.complex]
    assert [n.name for n in added] == ["bypass2", "bypass4", "bypass6", "bypass8"]
    assert added[0].inputs == ("fire2", "pool1")
    assert cplx.parameter_count == 1_248_424 + sum(
        n.in_channels * n.channels + n.channels for n in added)


def test_json_round_trip():
    for net in (squeezenet_v1_0("complex"), squeezenet_v1_1(), digits_net(bypass="simple")):
        assert Network.from_json(net.to_json()) == net


def test_caffe_ceil_mode_pool_size():
    assert pool_output_size(111, 3, 2) == 55
    assert pool_output_size(14, 3, 2) == 7          # floor mode would give 6
    assert pool_output_size(7, 3, 2) == 3


def test_invalid_networks_are_explained():
    spec = digits_net().input
    mean = dataclasses.replace(spec, mean=(16.0,))
    with pytest.raises(ValueError, match="unpadded unless the input mean is zero"):
        Network("x", mean, (Conv("c", 1, 4, 3, pad=1), GlobalAvgPool("g")), 4).validate()
    # With no mean to fold, the padding pixels are exact zeros: a padded first layer is fine.
    Network("x", spec, (Conv("c", 1, 4, 3, pad=1), GlobalAvgPool("g")), 4).validate()
    with pytest.raises(ValueError, match="expects 8 input channels"):
        Network("x", spec, (Conv("c", 1, 4, 3), Fire("f", 8, 2, 4, 4), GlobalAvgPool("g")),
                8).validate()
    with pytest.raises(ValueError, match="complex bypass"):
        Network("x", spec, (Conv("c", 1, 4, 3), MaxPool("p"), Fire("f", 4, 2, 4, 4),
                            Bypass("b", ("f", "p")), GlobalAvgPool("g")), 8).validate()
