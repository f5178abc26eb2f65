"""The one configuration of the accelerator: arithmetic widths come from golden.numerics, every
size and every field width of the hardware follows from ``AcceleratorConfig``.

hw, sim and host import it; nothing else writes a width or a size. A field width is a property
here (``side_bits``, ``fm_addr_bits``, ...), so the descriptor and op layouts (hw/layout.py),
the engine's counters and the compiler's range checks can never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from golden import numerics as nx

__all__ = ["AcceleratorConfig", "DEFAULT", "BOARD_CLOCK_MHZ", "board_config", "chip_config",
           "bringup_config", "mac_shape", "address_bits"]


def mac_shape(mac_units: int, output_lanes: int = 16) -> tuple[int, int]:
    """(output lanes PO, input lanes PC) for a MAC count: ``output_lanes`` (16 by default), the
    rest as input lanes. Every Fire layer of SqueezeNet v1.0/v1.1 has input and output channel
    counts that are multiples of 16, so with PO = 16 and PC <= 16 no lane idles on them; PO = 32
    keeps conv1's 3 channels on 4 input lanes at 128 units (16 x 8 would use 3 of 8)."""
    if mac_units < 16 or mac_units & (mac_units - 1):
        raise ValueError(f"MAC units must be a power of two >= 16, not {mac_units}")
    if output_lanes not in (16, 32) or output_lanes > mac_units:
        raise ValueError(f"output lanes must be 16 or 32 and at most the MAC units "
                         f"({mac_units}), not {output_lanes}")
    return output_lanes, mac_units // output_lanes


def address_bits(depth: int) -> int:
    """Address bits of a memory of ``depth`` words (at least 1)."""
    return max(1, (depth - 1).bit_length())


# Memories whose depth must be a power of two: every address into them is a counter or an
# offset sum that the hardware truncates to the memory's address bits, which is the same as
# wrapping modulo the depth only when the depth is a power of two (the golden device wraps).
_POWER_OF_TWO = ("fm_depth", "fm_b_depth", "squeeze_depth", "weight_depth", "codebook_tables",
                 "bias_depth",
                 "program_depth")


@dataclass(frozen=True)
class AcceleratorConfig:
    mac_units: int = 64
    output_lanes: int = 16                     # PO (hw.config.mac_shape); PC the rest
    index_bits: int = 8                        # codebook index width in weight memory
    value_bits: int = nx.DEFAULT_VALUE_BITS    # codebook value width (signed)
    act_bits: int = nx.ACT_BITS
    acc_bits: int = nx.ACC_BITS
    mult_bits: int = nx.MULT_BITS
    fm_depth: int = 4096                       # words per bank of feature-map memory A
    fm_out_depth: int = 0                      # words per bank of memory B (0: fm_depth)
    squeeze_depth: int = 2048                  # words per bank of the Fire unit's squeeze buffer
    weight_depth: int = 1024                   # PO*PC-index words
    # Layers whose codebooks are resident at once, in a copy per multiplier; 0: none, the dense
    # engine's weight words hold the values themselves (``weight_bits`` each: the host looks
    # the codebook up), so no block RAM goes to codebook copies.
    codebook_tables: int = 4
    bias_depth: int = 64                       # PO-wide bias words (output-channel groups)
    program_depth: int = 64                    # ops of the device's layer program
    # The largest layer the descriptor can describe (they set the descriptor's field widths).
    max_channels: int = 4095
    max_side: int = 1023                       # feature-map height and width
    max_kernel: int = 7                        # rows or columns (SqueezeNet's conv1 is 7x7)
    max_stride: int = 7
    max_pad: int = 3
    dsp_primitives: bool = False               # multipliers as ECP5 MULT18X18D instances with
                                               # their own registers (synthesis; hw/dsp.py)
    link_timeout: int = 1 << 16                # idle cycles that end a half-received frame
                                               # (0.87 ms at 75 MHz: 262 bytes at 3 Mbaud)
    clock_mhz: float = 75.0                    # the device's clock: the SDRAM's timings follow
                                               # it, and 75 MHz is 3 Mbaud at 25 cycles a bit
    # Where a compiled network keeps its feature maps and weights: False, in the on-chip
    # memories above (a map must fit ``fm_depth``); True, in the SDRAM, with the on-chip
    # memories as tiles that the program's LOAD and STORE ops fill and drain band by band.
    maps_in_sdram: bool = False
    # The convolution engine's weight format: False, dense (every weight, PO*PC indices a
    # word); True, zero-skipping (hw.layout.skip_words: each lane's non-zero weights of a step
    # packed PC to a word, with their input lane and row; a run computes one chunk of up to
    # SKIP_ROWS output groups). The engine's datapath; the device does not run it yet.
    zero_skipping: bool = False

    def __post_init__(self):
        if not nx.VALUE_BITS_MIN <= self.value_bits <= nx.VALUE_BITS_MAX:
            raise ValueError(f"value_bits must be {nx.VALUE_BITS_MIN}..{nx.VALUE_BITS_MAX}, "
                             f"not {self.value_bits}")
        if self.index_bits not in nx.INDEX_BITS_CHOICES:
            raise ValueError(f"index_bits must be one of {nx.INDEX_BITS_CHOICES}, not "
                             f"{self.index_bits}")
        mac_shape(self.mac_units, self.output_lanes)
        for name in _POWER_OF_TWO:
            depth = getattr(self, name)
            if name == "codebook_tables" and depth == 0:
                continue
            if depth < 1 or depth & (depth - 1):
                raise ValueError(f"{name} = {depth}: it must be a power of two, since the "
                                 "hardware's addresses wrap at the memory's address bits; use "
                                 f"{1 << max(0, depth - 1).bit_length()}")
        if self.fm_b_depth > self.fm_depth:
            raise ValueError(f"fm_out_depth = {self.fm_out_depth}: memory B may not be deeper "
                             f"than A ({self.fm_depth}): both take A's address bits")
        for name in ("max_channels", "max_side", "max_kernel", "max_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def fm_b_depth(self) -> int:
        """Words per bank of feature-map memory B (hw/runner.py: a pass reads one of A and B
        and writes the other; a LOAD fills A, a STORE drains B)."""
        return self.fm_out_depth or self.fm_depth

    # ---- lanes ------------------------------------------------------------------------------
    @property
    def po(self) -> int:
        """Output-channel lanes."""
        return mac_shape(self.mac_units, self.output_lanes)[0]

    @property
    def pc(self) -> int:
        """Input-channel lanes (and feature-map banks)."""
        return mac_shape(self.mac_units, self.output_lanes)[1]

    @property
    def lanes(self) -> int:
        """Weight indices per weight word: one per multiplier."""
        return self.po * self.pc

    @property
    def codebooks(self) -> bool:
        """Whether the engine decodes weight indices through codebook copies (dense, with
        ``codebook_tables``); otherwise its weight words hold values."""
        return self.codebook_tables > 0 and not self.zero_skipping

    @property
    def weight_bits(self) -> int:
        """Bits of one entry of a dense weight word: a codebook index, or without codebook
        tables a signed value."""
        return self.index_bits if self.codebook_tables else self.value_bits

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

    # ---- field widths (hw/layout.py, the engine's counters) -------------------------------
    @property
    def channel_bits(self) -> int:
        return self.max_channels.bit_length()

    @property
    def side_bits(self) -> int:
        return self.max_side.bit_length()

    @property
    def plane_bits(self) -> int:
        """Pixels of a feature-map plane (height x width)."""
        return (self.max_side * self.max_side).bit_length()

    @property
    def kernel_bits(self) -> int:
        return self.max_kernel.bit_length()

    @property
    def cgroup_bits(self) -> int:
        """Input-channel groups (PC channels each) of the largest layer."""
        return (-(-self.max_channels // self.pc)).bit_length()

    @property
    def ogroup_bits(self) -> int:
        """Output-channel groups (PO channels each) of the largest layer."""
        return (-(-self.max_channels // self.po)).bit_length()

    @property
    def stride_bits(self) -> int:
        return self.max_stride.bit_length()

    @property
    def pad_bits(self) -> int:
        return max(1, self.max_pad.bit_length())

    @property
    def steps_bits(self) -> int:
        """Steps of one output pixel: channel groups x kernel taps (rows x columns)."""
        return (-(-self.max_channels // self.pc) * self.max_kernel ** 2).bit_length()

    @property
    def shift_bits(self) -> int:
        return nx.SHIFT_MAX.bit_length()

    @property
    def fm_addr_bits(self) -> int:
        return address_bits(self.fm_depth)

    @property
    def fm_offset_bits(self) -> int:
        """Signed address offsets into the feature-map memory (the engine's increments and its
        running addresses): the address bits, a bit of headroom, the sign."""
        return self.fm_addr_bits + 2

    @property
    def fm_count_bits(self) -> int:
        """Word counts up to the whole feature-map memory."""
        return self.fm_depth.bit_length()

    @property
    def weight_addr_bits(self) -> int:
        return address_bits(self.weight_depth)

    @property
    def codebook_table_bits(self) -> int:
        return address_bits(self.codebook_tables)

    @property
    def bias_addr_bits(self) -> int:
        return address_bits(self.bias_depth)

    @property
    def program_addr_bits(self) -> int:
        return address_bits(self.program_depth)

    @property
    def sdram_timings(self):
        """The SDRAM's rules in cycles of this clock (hw.sdram_chip)."""
        from .sdram_chip import SDRAMTimings
        return SDRAMTimings.at(self.clock_mhz)

    def as_dict(self) -> dict:
        """The configuration's fields (reports write it beside their figures)."""
        return asdict(self)


DEFAULT = AcceleratorConfig()


# The board device's clock: 3 Mbaud at exactly 20 cycles a bit, and the whole device's
# bitstream meets it (75 MHz, 25 cycles a bit, is not met yet: docs/reports/synth.md).
BOARD_CLOCK_MHZ = 60.0


def board_config(mac_units: int = 64, zero_skipping: bool = False) -> AcceleratorConfig:
    """The device of the ULX3S-85F: feature maps, weights and codebooks in the SDRAM; on chip,
    the tiles the program's LOAD and STORE ops move them through (a row band of a map's
    input and output, the Fire unit's squeeze band, a layer's or an output chunk's weights, a
    few codebook tables), the biases and the program. docs/ARCHITECTURE.md's memory hierarchy;
    its block RAM is make synth-device's figure. ``zero_skipping``: the engine that skips zero
    weights (AcceleratorConfig.zero_skipping).

    The dense engine at 128 MAC units and more has 32 output lanes (4 input lanes, as at 64:
    the same feature words) and weight words of values: a codebook copy per multiplier would
    need more block RAM than the chip has. The block RAM the codebooks leave doubles memory A
    (with half of it, conv_final's input took four bands, each loading all of its weights).
    Its weight memory holds as many entries as the 64-unit device's; its words are written
    whole (a LOAD's), so their 12-bit values fill the block RAMs' 36 bits (with an enable per
    value, 24: the device needed 209 block RAMs of the chip's 208)."""
    wide = mac_units >= 128 and not zero_skipping
    return AcceleratorConfig(mac_units=mac_units, output_lanes=32 if wide else 16,
                             fm_depth=1 << (15 if wide else 14), fm_out_depth=1 << 13,
                             squeeze_depth=1 << 14,
                             weight_depth=(1 << 16) // mac_units if wide else 1 << 10,
                             codebook_tables=0 if wide else 4, bias_depth=64,
                             program_depth=1024, maps_in_sdram=True, clock_mhz=BOARD_CLOCK_MHZ,
                             zero_skipping=zero_skipping)


def chip_config(mac_units: int = 64) -> AcceleratorConfig:
    """A test configuration, never a board's: every map and weight of SqueezeNet v1.0 in
    on-chip memories (about 3.3 MB, seven times the LFE5U-85F's block RAM). It keeps the
    tests of the on-chip data path (the differential request streams, the one-shot layers)
    independent of the SDRAM's timing."""
    return AcceleratorConfig(mac_units=mac_units, fm_depth=1 << 19, squeeze_depth=1 << 15,
                             weight_depth=1 << 15, codebook_tables=32, bias_depth=256,
                             program_depth=64)


def bringup_config() -> AcceleratorConfig:
    """Every part of the device with small memories: it fits the LFE5U-85F today (the board
    configuration does not, until the SDRAM memory system carries its maps and weights), so a
    new board's link, SDRAM and identity can be checked with ``sqz selftest``. At 60 MHz:
    3 Mbaud at 20 cycles a bit, and timing met with room (at 75 MHz the self-test's command
    generator is 1.5% short: docs/reports/synth.md)."""
    return AcceleratorConfig(mac_units=32, fm_depth=1024, squeeze_depth=256, weight_depth=64,
                             codebook_tables=1, bias_depth=16, program_depth=16,
                             clock_mhz=60.0)
