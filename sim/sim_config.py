"""The accelerator configuration the simulation benches build: buffers large enough for crops
of every real SqueezeNet v1.0 layer (fire9 at 5x5 crops, conv_final's 8,064 weight words)."""

from hw.config import AcceleratorConfig


def sim_config(mac_units: int = 64) -> AcceleratorConfig:
    return AcceleratorConfig(mac_units=mac_units, fm_depth=8192, weight_depth=8192,
                             bias_depth=64)
