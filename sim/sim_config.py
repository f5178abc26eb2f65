"""The accelerator configurations the simulation benches build.

``bench``: buffers large enough for 5x5 crops of every real SqueezeNet v1.0 layer (fire9's 512
input channels, conv_final's 8,064 weight words). ``report``: whole real layers (conv1's
96 x 111 x 111 output is 295,704 words per bank at 4 banks), for the utilisation report.
"""

import os

from hw.config import AcceleratorConfig

PROFILES = {"bench": dict(fm_depth=8192, squeeze_depth=1024, weight_depth=8192, bias_depth=64),
            "report": dict(fm_depth=1 << 19, weight_depth=8192, bias_depth=64)}


def sim_config(mac_units: int | None = None, profile: str | None = None) -> AcceleratorConfig:
    mac_units = mac_units or int(os.environ.get("SQZ_MAC_UNITS", "64"))
    profile = profile or os.environ.get("SQZ_SIM_PROFILE", "bench")
    return AcceleratorConfig(mac_units=mac_units, **PROFILES[profile])
