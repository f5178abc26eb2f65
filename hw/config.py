"""The one configuration of the accelerator: widths come from golden.numerics, sizes live here.

hw, sim and firmware import ``AcceleratorConfig``; nothing else writes a width or a size.
"""

from __future__ import annotations

from dataclasses import dataclass

from golden import numerics as nx

__all__ = ["AcceleratorConfig", "DEFAULT", "board_config", "mac_shape"]


def mac_shape(mac_units: int) -> tuple[int, int]:
    """(output lanes PO, input lanes PC) for a MAC count: 16 output lanes, the rest as input
    lanes. Every Fire layer of SqueezeNet v1.0/v1.1 has input and output channel counts that are
    multiples of 16, so with PO = 16 and PC <= 16 no lane idles on them."""
    if mac_units < 16 or mac_units & (mac_units - 1):
        raise ValueError(f"MAC units must be a power of two >= 16, not {mac_units}")
    po = 16
    return po, mac_units // po


@dataclass(frozen=True)
class AcceleratorConfig:
    mac_units: int = 64
    index_bits: int = 8                        # codebook index width in weight memory
    value_bits: int = nx.DEFAULT_VALUE_BITS    # codebook value width (signed)
    act_bits: int = nx.ACT_BITS
    acc_bits: int = nx.ACC_BITS
    mult_bits: int = nx.MULT_BITS
    fm_depth: int = 4096                       # words per feature-map bank
    squeeze_depth: int = 2048                  # words per bank of the Fire unit's squeeze buffer
    weight_depth: int = 1024                   # PO*PC-index words
    codebook_tables: int = 4                   # layers whose codebooks are resident at once
    bias_depth: int = 64                       # PO-wide bias words (output-channel groups)
    program_depth: int = 64                    # ops of the device's layer program
    dsp_primitives: bool = False               # multipliers as ECP5 MULT18X18D instances with
                                               # their own registers (synthesis; hw/dsp.py)
    link_timeout: int = 1 << 16                # idle cycles that end a half-received frame
                                               # (0.66 ms at 100 MHz: 200 bytes at 3 Mbaud)

    def __post_init__(self):
        if not nx.VALUE_BITS_MIN <= self.value_bits <= nx.VALUE_BITS_MAX:
            raise ValueError(f"value_bits must be {nx.VALUE_BITS_MIN}..{nx.VALUE_BITS_MAX}")
        if self.index_bits not in (4, 6, 8):
            raise ValueError("index_bits must be 4, 6 or 8")
        mac_shape(self.mac_units)

    @property
    def po(self) -> int:
        """Output-channel lanes."""
        return mac_shape(self.mac_units)[0]

    @property
    def pc(self) -> int:
        """Input-channel lanes (and feature-map banks)."""
        return mac_shape(self.mac_units)[1]

    @property
    def codebook_entries(self) -> int:
        return 1 << self.index_bits

    @property
    def product_bits(self) -> int:
        """A signed value times an unsigned activation."""
        return self.value_bits + self.act_bits

    @property
    def requant_product_bits(self) -> int:
        return self.acc_bits + self.mult_bits


DEFAULT = AcceleratorConfig()


def board_config(mac_units: int = 64) -> AcceleratorConfig:
    """The device that runs a whole SqueezeNet v1.0: every weight of the model resident (the
    dense 8-bit indices are 1.24 MB, so on a board they belong in SDRAM; the simulated board
    holds them on chip), feature maps up to conv1's 96 x 111 x 111 output beside the image,
    one codebook table per convolution."""
    return AcceleratorConfig(mac_units=mac_units, fm_depth=1 << 19, squeeze_depth=1 << 15,
                             weight_depth=1 << 15, codebook_tables=32, bias_depth=256,
                             program_depth=64)
