"""What a bench writes into a layer or Fire-unit top level before it starts: the input feature
map, the parameters and the descriptors, laid out by hw.layout, as groups of port writes that
both harnesses drive (the Amaranth simulator's in tests/hw_harness.py, cocotb's in sim/tb.py).

A write group is ``(enable, enable_value, rows, fields)``: one row per clock, each row's values
on ``fields``, ``enable`` held at ``enable_value`` meanwhile. Port names are Amaranth's
(``weight_wr.addr``); the generated Verilog spells the dot as ``__``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.quantize import QConv
from hw.config import AcceleratorConfig
from hw.layout import (LayerDescriptor, dense_weight_lanes, describe, descriptor_layout,
                       feature_words, groups, pack_struct, skip_word_values, skip_words)

__all__ = ["LayerLoad", "FireLoad", "layer_load", "band_load", "fire_load", "buffer_words",
           "check_fits"]


@dataclass
class LayerLoad:
    """Everything the host writes before starting one layer on a ConvLayer (or one Fire module
    on a FireUnit: three descriptors)."""

    descriptors: list[LayerDescriptor]
    writes: list[tuple[str, int, list, tuple[str, ...]]]
    out_shape: tuple[int, int, int]

    @property
    def descriptor(self) -> LayerDescriptor:
        return self.descriptors[0]

    def descriptor_words(self, cfg: AcceleratorConfig) -> list[int]:
        layout = descriptor_layout(cfg)
        return [pack_struct(layout, d.fields(cfg), "bench layer") for d in self.descriptors]


FireLoad = LayerLoad


def _feature_map_writes(x: np.ndarray, cfg: AcceleratorConfig):
    words = feature_words(x, cfg)               # zeros too: no stale data in padded channels
    rows = [(t, a, int(words[a, t])) for t in range(cfg.pc) for a in range(len(words))]
    return ("host_wr_en", 1, rows, ("host_wr_bank", "host_wr_addr", "host_wr_data"))


def _parameter_writes(qc: QConv, cfg: AcceleratorConfig, weight_base: int = 0, table: int = 0,
                      bias_base: int = 0):
    """(weights, codebook, biases) rows that put one layer's parameters at the given bases
    (zero-skipping: the layer is one chunk, hw.layout.skip_words; no codebook: the words hold
    the values)."""
    if cfg.zero_skipping:
        words = skip_word_values(skip_words(qc.weights, cfg, qc.name), cfg)
        weights = [(weight_base + a, v) for a, v in enumerate(words)]
    else:                       # indices, or without codebook tables values (two's complement)
        lanes = dense_weight_lanes(qc, cfg, qc.name)
        bits = cfg.weight_bits
        weights = [(weight_base + a,
                    int(sum((int(v) & ((1 << bits) - 1)) << (bits * k)
                            for k, v in enumerate(row) if v)))
                   for a, row in enumerate(lanes)]
    entries = cfg.codebook_entries
    codebook = ([(table * entries + i, int(v)) for i, v in enumerate(qc.codebook[:entries])]
                if cfg.codebooks else [])
    bias = np.zeros(groups(qc.spec.out_channels, cfg.po) * cfg.po, np.int64)
    bias[:qc.spec.out_channels] = qc.bias
    biases = [(bias_base * cfg.po + o, int(b)) for o, b in enumerate(bias)]
    return weights, codebook, biases


def _groups_of(weights, codebook, biases, cfg):
    granules = cfg.lanes + cfg.zero_skipping
    return [("weight_wr.en", (1 << granules) - 1, weights, ("weight_wr.addr", "weight_wr.data")),
            ("codebook_wr.en", 1, codebook, ("codebook_wr.addr", "codebook_wr.data")),
            ("bias_wr.en", 1, biases, ("bias_wr.addr", "bias_wr.data"))]


def buffer_words(desc: LayerDescriptor, cfg: AcceleratorConfig) -> tuple[int, int, int]:
    """(input words per bank, output words per bank, weight words) a layer occupies. The last
    output-channel group is written whole (PO channels), so it counts in full."""
    cg, og = groups(desc.in_channels, cfg.pc), groups(desc.out_channels, cfg.po)
    out_groups = groups(desc.out_channel_base, cfg.pc) + og * cfg.po // cfg.pc
    return (cg * desc.buffer_rows * desc.in_w, out_groups * desc.out_h * desc.out_w,
            desc.pixel_words or og * cg * desc.kernel * desc.kernel_w)


def check_fits(needs, cfg: AcceleratorConfig, name: str) -> None:
    for what, need, have in needs:
        if need > have:
            raise ValueError(f"{name}: {what} needs {need} words per bank, the configuration has "
                             f"{have}; use a larger AcceleratorConfig or a smaller crop")


def layer_load(qc: QConv, x: np.ndarray, cfg: AcceleratorConfig, table: int = 0) -> LayerLoad:
    """The writes that set up ``qc`` on input ``x`` (uint8 C x H x W)."""
    c, h, w = x.shape
    desc = describe(qc.spec, h, w, qc.mult, qc.shift, codebook_table=table)
    if cfg.zero_skipping:
        from dataclasses import replace
        words = skip_words(qc.weights, cfg, qc.name).words
        desc = replace(desc, pixel_words=words)
    fin, fout, wts = buffer_words(desc, cfg)
    check_fits((("input feature map", fin, cfg.fm_depth), ("output feature map", fout, cfg.fm_depth),
                ("weights", wts, cfg.weight_depth)), cfg, qc.name)
    params = _parameter_writes(qc, cfg, table=table)
    return LayerLoad([desc], [_feature_map_writes(x, cfg), *_groups_of(*params, cfg)],
                     (qc.spec.out_channels, desc.out_h, desc.out_w))


def band_load(qc: QConv, x: np.ndarray, cfg: AcceleratorConfig, out_row0: int,
              out_rows: int) -> LayerLoad:
    """The writes that run output rows ``out_row0 .. out_row0 + out_rows - 1`` of ``qc`` on
    ``x`` from an input buffer holding only the input rows they read (a row band)."""
    c, h, w = x.shape
    desc = describe(qc.spec, h, w, qc.mult, qc.shift).band(out_row0, out_rows)
    row0, rows = desc.band_input_rows
    fin, fout, wts = buffer_words(desc, cfg)
    check_fits((("input band", fin, cfg.fm_depth), ("output band", fout, cfg.fm_depth),
                ("weights", wts, cfg.weight_depth)), cfg, qc.name)
    params = _parameter_writes(qc, cfg)
    return LayerLoad([desc], [_feature_map_writes(x[:, row0:row0 + rows], cfg),
                              *_groups_of(*params, cfg)],
                     (qc.spec.out_channels, out_rows, desc.out_w))


def fire_load(squeeze: QConv, expand1x1: QConv, expand3x3: QConv, x: np.ndarray,
              cfg: AcceleratorConfig, name: str = "fire") -> LayerLoad:
    """The writes that set up one Fire module on input ``x``: the three layers' weights one
    after another, codebook tables 0, 1, 2, biases one after another, and the descriptors
    (the expand3x3 output starts at channel E1, which must be a multiple of PC)."""
    c, h, w = x.shape
    e1 = expand1x1.spec.out_channels
    if e1 % cfg.pc:
        raise ValueError(f"{name}: expand1x1 has {e1} channels; the concat needs a multiple of "
                         f"{cfg.pc} (the input lanes of {cfg.mac_units} MAC units)")
    descs, weights, codebook, biases = [], [], [], []
    weight_base = bias_base = 0
    for table, (qc, channel_base) in enumerate(zip((squeeze, expand1x1, expand3x3), (0, 0, e1))):
        descs.append(describe(qc.spec, h, w, qc.mult, qc.shift, weight_base=weight_base,
                              codebook_table=table, bias_base=bias_base,
                              out_channel_base=channel_base))
        wts, cbs, bs = _parameter_writes(qc, cfg, weight_base, table, bias_base)
        weights, codebook, biases = weights + wts, codebook + cbs, biases + bs
        weight_base += len(wts)
        bias_base += groups(qc.spec.out_channels, cfg.po)
    sq, d1, d3 = descs
    check_fits((("input feature map", buffer_words(sq, cfg)[0], cfg.fm_depth),
                ("squeeze buffer", buffer_words(sq, cfg)[1], cfg.squeeze_depth),
                ("output feature map", max(buffer_words(d1, cfg)[1], buffer_words(d3, cfg)[1]),
                 cfg.fm_depth),
                ("weights", weight_base, cfg.weight_depth), ("biases", bias_base, cfg.bias_depth),
                ("codebook tables", 3, cfg.codebook_tables)), cfg, name)
    load = LayerLoad(descs, [_feature_map_writes(x, cfg),
                             *_groups_of(weights, codebook, biases, cfg)],
                     (e1 + expand3x3.spec.out_channels, h, w))
    load.writes.append(("desc_wr_en", 1, list(enumerate(load.descriptor_words(cfg))),
                        ("desc_wr_addr", "desc_wr_data")))
    return load
