"""Host-side layout of layers for the engine: weight words, banked feature maps, descriptors.

The single place that knows the memory layouts documented in hw/conv_engine.py; the tests,
the cocotb benches and the driver all pack and unpack through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.quantize import QConv

from .config import AcceleratorConfig

__all__ = ["LayerDescriptor", "describe", "pack_weights", "weight_lanes",
           "pack_feature_map", "unpack_feature_map", "ideal_cycles", "expected_cycles", "layer_load", "fire_load",
           "pack_descriptor", "fire_expected_cycles"]


@dataclass(frozen=True)
class LayerDescriptor:
    """What the engine's descriptor ports hold for one convolution."""

    in_channels: int
    out_channels: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel: int
    stride: int
    pad: int
    mult: int
    shift: int
    weight_base: int = 0
    codebook_table: int = 0
    bias_base: int = 0
    out_channel_base: int = 0

    def ports(self, cfg: AcceleratorConfig) -> dict[str, int]:
        """Descriptor port values, including the increments the engine adds instead of
        multiplying (hw/conv_engine.py, S0)."""
        k, w, plane = self.kernel, self.in_w, self.in_h * self.in_w
        cg, og = _groups(self.in_channels, cfg.pc), _groups(self.out_channels, cfg.po)
        out_plane = self.out_h * self.out_w
        log_pc = (cfg.pc - 1).bit_length()
        return {**self.__dict__,
                "cgroups": cg, "ogroups": og, "steps": cg * k * k,
                "pixel_origin": -self.pad * (w + 1),
                "step_row": w - (k - 1), "step_group": plane - (k - 1) * w - (k - 1),
                "step_oy": self.stride * w, "out_plane": out_plane,
                "out_base_word": (self.out_channel_base >> log_pc) * out_plane,
                "out_group_step": cfg.po // cfg.pc * out_plane}


def describe(qc: QConv, in_h: int, in_w: int, **bases) -> LayerDescriptor:
    s = qc.spec
    oh = (in_h + 2 * s.pad - s.kernel) // s.stride + 1
    ow = (in_w + 2 * s.pad - s.kernel) // s.stride + 1
    return LayerDescriptor(s.in_channels, s.out_channels, in_h, in_w, oh, ow, s.kernel, s.stride,
                           s.pad, qc.mult, qc.shift, **bases)


def _groups(n: int, size: int) -> int:
    return -(-n // size)


def weight_lanes(qc: QConv, cfg: AcceleratorConfig) -> np.ndarray:
    """The layer's indices in engine order, (words, PO*PC): row ((og*CG + cg)*k + i)*k + j,
    lane po*PC + t holds the index of output og*PO+po, input cg*PC+t, tap (i, j); channels
    beyond the layer's count hold 0."""
    s = qc.spec
    po, pc, ib = cfg.po, cfg.pc, cfg.index_bits
    og_n, cg_n = _groups(s.out_channels, po), _groups(s.in_channels, pc)
    idx = np.zeros((og_n * po, cg_n * pc, s.kernel, s.kernel), np.int64)
    idx[:s.out_channels, :s.in_channels] = qc.indices
    if idx.max(initial=0) >= 1 << ib:
        raise ValueError(f"layer {qc.name}: indices need more than {ib} bits")
    # (og, po, cg, t, i, j) -> (og, cg, i, j, po, t)
    blocks = idx.reshape(og_n, po, cg_n, pc, s.kernel, s.kernel).transpose(0, 2, 4, 5, 1, 3)
    return blocks.reshape(-1, po * pc)


def pack_weights(qc: QConv, cfg: AcceleratorConfig) -> list[int]:
    """Weight words: ``weight_lanes`` rows, lane l at bit offset l * index_bits."""
    shifts = np.arange(cfg.po * cfg.pc, dtype=object) * cfg.index_bits
    return [int(sum(int(v) << int(sh) for v, sh in zip(row, shifts) if v))
            for row in weight_lanes(qc, cfg)]


def pack_feature_map(x: np.ndarray, cfg: AcceleratorConfig) -> list[np.ndarray]:
    """(C, H, W) uint8 -> PC banks; channel c in bank c % PC at word (c // PC) * H * W + ..."""
    c, h, w = x.shape
    groups = _groups(c, cfg.pc)
    padded = np.zeros((groups * cfg.pc, h, w), np.uint8)
    padded[:c] = x
    banks = padded.reshape(groups, cfg.pc, h * w).transpose(1, 0, 2).reshape(cfg.pc, -1)
    return [banks[t] for t in range(cfg.pc)]


def unpack_feature_map(banks: list[np.ndarray], shape: tuple[int, int, int],
                       cfg: AcceleratorConfig) -> np.ndarray:
    c, h, w = shape
    groups = _groups(c, cfg.pc)
    stacked = np.stack([np.asarray(b[:groups * h * w]) for b in banks])
    full = stacked.reshape(cfg.pc, groups, h * w).transpose(1, 0, 2).reshape(groups * cfg.pc, h, w)
    return full[:c].astype(np.uint8)


def buffer_words(desc: LayerDescriptor, cfg: AcceleratorConfig) -> tuple[int, int, int]:
    """(input words per bank, output words per bank, weight words) a layer occupies. The last
    output-channel group is written whole (PO channels), so it counts in full."""
    cg, og = _groups(desc.in_channels, cfg.pc), _groups(desc.out_channels, cfg.po)
    out_groups = _groups(desc.out_channel_base, cfg.pc) + og * cfg.po // cfg.pc
    return (cg * desc.in_h * desc.in_w, out_groups * desc.out_h * desc.out_w,
            og * cg * desc.kernel ** 2)


def check_fits(desc: LayerDescriptor, cfg: AcceleratorConfig, name: str = "layer") -> None:
    fin, fout, wts = buffer_words(desc, cfg)
    for what, need, have in (("input feature map", fin, cfg.fm_depth),
                             ("output feature map", fout, cfg.fm_depth),
                             ("weights", wts, cfg.weight_depth)):
        if need > have:
            raise ValueError(f"{name}: {what} needs {need} words per bank, the configuration has "
                             f"{have}; use a larger AcceleratorConfig or a smaller crop")


def ideal_cycles(desc: LayerDescriptor, cfg: AcceleratorConfig) -> float:
    """Multiply-accumulates / MAC units: the cycles of a perfectly busy array."""
    macs = (desc.out_channels * desc.in_channels * desc.kernel ** 2 * desc.out_h * desc.out_w)
    return macs / cfg.mac_units


def expected_cycles(desc: LayerDescriptor, cfg: AcceleratorConfig) -> int:
    """The engine's own cycle count for a layer (the cycle model, checked against RTL)."""
    from .conv_engine import LATENCY
    steps = _groups(desc.in_channels, cfg.pc) * desc.kernel ** 2
    per_pixel = max(steps, cfg.po // cfg.pc)
    pixels = desc.out_h * desc.out_w * _groups(desc.out_channels, cfg.po)
    # The last pixel owes no idle cycles; its sums then pass S1..S4, drain, and R1..R2.
    return (pixels - 1) * per_pixel + steps + cfg.po // cfg.pc + LATENCY


@dataclass
class LayerLoad:
    """Everything the host writes before starting one layer on a ConvLayer."""

    descriptor: LayerDescriptor
    fm_writes: list[tuple[int, int, int]]          # (bank, word, byte)
    weight_writes: list[tuple[int, int]]           # (word address, word)
    codebook_writes: list[tuple[int, int]]         # (address, signed value)
    bias_writes: list[tuple[int, int, int]]        # (word, lane, signed value)
    out_shape: tuple[int, int, int]


def _parameter_writes(qc: QConv, cfg: AcceleratorConfig, weight_base: int = 0, table: int = 0,
                      bias_base: int = 0):
    """(weight, codebook, bias) writes that put one layer's parameters at the given bases."""
    weights = [(weight_base + a, wd) for a, wd in enumerate(pack_weights(qc, cfg))]
    entries = cfg.codebook_entries
    cb = [(table * entries + i, int(v)) for i, v in enumerate(qc.codebook[:entries])]
    og_n = _groups(qc.spec.out_channels, cfg.po)
    bias = np.zeros(og_n * cfg.po, np.int64)
    bias[:qc.spec.out_channels] = qc.bias
    bias_w = [(bias_base + o // cfg.po, o % cfg.po, int(bias[o])) for o in range(len(bias))]
    return weights, cb, bias_w


def _feature_map_writes(x: np.ndarray, cfg: AcceleratorConfig) -> list[tuple[int, int, int]]:
    fm = []
    for bank, words in enumerate(pack_feature_map(x, cfg)):
        fm += [(bank, a, int(v)) for a, v in enumerate(words)]    # zeros too: no stale data
    return fm


def layer_load(qc: QConv, x: np.ndarray, cfg: AcceleratorConfig, table: int = 0) -> LayerLoad:
    """The writes that set up ``qc`` on input ``x`` (uint8 C x H x W)."""
    c, h, w = x.shape
    desc = describe(qc, h, w, codebook_table=table)
    check_fits(desc, cfg, qc.name)
    weights, cb, bias_w = _parameter_writes(qc, cfg, table=table)
    return LayerLoad(desc, _feature_map_writes(x, cfg), weights, cb, bias_w,
                     (qc.spec.out_channels, desc.out_h, desc.out_w))


# ---- the Fire unit (hw/fire.py) -------------------------------------------------------------

def pack_descriptor(desc: LayerDescriptor, cfg: AcceleratorConfig) -> int:
    """A descriptor as the integer the Fire unit's ``desc_wr_data`` takes: the engine's
    descriptor ports packed as hw.fire.descriptor_layout."""
    ports = desc.ports(cfg)
    layout = _descriptor_layout(cfg)
    return layout.const({k: ports[k] for k in layout.members}).as_bits()


_LAYOUTS: dict = {}


def _descriptor_layout(cfg: AcceleratorConfig):
    if cfg not in _LAYOUTS:
        from .fire import descriptor_layout
        _LAYOUTS[cfg] = descriptor_layout(cfg)
    return _LAYOUTS[cfg]


@dataclass
class FireLoad:
    """Everything the host writes before starting one Fire module on a FireUnit."""

    descriptors: list[LayerDescriptor]             # squeeze, expand1x1, expand3x3
    fm_writes: list[tuple[int, int, int]]
    weight_writes: list[tuple[int, int]]
    codebook_writes: list[tuple[int, int]]
    bias_writes: list[tuple[int, int, int]]
    out_shape: tuple[int, int, int]

    def descriptor_words(self, cfg: AcceleratorConfig) -> list[tuple[int, int]]:
        return [(i, pack_descriptor(d, cfg)) for i, d in enumerate(self.descriptors)]


def fire_load(squeeze: QConv, expand1x1: QConv, expand3x3: QConv, x: np.ndarray,
              cfg: AcceleratorConfig, name: str = "fire") -> FireLoad:
    """The writes that set up one Fire module on input ``x``: the three layers' weights one
    after another, codebook tables 0, 1, 2, biases one after another, and the descriptors
    (the expand3x3 output starts at channel E1, which must be a multiple of PC)."""
    c, h, w = x.shape
    e1 = expand1x1.spec.out_channels
    if e1 % cfg.pc:
        raise ValueError(f"{name}: expand1x1 has {e1} channels; the concat needs a multiple of "
                         f"{cfg.pc} (the input lanes of {cfg.mac_units} MAC units)")
    layers = (squeeze, expand1x1, expand3x3)
    descs, weights, cb, bias_w = [], [], [], []
    weight_base = bias_base = 0
    for table, (qc, channel_base) in enumerate(zip(layers, (0, 0, e1))):
        descs.append(describe(qc, h, w, weight_base=weight_base, codebook_table=table,
                              bias_base=bias_base, out_channel_base=channel_base))
        wts, cbs, bs = _parameter_writes(qc, cfg, weight_base, table, bias_base)
        weights, cb, bias_w = weights + wts, cb + cbs, bias_w + bs
        weight_base += len(wts)
        bias_base += _groups(qc.spec.out_channels, cfg.po)
    _check_fire_fits(descs, cfg, name, weight_base, bias_base)
    out_c = e1 + expand3x3.spec.out_channels
    return FireLoad(descs, _feature_map_writes(x, cfg), weights, cb, bias_w, (out_c, h, w))


def _check_fire_fits(descs, cfg: AcceleratorConfig, name: str, weight_words: int,
                     bias_words: int) -> None:
    sq, e1, e3 = descs
    needs = (("input feature map", buffer_words(sq, cfg)[0], cfg.fm_depth),
             ("squeeze buffer", buffer_words(sq, cfg)[1], cfg.squeeze_depth),
             ("output feature map", max(buffer_words(e1, cfg)[1], buffer_words(e3, cfg)[1]),
              cfg.fm_depth),
             ("weights", weight_words, cfg.weight_depth),
             ("biases", bias_words, cfg.bias_depth),
             ("codebook tables", 3, cfg.codebook_tables))
    for what, need, have in needs:
        if need > have:
            raise ValueError(f"{name}: {what} needs {need} words per bank, the configuration "
                             f"has {have}; use a larger AcceleratorConfig or a smaller crop")


def fire_expected_cycles(descs, cfg: AcceleratorConfig) -> int:
    """The Fire unit's cycle count: three engine runs plus the sequencer's per-pass cycles."""
    from .fire import PASS_OVERHEAD
    return sum(expected_cycles(d, cfg) + PASS_OVERHEAD for d in descs)


# ---- a whole network ----------------------------------------------------------------------

def network_cycles(network, cfg: AcceleratorConfig) -> dict[str, int]:
    """Cycles of every convolution unit of ``network`` on the hardware (the cycle models
    above: a Fire module as one Fire unit run, other convolutions as single engine runs),
    keyed by node name. Pooling and the bypass add are not hardware units yet and are not
    counted. The requantisation constants do not change cycles, so none are needed."""
    from golden.network import Bypass, Conv, Fire
    shapes = network.shapes()
    cycles = {}
    for i, node in enumerate(network.nodes):
        srcs = network.node_inputs(i)
        c, h, w = shapes[srcs[-1] if isinstance(node, Bypass) else srcs[0]]
        descs = [_spec_descriptor(spec, h, w) for spec in node.convs()]
        if isinstance(node, Fire):
            cycles[node.name] = fire_expected_cycles(descs, cfg)
        elif isinstance(node, (Conv, Bypass)) and descs:
            cycles[node.name] = sum(expected_cycles(d, cfg) for d in descs)
    return cycles


def _spec_descriptor(spec, h: int, w: int) -> LayerDescriptor:
    oh = (h + 2 * spec.pad - spec.kernel) // spec.stride + 1
    ow = (w + 2 * spec.pad - spec.kernel) // spec.stride + 1
    return LayerDescriptor(spec.in_channels, spec.out_channels, h, w, oh, ow, spec.kernel,
                           spec.stride, spec.pad, mult=1 << 15, shift=16)
