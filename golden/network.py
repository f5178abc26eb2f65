"""Declarative description of SqueezeNet-family networks, read by golden, hw and host alike.

A network is a straight list of nodes. Each node reads the tensor of the node before it, or the
tensors named in ``inputs``; its own output is named after the node. That is all the graph
structure SqueezeNet needs (the only joins are the Fire module's internal concat, which the Fire
node owns, and the bypass adds, which name both operands).

Convolutions carry the weights; every other node is parameter-free. Convolution weight names
follow ``<node>`` for plain convolutions and ``<fire>/squeeze1x1``, ``<fire>/expand1x1``,
``<fire>/expand3x3`` (and ``<bypass>/conv1x1`` for a complex bypass) inside composite nodes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

__all__ = [
    "Conv", "Fire", "MaxPool", "Bypass", "GlobalAvgPool", "Network", "ConvSpec", "InputSpec",
    "squeezenet_v1_0", "squeezenet_v1_1", "squeezenet_from_metaparameters", "digits_net",
    "cifar10_squeezenet", "CIFAR10_VARIANTS", "squeezenext", "SQUEEZENEXT_DEPTHS",
    "pool_output_size", "conv_output_size",
]


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe convolution output size (floor mode)."""
    return (size + 2 * pad - kernel) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, ceil_mode: bool = True) -> int:
    """Caffe pooling output size: rounds up (ceil mode), unpadded."""
    if ceil_mode:
        out = -(-(size - kernel) // stride) + 1
        # Caffe drops a last window that would start beyond the input (only possible with padding,
        # kept here so the rule reads the same as Caffe's).
        if (out - 1) * stride >= size:
            out -= 1
        return out
    return (size - kernel) // stride + 1


@dataclass(frozen=True)
class ConvSpec:
    """One convolution as the arithmetic sees it: the unit that owns a weight tensor.

    ``kernel``/``pad`` are the rows' (and, unless ``kernel_w``/``pad_w`` are given, the
    columns') kernel size and zero padding: SqueezeNext's 3x1 is ``kernel=3, kernel_w=1, pad=1,
    pad_w=0``. ``groups`` splits the channels into that many independent convolutions (input
    group g feeds output group g only); the weight tensor is (out, in / groups, kh, kw)."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    pad: int = 0
    relu: bool = True
    kernel_w: int = 0            # 0: square (= kernel)
    pad_w: int = -1              # -1: the same as pad
    groups: int = 1

    @property
    def kh(self) -> int:
        return self.kernel

    @property
    def kw(self) -> int:
        return self.kernel_w or self.kernel

    @property
    def ph(self) -> int:
        return self.pad

    @property
    def pw(self) -> int:
        return self.pad if self.pad_w < 0 else self.pad_w

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kh, self.kw)

    @property
    def weight_count(self) -> int:
        o, c, kh, kw = self.weight_shape
        return o * c * kh * kw

    @property
    def fan_in(self) -> int:
        """Products summed into one output: the accumulator's worst-case term count."""
        return self.in_channels // self.groups * self.kh * self.kw

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return (conv_output_size(h, self.kh, self.stride, self.ph),
                conv_output_size(w, self.kw, self.stride, self.pw))

    def dense(self, w):
        """A grouped weight tensor as the dense (out, in, kh, kw) one it equals: zero outside
        each group's block (exact in float and integer alike; the device computes this)."""
        import numpy as np
        if self.groups == 1:
            return w
        _, c, kh, kw = self.weight_shape
        out = np.zeros((self.out_channels, self.in_channels, kh, kw), w.dtype)
        og = self.out_channels // self.groups
        for g in range(self.groups):
            out[g * og:(g + 1) * og, g * c:(g + 1) * c] = w[g * og:(g + 1) * og]
        return out


@dataclass(frozen=True)
class Conv:
    """A plain convolution, followed by ReLU unless ``relu=False`` (fields as ConvSpec's)."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    pad: int = 0
    relu: bool = True
    inputs: tuple[str, ...] = ()
    kernel_w: int = 0
    pad_w: int = -1
    groups: int = 1

    def convs(self) -> list[ConvSpec]:
        return [ConvSpec(self.name, self.in_channels, self.out_channels, self.kernel,
                         self.stride, self.pad, self.relu, self.kernel_w, self.pad_w,
                         self.groups)]

    def output_shape(self, c: int, h: int, w: int) -> tuple[int, int, int]:
        if c != self.in_channels:
            raise ValueError(f"{self.name}: expects {self.in_channels} input channels, gets {c}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{self.name}: {self.groups} groups do not divide "
                             f"{self.in_channels} input and {self.out_channels} output channels")
        return (self.out_channels, *self.convs()[0].output_size(h, w))


@dataclass(frozen=True)
class Fire:
    """Fire module: 1x1 squeeze -> ReLU -> (1x1 expand || 3x3 expand, pad 1) -> ReLU -> concat."""

    name: str
    in_channels: int
    squeeze: int
    expand1x1: int
    expand3x3: int
    inputs: tuple[str, ...] = ()

    @property
    def out_channels(self) -> int:
        return self.expand1x1 + self.expand3x3

    def convs(self) -> list[ConvSpec]:
        n = self.name
        return [
            ConvSpec(f"{n}/squeeze1x1", self.in_channels, self.squeeze, 1),
            ConvSpec(f"{n}/expand1x1", self.squeeze, self.expand1x1, 1),
            ConvSpec(f"{n}/expand3x3", self.squeeze, self.expand3x3, 3, pad=1),
        ]

    def output_shape(self, c: int, h: int, w: int) -> tuple[int, int, int]:
        if c != self.in_channels:
            raise ValueError(f"{self.name}: expects {self.in_channels} input channels, gets {c}")
        return (self.out_channels, h, w)


@dataclass(frozen=True)
class MaxPool:
    """Max pooling, Caffe ceil-mode output size, no padding."""

    name: str
    kernel: int = 3
    stride: int = 2
    inputs: tuple[str, ...] = ()

    def convs(self) -> list[ConvSpec]:
        return []

    def output_shape(self, c: int, h: int, w: int) -> tuple[int, int, int]:
        return (c, pool_output_size(h, self.kernel, self.stride),
                pool_output_size(w, self.kernel, self.stride))


@dataclass(frozen=True)
class Bypass:
    """Residual add of the paper's section 6: ``inputs[0]`` (the Fire output) + ``inputs[1]``.

    Simple bypass adds the Fire module's input unchanged. Complex bypass (``channels`` set)
    first passes the input through a 1x1 convolution with bias and no ReLU so that channel
    counts match. The sum is clamped at zero, so every activation stays unsigned (for simple
    bypass both operands are already non-negative and the clamp never acts).
    """

    name: str
    inputs: tuple[str, ...]
    in_channels: int = 0     # channels of inputs[1]; only used by complex bypass
    channels: int = 0        # output channels of the bypass 1x1 convolution; 0 = simple bypass

    @property
    def complex(self) -> bool:
        return self.channels > 0

    def convs(self) -> list[ConvSpec]:
        if not self.complex:
            return []
        return [ConvSpec(f"{self.name}/conv1x1", self.in_channels, self.channels, 1, relu=False)]


@dataclass(frozen=True)
class GlobalAvgPool:
    """Global average pooling: the network's logits."""

    name: str
    inputs: tuple[str, ...] = ()

    def convs(self) -> list[ConvSpec]:
        return []

    def output_shape(self, c: int, h: int, w: int) -> tuple[int, int, int]:
        return (c, 1, 1)


Node = Conv | Fire | MaxPool | Bypass | GlobalAvgPool
_NODE_TYPES = {cls.__name__: cls for cls in (Conv, Fire, MaxPool, Bypass, GlobalAvgPool)}


@dataclass(frozen=True)
class InputSpec:
    """What the network expects and how a photo is prepared for it.

    ``mean`` and ``std`` are in pixel units (0..255), per channel in ``channel_order``. The
    integer paths take raw uint8 pixels and fold ``mean``/``std`` into the first convolution,
    which is exact because that convolution is unpadded (checked by ``Network.validate``).
    """

    channels: int
    height: int
    width: int
    channel_order: str = "BGR"          # "BGR", "RGB" or "GRAY"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: int = 0                     # shorter side before the centre crop; 0 = resize to fit


@dataclass(frozen=True)
class Network:
    name: str
    input: InputSpec
    nodes: tuple[Node, ...]
    classes: int

    # ---- structure -------------------------------------------------------------------------
    def convs(self) -> list[ConvSpec]:
        return [spec for node in self.nodes for spec in node.convs()]

    def conv(self, name: str) -> ConvSpec:
        for spec in self.convs():
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no convolution named {name!r}")

    def node_inputs(self, index: int) -> tuple[str, ...]:
        node = self.nodes[index]
        if node.inputs:
            return node.inputs
        return ("input",) if index == 0 else (self.nodes[index - 1].name,)

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """Output shape (C, H, W) of every node, keyed by node name ('input' for the image)."""
        shapes = {"input": (self.input.channels, self.input.height, self.input.width)}
        for i, node in enumerate(self.nodes):
            srcs = self.node_inputs(i)
            for s in srcs:
                if s not in shapes:
                    raise ValueError(f"{self.name}: node {node.name} reads unknown tensor {s!r}")
            if isinstance(node, Bypass):
                a, b = (shapes[s] for s in srcs)
                if node.complex:
                    if b[0] != node.in_channels:
                        raise ValueError(f"{node.name}: bypass conv expects {node.in_channels} "
                                         f"channels, gets {b[0]}")
                    b = (node.channels, b[1], b[2])
                if a != b:
                    raise ValueError(f"{node.name}: cannot add shapes {a} and {b}; "
                                     f"use a complex bypass (channels=...) when channels differ")
                shapes[node.name] = a
            else:
                shapes[node.name] = node.output_shape(*shapes[srcs[0]])
        return shapes

    @property
    def parameter_count(self) -> int:
        return sum(s.weight_count + s.out_channels for s in self.convs())

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference: every convolution's weights times the pixels
        of its output (a grouped layer's own weights, not the dense tensor the device runs)."""
        shapes = self.shapes()
        return sum(spec.weight_count * shapes[node.name][1] * shapes[node.name][2]
                   for node in self.nodes for spec in node.convs())

    @property
    def output_node(self) -> str:
        return self.nodes[-1].name

    def validate(self) -> "Network":
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names) or "input" in names:
            raise ValueError(f"{self.name}: node names must be unique and not 'input'")
        shapes = self.shapes()
        first = self.nodes[0]
        if not isinstance(first, Conv) or ((first.pad or first.convs()[0].pw) and any(self.input.mean)):
            raise ValueError(f"{self.name}: the first node must be a convolution, unpadded unless "
                             "the input mean is zero (the mean is folded into its bias, which is "
                             "exact only where no padding pixel enters a window)")
        if not isinstance(self.nodes[-1], GlobalAvgPool):
            raise ValueError(f"{self.name}: the last node must be GlobalAvgPool")
        if shapes[self.output_node][0] != self.classes:
            raise ValueError(f"{self.name}: produces {shapes[self.output_node][0]} logits, "
                             f"declares {self.classes} classes")
        for n in (len(self.input.mean), len(self.input.std)):
            if n not in (1, self.input.channels):
                raise ValueError(f"{self.name}: mean/std need 1 or {self.input.channels} values")
        return self

    # ---- serialisation (the network travels inside model files) ----------------------------
    def to_json(self) -> str:
        return json.dumps({
            "name": self.name, "classes": self.classes,
            "input": dataclasses.asdict(self.input),
            "nodes": [{"type": type(n).__name__, **dataclasses.asdict(n)} for n in self.nodes],
        })

    @staticmethod
    def from_json(text: str) -> "Network":
        d = json.loads(text)
        nodes = []
        for nd in d["nodes"]:
            nd = dict(nd)
            cls = _NODE_TYPES[nd.pop("type")]
            nd["inputs"] = tuple(nd.get("inputs", ()))
            nodes.append(cls(**nd))
        inp = dict(d["input"])
        inp["mean"], inp["std"] = tuple(inp["mean"]), tuple(inp["std"])
        return Network(d["name"], InputSpec(**inp), tuple(nodes), d["classes"]).validate()


# ---- the networks of the papers -------------------------------------------------------------

CAFFE_IMAGENET_INPUT = InputSpec(3, 227, 227, "BGR", (104.0, 117.0, 123.0), (1.0,), resize=256)
TORCHVISION_IMAGENET_INPUT = InputSpec(
    3, 224, 224, "RGB", (0.485 * 255, 0.456 * 255, 0.406 * 255),
    (0.229 * 255, 0.224 * 255, 0.225 * 255), resize=256)


def _fire_chain(spec, bypass: str, pools_after: set[int], first_in: int, first_input: str,
                start: int = 2):
    """Fire modules fireN (N from ``start``) with pools after the given N and optional bypasses.

    ``spec`` is a list of (squeeze, expand1x1, expand3x3). ``bypass`` is "none", "simple" (the
    paper's: around every Fire whose input and output channel counts match, fire3/5/7/9 in v1.0)
    or "complex" (also a 1x1 convolution around the others, fire2/4/6/8 in v1.0).
    """
    nodes: list[Node] = []
    cin, fire_in = first_in, first_input
    for i, (s, e1, e3) in enumerate(spec):
        n = start + i
        fire = Fire(f"fire{n}", cin, s, e1, e3)
        nodes.append(fire)
        out = e1 + e3
        if bypass != "none" and out == cin:
            nodes.append(Bypass(f"bypass{n}", (fire.name, fire_in)))
        elif bypass == "complex":
            nodes.append(Bypass(f"bypass{n}", (fire.name, fire_in), in_channels=cin, channels=out))
        if n in pools_after:
            nodes.append(MaxPool(f"pool{n}"))
        fire_in, cin = nodes[-1].name, out
    return nodes, cin


def squeezenet_v1_0(bypass: str = "none", classes: int = 1000) -> Network:
    """SqueezeNet v1.0 as the authors' Caffe description (paper Table 1), 227x227 BGR input.

    ``bypass``: "none" (the released model), "simple" or "complex" (paper section 6).
    """
    return squeezenet_from_metaparameters(
        base_e=128, incr_e=128, pct3x3=0.5, freq=2, sr=0.125, bypass=bypass, classes=classes,
        name="squeezenet-v1.0" + ("" if bypass == "none" else f"-{bypass}-bypass"))


def squeezenet_from_metaparameters(base_e: int = 128, incr_e: int = 128, pct3x3: float = 0.5,
                                   freq: int = 2, sr: float = 0.125, bypass: str = "none",
                                   classes: int = 1000, name: str = "squeezenet-meta",
                                   input_spec: InputSpec = CAFFE_IMAGENET_INPUT,
                                   conv1_channels: int = 96) -> Network:
    """The paper's section 5 generator: e_i = base_e + incr_e * floor(i / freq) for fire i-2.

    e1x1 = e_i * (1 - pct3x3), e3x3 = e_i * pct3x3, squeeze = SR * e_i; v1.0's macro layout
    (conv1 7x7/2, pools after conv1, fire4 and fire8, conv_final 1x1 with padding 1).
    """
    if bypass not in ("none", "simple", "complex"):
        raise ValueError(f"bypass must be 'none', 'simple' or 'complex', not {bypass!r}")
    if not 0 < pct3x3 < 1 or not 0 < sr <= 1:
        raise ValueError("pct3x3 must be in (0, 1) and SR in (0, 1]")
    spec = []
    for i in range(8):
        e = base_e + incr_e * (i // freq)
        e3 = max(1, round(e * pct3x3))
        e1 = max(1, e - e3)
        spec.append((max(1, round(sr * e)), e1, e3))
    nodes: list[Node] = [Conv("conv1", input_spec.channels, conv1_channels, 7, stride=2),
                         MaxPool("pool1")]
    fires, cin = _fire_chain(spec, bypass, {4, 8}, conv1_channels, "pool1")
    nodes += fires
    nodes += [Conv("conv_final", cin, classes, 1, pad=1), GlobalAvgPool("pool_final")]
    return Network(name, input_spec, tuple(nodes), classes).validate()


def squeezenet_v1_1(classes: int = 1000) -> Network:
    """SqueezeNet v1.1 as in torchvision: conv1 3x3/2 with 64 channels, earlier pooling."""
    spec = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
            (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]
    nodes: list[Node] = [Conv("conv1", 3, 64, 3, stride=2), MaxPool("pool1")]
    fires, cin = _fire_chain(spec, "none", {3, 5}, 64, "pool1")
    nodes += fires
    nodes += [Conv("conv_final", cin, classes, 1), GlobalAvgPool("pool_final")]
    return Network("squeezenet-v1.1", TORCHVISION_IMAGENET_INPUT, tuple(nodes), classes).validate()


DIGITS_INPUT = InputSpec(1, 16, 16, "GRAY", (0.0,), (255.0,), resize=0)


def digits_net(sr: float = 0.25, pct3x3: float = 0.5, bypass: str = "none",
               width: int = 32) -> Network:
    """The shipped default: a small SqueezeNet for scikit-learn's 8x8 digits, upsampled to 16x16.

    conv1 3x3 (no padding) -> pool -> fire2, fire3 -> pool -> fire4, fire5 -> conv10 1x1 to 10
    classes -> global average pool, like the CIFAR-10 SqueezeNet variants scaled down.
    """
    e = [width, width, 2 * width, 2 * width]
    spec = []
    for ei in e:
        e3 = max(1, round(ei * pct3x3))
        spec.append((max(1, round(sr * ei)), max(1, ei - e3), e3))
    nodes: list[Node] = [Conv("conv1", 1, width, 3), MaxPool("pool1")]
    fires, cin = _fire_chain(spec, bypass, {3}, width, "pool1")
    nodes += fires
    nodes += [Conv("conv10", cin, 10, 1), GlobalAvgPool("pool_final")]
    return Network("digits-squeezenet", DIGITS_INPUT, tuple(nodes), 10).validate()


CIFAR10_INPUT = InputSpec(3, 32, 32, "RGB", (0.0,), (255.0,), resize=0)
CIFAR10_VARIANTS = ("baseline", "e1", "e2", "e3", "e4")


def cifar10_squeezenet(variant: str = "e4") -> Network:
    """The CIFAR-10 study's SqueezeNet variants: v1.0 with 10 classes and each step after it.

    Cumulative, as the study builds them: ``baseline`` is v1.0 (conv1 7x7/2, max pooling 3x3/2
    after conv1, fire4 and fire8); ``e1`` pools 2x2/2; ``e2`` also makes conv1 2x2/2; ``e3``
    also removes fire3 (fire4 then reads fire2's 128 channels); ``e4`` is e2 with delayed
    downsampling (the study's Table 2): conv1 2x2/1 with padding 1 (33x33), no pooling after
    conv1, max pooling 2x2/2 after fire4 and fire8. The input is the raw RGB photo scaled by
    1/255 with no mean subtracted, so conv1 may be padded (``Network.validate``). conv_final is
    unpadded (v1.0's padding 1 only adds bias-only border pixels to the average).
    """
    if variant not in CIFAR10_VARIANTS:
        raise ValueError(f"unknown CIFAR-10 variant {variant!r}; choose one of "
                         f"{', '.join(CIFAR10_VARIANTS)}")
    spec = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
            (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]
    pool = 3 if variant == "baseline" else 2
    if variant == "e4":
        nodes: list[Node] = [Conv("conv1", 3, 96, 2, stride=1, pad=1)]
        first_input = "conv1"
    else:
        k = 7 if variant in ("baseline", "e1") else 2
        nodes = [Conv("conv1", 3, 96, k, stride=2), MaxPool("pool1", pool, 2)]
        first_input = "pool1"
    cin, fire_in = 96, first_input
    for i, (s, e1, e3) in enumerate(spec):
        n = 2 + i
        if variant == "e3" and n == 3:
            continue
        nodes.append(Fire(f"fire{n}", cin, s, e1, e3))
        if n in (4, 8):
            nodes.append(MaxPool(f"pool{n}", pool, 2))
        cin = e1 + e3
    nodes += [Conv("conv_final", cin, 10, 1), GlobalAvgPool("pool_final")]
    return Network(f"cifar10-squeezenet-{variant}", CIFAR10_INPUT, tuple(nodes), 10).validate()


SQUEEZENEXT_DEPTHS = {"23": (6, 6, 8, 1), "23v2": (6, 6, 8, 1), "23v3": (4, 8, 8, 1),
                      "23v4": (2, 10, 8, 1), "23v5": (2, 4, 14, 1)}


def squeezenext(width: float = 1.0, version: str = "23", grouped: bool = False,
                classes: int = 1000, input_spec: InputSpec = CAFFE_IMAGENET_INPUT,
                name: str | None = None) -> Network:
    """SqueezeNext (Gholami et al.), as the authors' Caffe definitions build it.

    conv1 (7x7/2, 5x5/2 from v2 on; 64 channels) -> max pool 3x3/2 -> four stages of blocks
    (``SQUEEZENEXT_DEPTHS``; stride 1, 2, 2, 2; 32, 64, 128, 256 output channels times
    ``width``) -> conv_final 1x1 to 128 -> the classifier -> global average pooling. A block of
    C output channels: 1x1 (C/2, the stage's stride) -> 1x1 (C/4) -> 3x1 (C/2, pad 1 on the
    rows) -> 1x3 (C/2, pad 1 on the columns), the pair in the other order in every second
    block -> 1x1 (C), every one with ReLU, added to the shortcut (the block's input, or a 1x1
    convolution of it with ReLU where the block changes channels or stride). ``grouped`` is
    the G variant: the first 1x1 and the separable pair in two groups.

    Two departures, both exact in what they compute or documented: each convolution's
    BatchNorm and Scale are folded into it (a bias per output channel), and the authors'
    fully connected layer after the average pooling is a 1x1 convolution before it (equal by
    linearity, but with the ReLU every classifier of the device has, as SqueezeNet's).
    """
    if version not in SQUEEZENEXT_DEPTHS:
        raise ValueError(f"unknown SqueezeNext version {version!r}: one of "
                         f"{', '.join(SQUEEZENEXT_DEPTHS)}")
    g = 2 if grouped else 1
    k1 = 7 if version == "23" else 5
    nodes: list[Node] = [Conv("conv1", input_spec.channels, 64, k1, stride=2), MaxPool("pool1")]
    # The v5 files feed a stage's first block from its projection (stride included); the
    # others read the block's input beside it.
    path_reads_projection = version == "23v5"
    cin, src, index = 64, "pool1", 0
    for stage, depth in enumerate(SQUEEZENEXT_DEPTHS[version]):
        cout = int(round((32 << stage) * width))
        for i in range(depth):
            index += 1
            b = f"block{index}"
            stride = 1 if stage == 0 or i > 0 else 2
            shortcut, path_in, path_stride, path_c = src, src, stride, cin
            if i == 0:
                nodes.append(Conv(f"{b}/proj", cin, cout, 1, stride, inputs=(src,)))
                shortcut = f"{b}/proj"
                if path_reads_projection:
                    path_in, path_stride, path_c = shortcut, 1, cout
            h, q = cout // 2, cout // 4
            rows = Conv(f"{b}/3x1", 0, h, 3, pad=1, kernel_w=1, pad_w=0, groups=g)
            cols = Conv(f"{b}/1x3", 0, h, 1, pad=0, kernel_w=3, pad_w=1, groups=g)
            first, second = (rows, cols) if index % 2 else (cols, rows)
            nodes += [Conv(f"{b}/1x1a", path_c, h, 1, path_stride, inputs=(path_in,), groups=g),
                      Conv(f"{b}/1x1b", h, q, 1),
                      dataclasses.replace(first, in_channels=q),
                      dataclasses.replace(second, in_channels=h),
                      Conv(f"{b}/1x1c", h, cout, 1),
                      Bypass(b, (f"{b}/1x1c", shortcut))]
            cin, src = cout, b
    nodes += [Conv("conv_final", cin, 128, 1), Conv("classifier", 128, classes, 1),
              GlobalAvgPool("pool_final")]
    label = f"{width:.1f}-{'G-' if grouped else ''}SqNxt-{version}"
    return Network(name or f"squeezenext-{label}", input_spec, tuple(nodes), classes).validate()


NETWORKS = {
    "squeezenet-v1.0": squeezenet_v1_0,
    "squeezenet-v1.0-simple-bypass": lambda: squeezenet_v1_0("simple"),
    "squeezenet-v1.0-complex-bypass": lambda: squeezenet_v1_0("complex"),
    "squeezenet-v1.1": squeezenet_v1_1,
    "digits-squeezenet": digits_net,
    **{f"cifar10-squeezenet-{v}": (lambda v=v: cifar10_squeezenet(v)) for v in CIFAR10_VARIANTS},
    **{f"squeezenext-{w:.1f}-SqNxt-{v}": (lambda w=w, v=v: squeezenext(w, v))
       for w in (1.0, 2.0) for v in SQUEEZENEXT_DEPTHS},
    "squeezenext-1.0-G-SqNxt-23": lambda: squeezenext(1.0, "23", grouped=True),
}
