"""GP-UNet in 3D: MONAI's BasicUNet whose 1x1 output convolution gives one map per class.

Chatterjee et al. (GP-UNet, from Dubost et al. 2017); the U-Net is Falk et al., Nature Methods 2019
(MONAI ``BasicUNet``). Global max pooling of the maps gives the logits (see ``base.py``).
"""
from __future__ import annotations

from monai.networks.nets import BasicUNet

from medxai.models.weakseg.base import GlobalMaxPoolingNetwork

# Five encoder widths and the width after the last up-sampling; small so that 64^3 trains on a CPU.
DEFAULT_FEATURES = (8, 16, 32, 64, 64, 8)
NORM = ("batch", {})
ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})


def gp_unet(
    *, in_channels: int, num_classes: int, features: tuple[int, ...] = DEFAULT_FEATURES, upsample: str = "deconv"
) -> GlobalMaxPoolingNetwork:
    """A 3D GP-UNet: four 2x max-pool levels (inputs padded to multiples of 16)."""
    backbone = BasicUNet(
        spatial_dims=3, in_channels=in_channels, out_channels=num_classes, features=features,
        act=ACT, norm=NORM, upsample=upsample,
    )
    return GlobalMaxPoolingNetwork(backbone, divisor=16)
