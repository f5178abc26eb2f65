"""ONNX in and out: import float SqueezeNets exported by PyTorch or from the ONNX model zoo, and
export the project's float model (for onnxruntime benchmarks and for users' own tooling).

Import accepts the operators a SqueezeNet graph uses (Conv, Relu, MaxPool with ceil_mode, Concat
on channels, Dropout, GlobalAveragePool, AveragePool over the whole map, Flatten, Reshape,
Softmax) and recognises Fire modules and bypass adds in it. Anything else gets an error that
names the node and says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model import Model, ModelFormatError
from ..network import (Bypass, Conv, Fire, GlobalAvgPool, InputSpec, MaxPool, Network,
                      TORCHVISION_IMAGENET_INPUT, pool_output_size)

__all__ = ["export_onnx", "import_onnx", "UnsupportedGraphError"]


class UnsupportedGraphError(ModelFormatError):
    """An ONNX graph that the accelerator cannot run, naming the node at fault."""


# ---- export ---------------------------------------------------------------------------------

def export_onnx(model: Model, path: str | Path | None = None, opset: int = 13):
    """Write the float network (``codebook[indices]`` weights) as an ONNX graph. Input 'data'
    is the normalised float tensor (N, C, H, W), output 'logits' (N, classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net = model.network
    inits, nodes = [], []
    weights = model.float_weights()

    def conv(spec, src, out_name):
        w, b = weights[spec.name]
        inits.append(numpy_helper.from_array(w, spec.name + ".weight"))
        inits.append(numpy_helper.from_array(b, spec.name + ".bias"))
        pre = out_name + "_pre" if spec.relu else out_name
        nodes.append(helper.make_node(
            "Conv", [src, spec.name + ".weight", spec.name + ".bias"], [pre], name=spec.name,
            kernel_shape=[spec.kh, spec.kw], strides=[spec.stride] * 2,
            pads=[spec.ph, spec.pw, spec.ph, spec.pw], group=spec.groups))
        if spec.relu:
            nodes.append(helper.make_node("Relu", [pre], [out_name], name=spec.name + "/relu"))
        return out_name

    tname = {"input": "data"}
    for i, node in enumerate(net.nodes):
        src = [tname[s] for s in net.node_inputs(i)]
        out = node.name
        if isinstance(node, Conv):
            conv(node.convs()[0], src[0], out)
        elif isinstance(node, Fire):
            sq, e1, e3 = node.convs()
            s = conv(sq, src[0], sq.name)
            a, b = conv(e1, s, e1.name), conv(e3, s, e3.name)
            nodes.append(helper.make_node("Concat", [a, b], [out], name=out, axis=1))
        elif isinstance(node, MaxPool):
            nodes.append(helper.make_node("MaxPool", src, [out], name=out, ceil_mode=1,
                                          kernel_shape=[node.kernel] * 2,
                                          strides=[node.stride] * 2))
        elif isinstance(node, Bypass):
            other = conv(node.convs()[0], src[1], node.convs()[0].name) if node.complex else src[1]
            nodes.append(helper.make_node("Add", [src[0], other], [out + "_sum"], name=out))
            nodes.append(helper.make_node("Relu", [out + "_sum"], [out], name=out + "/relu"))
        elif isinstance(node, GlobalAvgPool):
            nodes.append(helper.make_node("GlobalAveragePool", src, [out], name=out))
            nodes.append(helper.make_node("Flatten", [out], ["logits"], name="flatten"))
        tname[node.name] = out
    spec = net.input
    graph = helper.make_graph(
        nodes, net.name,
        [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                       ["N", spec.channels, spec.height, spec.width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", net.classes])],
        inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="sqz")
    m.ir_version = 8
    onnx.checker.check_model(m)
    if path is not None:
        onnx.save(m, str(path))
    return m


# ---- import ---------------------------------------------------------------------------------

def import_onnx(source, input_spec: InputSpec | None = None) -> Model:
    """Read a float SqueezeNet-family ONNX graph into a Model (float weights held exactly).

    ``source`` is a path or an ``onnx.ModelProto``. ``input_spec`` gives the preprocessing
    (default: torchvision's ImageNet convention at the graph's input size).
    """
    import onnx
    from onnx import numpy_helper

    where = str(source) if not isinstance(source, onnx.ModelProto) else "ONNX model"
    try:
        m = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source))
    except Exception as e:  # onnx raises several types for a damaged file
        raise ModelFormatError(f"{where}: cannot parse as ONNX ({e})") from e
    g = m.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            init[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    graph_inputs = [i for i in g.input if i.name not in init]
    if len(graph_inputs) != 1:
        raise UnsupportedGraphError(f"{where}: expects one image input, found "
                                    f"{[i.name for i in graph_inputs]}")
    dims = [d.dim_value for d in graph_inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[1:]):
        raise UnsupportedGraphError(f"{where}: input {graph_inputs[0].name} must be N x C x H x W "
                                    f"with fixed C, H, W; has {dims}")
    c, h, w = dims[1:]
    if input_spec is None:
        base = TORCHVISION_IMAGENET_INPUT
        input_spec = InputSpec(c, h, w, base.channel_order if c == 3 else "GRAY",
                               base.mean if c == 3 else (0.0,), base.std if c == 3 else (255.0,),
                               base.resize if c == 3 else 0)

    def attr(node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def unsupported(node, why):
        return UnsupportedGraphError(f"{where}: node {node.name or node.output[0]!r} "
                                     f"({node.op_type}): {why}")

    # Walk the graph in order, building tensors -> (kind, data) and the layer list.
    alias = {graph_inputs[0].name: "input"}         # onnx tensor -> our tensor name
    layers: list = []
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    shapes = {"input": (c, h, w)}

    counter = {"conv": 0, "pool": 0, "add": 0}

    def fresh(kind):
        counter[kind] += 1
        return f"{kind}{counter[kind]}"

    convs_out = {}      # onnx name -> dict(spec info) for a conv output before/after relu
    for n in g.node:
        op = n.op_type
        if op in ("Constant",):
            continue
        if op == "Conv":
            src_name = n.input[0]
            info = convs_out.get(src_name)
            if info is not None:
                # A convolution reading another: the first becomes a layer of its own, held
                # back as a possible Fire squeeze when it is a ReLU'd 1x1.
                if not info["relu"]:
                    raise unsupported(n, "reads a convolution output that has no ReLU")
                if (info["k"], info["s"], info["p"]) == (1, 1, 0):
                    _flush_pending(layers, weights, shapes)
                    del convs_out[src_name]
                    our = fresh("conv")
                    layers.append(_PendingSqueeze(our, info["src"], info["w"], info["b"]))
                    shapes[our] = (info["w"].shape[0],) + shapes[info["src"]][1:]
                    alias[src_name] = our
                else:
                    _materialise_conv(src_name, info, convs_out, alias, layers, weights, shapes,
                                      fresh)
            x = alias.get(src_name)
            if x is None:
                raise unsupported(n, f"reads {src_name!r}, which is not an activation")
            if layers and isinstance(layers[-1], _PendingSqueeze) and layers[-1].out != x:
                _flush_pending(layers, weights, shapes)
            if n.input[1] not in init:
                raise unsupported(n, "weights are not constant initialisers")
            wt = init[n.input[1]].astype(np.float32)
            bias = (init[n.input[2]].astype(np.float32) if len(n.input) > 2 and n.input[2]
                    else np.zeros(wt.shape[0], np.float32))
            k = attr(n, "kernel_shape", list(wt.shape[2:]))
            strides = attr(n, "strides", [1, 1])
            pads = attr(n, "pads", [0, 0, 0, 0])
            group = attr(n, "group", 1)
            dil = attr(n, "dilations", [1, 1])
            if group != 1 or list(dil) != [1, 1]:
                raise unsupported(n, "grouped or dilated convolutions are not supported")
            if k[0] != k[1] or strides[0] != strides[1] or len(set(pads)) != 1:
                raise unsupported(n, f"only square kernels, equal strides and symmetric padding "
                                     f"(kernel {k}, strides {strides}, pads {pads})")
            if attr(n, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise unsupported(n, "auto_pad is not supported; export with explicit pads")
            convs_out[n.output[0]] = dict(node=n, src=x, w=wt, b=bias, k=k[0], s=strides[0],
                                          p=pads[0], relu=False)
        elif op == "Relu":
            src = n.input[0]
            if src in convs_out:
                convs_out[src]["relu"] = True
                convs_out[n.output[0]] = convs_out.pop(src)
            elif src in alias:
                alias[n.output[0]] = alias[src]       # ReLU on non-negative data: identity
            else:
                raise unsupported(n, f"ReLU of {src!r}, which is not a convolution or activation")
        elif op in ("Dropout", "Identity"):
            src = n.input[0]
            if src in convs_out:
                convs_out[n.output[0]] = convs_out.pop(src)
            else:
                alias[n.output[0]] = alias[src]
        elif op == "Concat":
            if attr(n, "axis") != 1 or len(n.input) != 2:
                raise unsupported(n, "only a two-way concat on the channel axis (a Fire module)")
            a, b = (convs_out.get(i) for i in n.input)
            if not (a and b and a["relu"] and b["relu"] and a["src"] == b["src"]
                    and a["k"] == 1 and b["k"] == 3 and b["p"] == 1):
                raise unsupported(n, "concat is supported only as a Fire module's expand "
                                     "outputs (1x1 and 3x3 pad 1, both ReLU, same squeeze input)")
            sq_name = a["src"]
            sq = layers[-1] if layers and isinstance(layers[-1], _PendingSqueeze) else None
            if sq is None or sq.out != sq_name:
                raise unsupported(n, "the expand layers must read a 1x1 squeeze convolution")
            layers.pop()
            fire_name = f"fire{sum(isinstance(l, Fire) for l in layers) + 2}"
            fire = Fire(fire_name, sq.cin, sq.cout, a["w"].shape[0], b["w"].shape[0],
                        inputs=(sq.src,))
            weights[f"{fire_name}/squeeze1x1"] = (sq.w, sq.b)
            weights[f"{fire_name}/expand1x1"] = (a["w"], a["b"])
            weights[f"{fire_name}/expand3x3"] = (b["w"], b["b"])
            layers.append(fire)
            alias[n.output[0]] = fire_name
            shapes[fire_name] = (fire.out_channels,) + shapes[sq.src][1:]
            del convs_out[n.input[0]], convs_out[n.input[1]]
        elif op == "MaxPool":
            src = _resolve(n, convs_out, alias, layers, weights, shapes, fresh, unsupported)
            k = attr(n, "kernel_shape")
            s = attr(n, "strides", [1, 1])
            pads = attr(n, "pads", [0, 0, 0, 0])
            if k[0] != k[1] or s[0] != s[1] or any(pads):
                raise unsupported(n, "only square, unpadded max pooling")
            ci, hi, wi = shapes[src]
            if not attr(n, "ceil_mode", 0) and (pool_output_size(hi, k[0], s[0]) !=
                                                 (hi - k[0]) // s[0] + 1):
                raise unsupported(n, "floor-mode pooling whose size differs from ceil mode; "
                                     "the accelerator pools in ceil mode (Caffe)")
            name = fresh("pool")
            layers.append(MaxPool(name, k[0], s[0], inputs=(src,)))
            shapes[name] = layers[-1].output_shape(*shapes[src])
            alias[n.output[0]] = name
        elif op in ("GlobalAveragePool", "AveragePool"):
            src = _resolve(n, convs_out, alias, layers, weights, shapes, fresh, unsupported)
            if op == "AveragePool":
                k = attr(n, "kernel_shape")
                if list(k) != list(shapes[src][1:]):
                    raise unsupported(n, f"average pooling is supported only over the whole "
                                         f"{shapes[src][1:]} map (global), not kernel {k}")
            layers.append(GlobalAvgPool("pool_final", inputs=(src,)))
            alias[n.output[0]] = "pool_final"
            shapes["pool_final"] = (shapes[src][0], 1, 1)
        elif op in ("Flatten", "Reshape", "Squeeze", "Softmax"):
            if alias.get(n.input[0]) != "pool_final":
                raise unsupported(n, f"{op} is supported only after the final global pooling")
            alias[n.output[0]] = "pool_final"
        elif op == "Add":
            a = _resolve_input(n.input[0], n, convs_out, alias, layers, weights, shapes, fresh,
                               unsupported)
            b_info = convs_out.get(n.input[1])
            name = f"bypass{counter['add'] + 1}"
            counter["add"] += 1
            if b_info is not None and not b_info["relu"]:
                cw = b_info["w"]
                layers.append(Bypass(name, (a, b_info["src"]), in_channels=cw.shape[1],
                                     channels=cw.shape[0]))
                weights[f"{name}/conv1x1"] = (cw, b_info["b"])
                del convs_out[n.input[1]]
            else:
                b = _resolve_input(n.input[1], n, convs_out, alias, layers, weights, shapes,
                                   fresh, unsupported)
                layers.append(Bypass(name, (a, b)))
            shapes[name] = shapes[a]
            alias[n.output[0]] = name
        else:
            raise unsupported(n, f"operator {op} is not supported (the accelerator runs "
                                 "Conv, Relu, MaxPool, Concat, Add, Dropout, GlobalAveragePool)")
    if layers and isinstance(layers[-1], _PendingSqueeze):
        raise UnsupportedGraphError(f"{where}: graph ends in a convolution without pooling")
    if not layers or not isinstance(layers[-1], GlobalAvgPool):
        raise UnsupportedGraphError(f"{where}: the graph must end with global average pooling")
    # Name the convolutions as the rest of the project does.
    plain = [l for l in layers if isinstance(l, Conv)]
    renames = {}
    for i, l in enumerate(plain):
        new = "conv1" if i == 0 else ("conv_final" if i == len(plain) - 1 else f"conv{i + 1}")
        renames[l.name] = new
    nodes = []
    for l in layers:
        ins = tuple(renames.get(s, s) for s in l.inputs)
        if isinstance(l, Conv):
            weights[renames[l.name]] = weights.pop(l.name)
            l = Conv(renames[l.name], l.in_channels, l.out_channels, l.kernel, l.stride, l.pad,
                     l.relu, ins)
        else:
            import dataclasses
            l = dataclasses.replace(l, inputs=ins)
        nodes.append(l)
    # Inputs that simply name the previous node are implied.
    cleaned = []
    for i, l in enumerate(nodes):
        prev = "input" if i == 0 else nodes[i - 1].name
        if not isinstance(l, Bypass) and l.inputs == (prev,):
            import dataclasses
            l = dataclasses.replace(l, inputs=())
        cleaned.append(l)
    classes = shapes["pool_final"][0]
    name = Path(where).stem if not isinstance(source, onnx.ModelProto) else (g.name or "onnx")
    try:
        net = Network(name, input_spec, tuple(cleaned), classes).validate()
    except ValueError as e:
        raise UnsupportedGraphError(f"{where}: {e}") from e
    return Model.from_float(net, weights, where)


class _PendingSqueeze:
    """A ReLU'd 1x1 convolution that may turn out to be a Fire module's squeeze."""

    def __init__(self, out, src, w, b):
        self.out, self.src, self.w, self.b = out, src, w, b
        self.cin, self.cout = w.shape[1], w.shape[0]


def _resolve_input(onnx_name, n, convs_out, alias, layers, weights, shapes, fresh, unsupported):
    if onnx_name in alias:
        _flush_pending(layers, weights, shapes)
        return alias[onnx_name]
    info = convs_out.get(onnx_name)
    if info is None:
        raise unsupported(n, f"reads {onnx_name!r}, which no supported node produces")
    if not info["relu"]:
        raise unsupported(n, "a convolution without ReLU is supported only on a bypass path")
    return _materialise_conv(onnx_name, info, convs_out, alias, layers, weights, shapes, fresh)


def _resolve(n, convs_out, alias, layers, weights, shapes, fresh, unsupported):
    return _resolve_input(n.input[0], n, convs_out, alias, layers, weights, shapes, fresh,
                          unsupported)


def _flush_pending(layers, weights, shapes):
    if layers and isinstance(layers[-1], _PendingSqueeze):
        p = layers.pop()
        spec = Conv(p.out, p.cin, p.cout, 1, inputs=(p.src,))
        layers.append(spec)
        weights[p.out] = (p.w, p.b)
        shapes[p.out] = spec.output_shape(*shapes[p.src])


def _materialise_conv(onnx_name, info, convs_out, alias, layers, weights, shapes, fresh):
    _flush_pending(layers, weights, shapes)
    del convs_out[onnx_name]
    src = info["src"]
    name = fresh("conv")
    wt = info["w"]
    spec = Conv(name, wt.shape[1], wt.shape[0], info["k"], info["s"], info["p"], True, (src,))
    layers.append(spec)
    weights[name] = (wt, info["b"])
    shapes[name] = spec.output_shape(*shapes[src])
    alias[onnx_name] = name
    return name
