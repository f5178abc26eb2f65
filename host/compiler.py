"""Compile a quantized network into what the device holds: the layer program, codebooks,
biases, sparse weight streams and the feature-map plan (hw/runner.py, hw/device.py), every
layout from hw.layout and every cycle from hw.timing.

Feature maps live in the device's feature-map memories A and B, banked as hw.layout
describes. The input image sits at word 0 of A and stays there (a repeated RUN recomputes the
same result); each node's output goes to the memory its input is not in (B from word 0, A
after the image), so an op never overwrites what it reads. A Fire module's
squeeze output goes to the squeeze buffer, not to this memory.

Weights travel as sparse entries (hw.layout.weight_entries: golden.sparse's code over the
engine's weight order). The device's weight decoder expands them into its weight memory,
which the host clears first.

A configuration with ``maps_in_sdram`` (hw.config.board_config) gets a program of another
shape (host/sdram_plan.py): every map, weight, codebook and bias in the SDRAM, and every
layer computed band by band through the on-chip tiles with LOAD and STORE ops.
"""

from __future__ import annotations

import numpy as np

from golden.network import Bypass, Conv, Fire, GlobalAvgPool, MaxPool
from golden.quantize import QuantizedModel
from hw.config import AcceleratorConfig
from hw.layout import (SUM_WORDS, FieldRangeError, LayerDescriptor, OpKind, describe,
                       encode_op, groups, weight_entries, weight_lanes)

from .program import DeviceProgram, Op, UnsupportedNetworkError, WeightStream, check_pooling

__all__ = ["DeviceProgram", "compile_network", "UnsupportedNetworkError", "Op", "WeightStream"]


def compile_network(q: QuantizedModel, cfg: AcceleratorConfig) -> DeviceProgram:
    if cfg.maps_in_sdram:
        from .sdram_plan import compile_sdram
        return compile_sdram(q, cfg)
    if not cfg.codebooks:
        what = ("zero-skipping weights" if cfg.zero_skipping
                else "weight words of values (no codebook tables)")
        raise UnsupportedNetworkError(
            f"{what} load from the SDRAM: compile for a configuration with maps_in_sdram "
            "(hw.config.board_config)")
    net = q.network
    shapes = net.shapes()
    lanes = cfg.lanes
    depth = cfg.fm_depth
    for name, (c, h, w) in shapes.items():
        if max(h, w) > cfg.max_side or c > cfg.max_channels:
            raise UnsupportedNetworkError(
                f"{name}: a {c} x {h} x {w} feature map; the device takes at most "
                f"{cfg.max_channels} channels and {cfg.max_side} pixels a side (hw/config.py)")
    words_of = {name: groups(c, cfg.pc) * h * w for name, (c, h, w) in shapes.items()}
    for node in net.nodes:           # a global sum writes SUM_WORDS words a channel group
        if isinstance(node, GlobalAvgPool):
            words_of[node.name] = groups(shapes[node.name][0], cfg.pc) * SUM_WORDS
    place = {"input": 0}
    side = {"input": "A"}
    low_start = words_of["input"]
    ops, codebooks, weights = [], [], []
    biases = []
    weight_base = bias_base = table = 0
    node_ops: dict[str, list[int]] = {}

    def allocate(node_name: str, src: str) -> int:
        """The output goes to the memory its input is not in (a pass reads one of A and B and
        writes the other): B from word 0, or A right after the image, which stays."""
        n = words_of[node_name]
        if side[src] == "B":
            base, side[node_name], room = low_start, "A", depth - low_start
        else:
            base, side[node_name], room = 0, "B", depth
        if n > room:
            raise UnsupportedNetworkError(
                f"{node_name}: its output feature map needs {n} words per bank"
                + (f" beside the image's {low_start}" if side[node_name] == "A" else "")
                + f"; the device has {depth}")
        place[node_name] = base
        return base

    def conv_op(name, qc, h, w, in_base, out_base, src_sq=False, dst_sq=False, channel_base=0):
        nonlocal weight_base, bias_base, table
        if not qc.spec.relu:
            raise UnsupportedNetworkError(f"{name}: a convolution without ReLU (its int32 "
                                          "accumulator output) has no device op")
        desc = describe(qc.spec, h, w, qc.mult, qc.shift, weight_base=weight_base,
                        codebook_table=table, bias_base=bias_base, out_channel_base=channel_base)
        try:
            idx = weight_lanes(qc.dense_indices, cfg, name)
        except FieldRangeError as e:
            raise UnsupportedNetworkError(str(e)) from e
        words = len(idx)
        weights.append(WeightStream(name, weight_base * lanes, weight_entries(idx)))
        codebooks.append((table * cfg.codebook_entries, np.asarray(qc.codebook, np.int64)))
        og = groups(qc.spec.out_channels, cfg.po)
        b = np.zeros(og * cfg.po, np.int64)
        b[:qc.spec.out_channels] = qc.bias
        biases.append(b)
        ops.append(Op(name, OpKind.CONV, {"src_squeeze": int(src_sq), "dst_squeeze": int(dst_sq),
                                          "conv": desc.fields(cfg, in_base, out_base)},
                      desc))
        weight_base += words
        bias_base += og
        table += 1
        return desc

    for i, node in enumerate(net.nodes):
        srcs = net.node_inputs(i)
        c, h, w = shapes[srcs[0]]
        first = len(ops)
        if isinstance(node, Bypass):
            raise UnsupportedNetworkError(
                f"{node.name}: the all-on-chip configuration has no bypass add (its Fire output "
                "and input sit in different memories); compile for a configuration with the "
                "maps in the SDRAM (hw.config.board_config), or run it with --device golden")
        out = allocate(node.name, srcs[0])
        in_base = place[srcs[0]]
        if isinstance(node, Conv):
            conv_op(node.name, q.convs[node.convs()[0].name], h, w, in_base, out)
        elif isinstance(node, Fire):
            sq, e1, e3 = (q.convs[s.name] for s in node.convs())
            if e1.spec.out_channels % cfg.pc:
                raise UnsupportedNetworkError(f"{node.name}: expand1x1 has "
                                              f"{e1.spec.out_channels} channels; the concat "
                                              f"needs a multiple of {cfg.pc}")
            sq_words = groups(sq.spec.out_channels, cfg.po) * cfg.po // cfg.pc * h * w
            if sq_words > cfg.squeeze_depth:
                raise UnsupportedNetworkError(f"{node.name}: the squeeze output needs {sq_words} "
                                              f"words per bank; the device has "
                                              f"{cfg.squeeze_depth}")
            conv_op(f"{node.name}/squeeze", sq, h, w, in_base, 0, dst_sq=True)
            conv_op(f"{node.name}/expand1x1", e1, h, w, 0, out, src_sq=True)
            conv_op(f"{node.name}/expand3x3", e3, h, w, 0, out, src_sq=True,
                    channel_base=e1.spec.out_channels)
        elif isinstance(node, MaxPool):
            check_pooling(node)
            _, oh, ow = shapes[node.name]
            desc = LayerDescriptor(c, c, h, w, oh, ow, node.kernel, 2, 0, 0, 0)
            ops.append(Op(node.name, OpKind.MAXPOOL, {
                "in_base": in_base, "out_base": out, "in_words": words_of[srcs[0]],
                "out_words": words_of[node.name], "conv": desc.fields(cfg)}, desc))
        elif isinstance(node, GlobalAvgPool):
            desc = LayerDescriptor(c, c, h, w, 1, 1, 1, 1, 0, 0, 0)
            ops.append(Op(node.name, OpKind.GLOBAL_SUM, {
                "in_base": in_base, "out_base": out, "in_words": words_of[srcs[0]],
                "out_words": words_of[node.name], "unit": {"frame_pixels": h * w},
                "conv": desc.fields(cfg)}, desc))
        else:
            raise UnsupportedNetworkError(f"{node.name}: {type(node).__name__} has no device op")
        for op in ops[first:]:          # read B and write A when the input is in B
            op.fields["swap"] = int(side[srcs[0]] == "B")
        node_ops[node.name] = list(range(first, len(ops)))

    if not isinstance(net.nodes[-1], GlobalAvgPool):
        raise UnsupportedNetworkError("the device reads its result from a global average pool; "
                                      f"{net.output_node} is a {type(net.nodes[-1]).__name__}")
    _check(cfg, len(ops) + 1, table, bias_base, weight_base)
    try:
        words = [encode_op({"kind": op.kind, **op.fields}, cfg, op.name) for op in ops]
    except FieldRangeError as e:
        raise UnsupportedNetworkError(str(e)) from e
    words.append(encode_op({"kind": OpKind.END}, cfg, "END"))
    return DeviceProgram(cfg, q.index_bits, ops, words, codebooks, np.concatenate(biases),
                         weights, weight_base, shapes["input"], 0,
                         place[net.output_node] + (depth if side[net.output_node] == "B" else 0),
                         shapes[net.output_node][0], net.output_node, node_ops)


def _check(cfg, ops, tables, bias_words, weight_words):
    for what, need, have in (("program ops", ops, cfg.program_depth),
                             ("codebook tables", tables, cfg.codebook_tables),
                             ("bias words", bias_words, cfg.bias_depth),
                             ("weight words", weight_words, cfg.weight_depth)):
        if need > have:
            raise UnsupportedNetworkError(f"the network needs {need} {what}; the device has "
                                          f"{have} (hw.config.board_config)")
