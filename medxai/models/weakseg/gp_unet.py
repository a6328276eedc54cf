"""GP-UNet in 3D: a U-Net of MONAI blocks whose 1x1 output convolution gives one map per class.

Chatterjee et al. (GP-UNet, from Dubost et al. 2017); U-Net blocks from MONAI's ``BasicUNet`` (Falk et
al., Nature Methods 2019): ``TwoConv``, max-pool ``Down`` and ``UpCat``. The depth is configurable
because the receptive field decides what the class maps can use: a shallow network must find local
evidence, a deep one can score a voxel from the whole field of view. Global max pooling of the maps gives
the logits (see ``base.py``).
"""
from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from medxai.models.weakseg.base import GlobalMaxPoolingNetwork

# One 2x level: a receptive field of 19 voxels (38 mm at the usual 2 mm model grid). On the phantoms two
# levels (~47 voxels, the whole 32^3 grid) let the network classify from global cues and leave the lesion
# map flat, peaking at the same place in every case; one level must find the lesion where it is.
DEFAULT_FEATURES = (8, 16)
# Log-sum-exp pooling sharpness (None: global max pooling). On 200 presence phantoms at 32^3 (40 epochs), r = 1
# spread the gradient so evenly over the 32^3 voxels that a lesion of 0.1-1.6 % of them barely moved the
# logit: validation AUC stayed at 0.62 and the loss at 0.69. r = 4 and r = 10 (20 epochs) learnt (0.80, 0.83).
DEFAULT_SHARPNESS: float | None = 10.0
NORM = ("batch", {})
ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})


class UNet(nn.Module):
    """``len(features) - 1`` max-pool levels, skip concatenation, transposed-convolution up-sampling."""

    def __init__(self, *, in_channels: int, num_classes: int, features: tuple[int, ...] = DEFAULT_FEATURES,
                 upsample: str = "deconv") -> None:
        super().__init__()
        self.stem = TwoConv(3, in_channels, features[0], ACT, NORM, True)
        self.down = nn.ModuleList(Down(3, a, b, ACT, NORM, True) for a, b in zip(features[:-1], features[1:]))
        self.up = nn.ModuleList(
            UpCat(3, b, a, a, ACT, NORM, True, upsample=upsample, halves=False)
            for a, b in reversed(list(zip(features[:-1], features[1:])))
        )
        self.classifier = Conv["conv", 3](features[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for block in self.up:
            y = block(y, skips.pop())
        return self.classifier(y)


def gp_unet(
    *, in_channels: int, num_classes: int, features: tuple[int, ...] = DEFAULT_FEATURES, upsample: str = "deconv",
    sharpness: float | None = DEFAULT_SHARPNESS,
) -> GlobalMaxPoolingNetwork:
    """A 3D GP-UNet with ``len(features) - 1`` levels (inputs padded to multiples of 2**levels); ``sharpness``
    None pools by global maximum, a number by log-sum-exp (see ``base.py``)."""
    backbone = UNet(in_channels=in_channels, num_classes=num_classes, features=features, upsample=upsample)
    return GlobalMaxPoolingNetwork(backbone, divisor=2 ** (len(features) - 1), sharpness=sharpness,
                                   encoder_layer=f"down.{len(features) - 2}", encoder_channels=features[-1])
