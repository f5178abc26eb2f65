"""The integer contract shared by golden, hw, sim and host: every width in one place.

docs/NUMERICS.md explains each rule; this module is the only place the numbers are written.
"""

from __future__ import annotations

# Activations: unsigned, one scale per tensor, zero point 0 (every activation follows a ReLU).
ACT_BITS = 8
ACT_MAX = (1 << ACT_BITS) - 1

# Weights: an index of INDEX_BITS into a per-layer codebook of signed VALUE_BITS-bit integers.
INDEX_BITS_CHOICES = (8, 6, 4)
VALUE_BITS_MIN, VALUE_BITS_MAX = 8, 16
# Chosen by measurement (docs/NUMERICS.md, "Codebook value width"): 12 bits lose nothing
# measurable against float on the sample photos, and keep 32-bit accumulators safe for a fan-in
# of 1024 (255 * 2047 * 1024 + bias < 2**31).
DEFAULT_VALUE_BITS = 12

# Accumulator: signed two's complement. Every layer is checked at quantisation time to stay
# inside it (worst case 255 * sum|w| + |bias| per output channel).
ACC_BITS = 32
ACC_MIN, ACC_MAX = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1

# Requantisation: y = clamp((acc * M + 2**(S-1)) >> S, 0, 255), M unsigned MULT_BITS wide and
# normalised to [2**(MULT_BITS-1), 2**MULT_BITS), S in [1, SHIFT_MAX]. The product acc * M
# needs ACC_BITS + MULT_BITS = 48 bits, the rounding add one more: a 49-bit signed datapath.
MULT_BITS = 16
SHIFT_MIN, SHIFT_MAX = 1, 47
PRODUCT_BITS = ACC_BITS + MULT_BITS + 1

# Global average pooling outputs the exact sum of its window (uint32): the average is the sum
# divided by H*W, a scale change that the logit's scale absorbs (no rounding, no ties added).
LOGIT_BITS = 32

# The fast golden kernels compute integer dot products with float32 BLAS, exact while every
# partial sum stays below 2**24 in magnitude (golden/kernels.py splits weights to ensure it).
FLOAT32_EXACT = 1 << 24


def requant_params(ratio: float) -> tuple[int, int]:
    """Integer (M, S) with M / 2**S closest to ``ratio`` and M normalised to MULT_BITS bits."""
    if not ratio > 0:
        raise ValueError(f"requantisation ratio must be positive, got {ratio}")
    import math
    mant, exp = math.frexp(ratio)              # ratio = mant * 2**exp, mant in [0.5, 1)
    shift = MULT_BITS - exp
    mult = round(mant * (1 << MULT_BITS))
    if mult == 1 << MULT_BITS:                 # rounding carried out of the mantissa
        mult >>= 1
        shift -= 1
    if shift > SHIFT_MAX:                      # a tiny ratio: drop precision instead of range
        mult = max(1, round(mult / (1 << (shift - SHIFT_MAX))))
        shift = SHIFT_MAX
    if shift < SHIFT_MIN:
        raise ValueError(f"requantisation ratio {ratio} is too large for a {MULT_BITS}-bit "
                         f"multiplier and a shift of at least {SHIFT_MIN}: the output scale is "
                         "far too fine for its input; recalibrate")
    return int(mult), int(shift)
