"""Caffe network descriptions (``.prototxt``, protobuf text format): the layer graph, each
blob's shape, parameters and multiply-accumulates.

This reads what the seeds publish as Caffe files (the SqueezeNext authors' ``train_val.prototxt``
files; the SqueezeNet authors' deploy file): Convolution (``kernel_size`` or ``kernel_h`` /
``kernel_w``, ``pad`` or ``pad_h`` / ``pad_w``, ``stride``, ``group``, ``bias_term``),
BatchNorm, Scale, ReLU, Pooling (Caffe's ceil-mode output size, ``global_pooling``), Concat,
Eltwise (SUM), InnerProduct, and the data, loss and accuracy layers around them. Layers of the TRAIN phase
only are left out (a train_val file describes both phases). A layer of any other type is an
error that names it.

Parameters are what a trained file stores and a device would hold: convolution and
InnerProduct weights and biases, and Scale's gamma and beta; BatchNorm's running mean,
variance and its moving-average factor are statistics, folded into the convolution before it
and not counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CaffeFormatError", "CaffeLayer", "CaffeGraph", "parse_prototxt", "read_caffe_graph"]

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([A-Za-z_][\w.]*)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s{}]+)'
                    r'|([A-Za-z_][\w.]*)\s*:?\s*\{|(\}))')


class CaffeFormatError(ValueError):
    """A prototxt that cannot be read, or a layer this reader does not know (names which)."""


def parse_prototxt(text: str) -> dict:
    """Protobuf text format -> nested dicts; every key maps to the list of its values (a
    message is a dict, a scalar a str, int or float; quoted strings unquoted)."""
    root: dict = {}
    stack = [root]
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise CaffeFormatError(f"line {line}: cannot read {text[pos:pos + 30].strip()!r}")
        pos = m.end()
        comment, key, value, block, close = m.groups()
        if comment:
            continue
        if key:
            stack[-1].setdefault(key, []).append(_scalar(value))
        elif block:
            child: dict = {}
            stack[-1].setdefault(block, []).append(child)
            stack.append(child)
        elif close:
            if len(stack) == 1:
                line = text.count("\n", 0, pos) + 1
                raise CaffeFormatError(f"line {line}: a '}}' closes nothing")
            stack.pop()
    if len(stack) != 1:
        raise CaffeFormatError("the file ends inside a block: a '}' is missing")
    return root


def _scalar(value: str):
    if value.startswith('"'):
        return value[1:-1]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _one(params: dict, key: str, default=None):
    values = params.get(key)
    return values[0] if values else default


@dataclass(frozen=True)
class CaffeLayer:
    name: str
    type: str
    bottoms: tuple[str, ...]
    top: str
    in_shape: tuple[int, int, int]                 # of the first bottom: C, H, W
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int] = (1, 1)               # (h, w) for Convolution and Pooling
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    group: int = 1
    bias: bool = False
    params: int = 0
    macs: int = 0
    pool: str = ""                                 # MAX or AVE


@dataclass
class CaffeGraph:
    name: str
    input_shape: tuple[int, int, int]
    layers: list[CaffeLayer] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def of_type(self, kind: str) -> list[CaffeLayer]:
        return [layer for layer in self.layers if layer.type == kind]


_SKIPPED = {"Data", "Input", "SoftmaxWithLoss", "Softmax", "Accuracy", "Dropout"}


def _pair(p: dict, name: str, default: int) -> tuple[int, int]:
    """kernel/pad/stride: ``name_h`` and ``name_w`` if given, else ``name`` (or
    ``kernel_size``) for both."""
    h, w = _one(p, f"{name}_h"), _one(p, f"{name}_w")
    if h is not None or w is not None:
        return (int(h if h is not None else default), int(w if w is not None else default))
    size = _one(p, "kernel_size" if name == "kernel" else name, default)
    return int(size), int(size)


def read_caffe_graph(source, input_shape: tuple[int, int, int] | None = None) -> CaffeGraph:
    """A ``.prototxt`` file's path (or its text) -> CaffeGraph. The input's shape comes from the data
    layer's ``crop_size`` (3 channels) or an Input layer's shape, unless given."""
    is_text = isinstance(source, str) and "{" in source
    text = source if is_text else Path(source).read_text()
    net = parse_prototxt(text)
    name = str(_one(net, "name", "net" if is_text else Path(source).parent.name))
    layers = net.get("layer", []) or net.get("layers", [])
    shapes: dict[str, tuple[int, int, int]] = {}
    for layer in layers:
        if _phase(layer) == "TRAIN":
            continue
        kind = _one(layer, "type")
        if kind in ("Data", "Input") and input_shape is None:
            if kind == "Data":
                crop = _one(_one(layer, "transform_param", {}), "crop_size")
                if crop:
                    input_shape = (3, int(crop), int(crop))
            else:
                dims = _one(_one(layer, "input_param", {}), "shape", {}).get("dim", [])
                if len(dims) == 4:
                    input_shape = tuple(int(d) for d in dims[1:])
    if input_shape is None:
        raise CaffeFormatError(f"{name}: no input shape (no data layer with crop_size, no "
                               "Input layer); give input_shape")
    graph = CaffeGraph(name, tuple(input_shape))
    shapes["data"] = tuple(input_shape)
    for layer in layers:
        if _phase(layer) == "TRAIN":
            continue
        lname, kind = str(_one(layer, "name")), str(_one(layer, "type"))
        bottoms = tuple(str(b) for b in layer.get("bottom", []))
        tops = [str(t) for t in layer.get("top", [])]
        if kind in _SKIPPED:
            if kind in ("Data", "Input") and tops:
                shapes[tops[0]] = tuple(input_shape)
            continue
        missing = [b for b in bottoms if b not in shapes]
        if missing or not tops:
            raise CaffeFormatError(f"layer {lname}: its input {missing or bottoms} is no "
                                   "earlier layer's output")
        c, h, w = shapes[bottoms[0]]
        top = tops[0]
        if kind == "Convolution":
            p = _one(layer, "convolution_param", {})
            k, s, pad = _pair(p, "kernel", 1), _pair(p, "stride", 1), _pair(p, "pad", 0)
            out, group = int(_one(p, "num_output")), int(_one(p, "group", 1))
            bias = str(_one(p, "bias_term", "true")).lower() != "false"
            if c % group or out % group:
                raise CaffeFormatError(f"layer {lname}: {c} input and {out} output channels "
                                       f"do not split into {group} groups")
            oh = (h + 2 * pad[0] - k[0]) // s[0] + 1
            ow = (w + 2 * pad[1] - k[1]) // s[1] + 1
            weights = out * (c // group) * k[0] * k[1]
            info = CaffeLayer(lname, kind, bottoms, top, (c, h, w), (out, oh, ow), k, s, pad,
                              group, bias, weights + (out if bias else 0),
                              weights * oh * ow)
        elif kind == "Pooling":
            p = _one(layer, "pooling_param", {})
            pool = str(_one(p, "pool", "MAX"))
            if str(_one(p, "global_pooling", "false")).lower() == "true":
                k, s, pad, oh, ow = (h, w), (1, 1), (0, 0), 1, 1
            else:
                k, s, pad = _pair(p, "kernel", 1), _pair(p, "stride", 1), _pair(p, "pad", 0)
                oh = math.ceil((h + 2 * pad[0] - k[0]) / s[0]) + 1
                ow = math.ceil((w + 2 * pad[1] - k[1]) / s[1]) + 1
            info = CaffeLayer(lname, kind, bottoms, top, (c, h, w), (c, oh, ow), k, s, pad,
                              pool=pool)
        elif kind == "InnerProduct":
            p = _one(layer, "inner_product_param", {})
            out = int(_one(p, "num_output"))
            bias = str(_one(p, "bias_term", "true")).lower() != "false"
            n_in = c * h * w
            info = CaffeLayer(lname, kind, bottoms, top, (c, h, w), (out, 1, 1), bias=bias,
                              params=n_in * out + (out if bias else 0), macs=n_in * out)
        elif kind == "Scale":
            bias = str(_one(_one(layer, "scale_param", {}), "bias_term", "false")).lower() == "true"
            info = CaffeLayer(lname, kind, bottoms, top, (c, h, w), (c, h, w), bias=bias,
                              params=c * (2 if bias else 1))
        elif kind in ("BatchNorm", "ReLU"):
            info = CaffeLayer(lname, kind, bottoms, top, (c, h, w), (c, h, w))
        elif kind == "Concat":
            parts = [shapes[b] for b in bottoms]
            if len({p_[1:] for p_ in parts}) != 1:
                raise CaffeFormatError(f"layer {lname}: Concat of blobs of different sizes "
                                       f"{parts}")
            info = CaffeLayer(lname, kind, bottoms, top, (c, h, w),
                              (sum(p_[0] for p_ in parts), h, w))
        elif kind == "Eltwise":
            others = {shapes[b] for b in bottoms}
            if len(others) != 1:
                raise CaffeFormatError(f"layer {lname}: Eltwise of blobs of different shapes "
                                       f"{sorted(others)}")
            op = str(_one(_one(layer, "eltwise_param", {}), "operation", "SUM"))
            if op != "SUM":
                raise CaffeFormatError(f"layer {lname}: Eltwise {op}; only SUM is read")
            info = CaffeLayer(lname, kind, bottoms, top, (c, h, w), (c, h, w))
        else:
            raise CaffeFormatError(f"layer {lname}: type {kind} is not one this reader knows "
                                   "(Convolution, BatchNorm, Scale, ReLU, Pooling, Concat, "
                                   "Eltwise, InnerProduct)")
        graph.layers.append(info)
        shapes[top] = info.out_shape
    return graph


def _phase(layer: dict) -> str | None:
    include = _one(layer, "include")
    return str(_one(include, "phase")) if include else None
