"""GP-ShuffleUNet in 3D: a U-Net that down-samples by pixel unshuffle and up-samples by pixel shuffle.

Chatterjee et al. (GP-ShuffleUNet); sub-pixel convolution from Shi et al. 2016 with the checkerboard-free
initialisation of Aitken et al. 2017, both as MONAI ``SubpixelDownsample`` / ``SubpixelUpsample``.
"""
from __future__ import annotations

import torch
from monai.networks.blocks import SubpixelDownsample
from monai.networks.layers.factories import Conv
from monai.networks.nets.basic_unet import TwoConv, UpCat
from torch import nn

from medxai.models.weakseg.base import GlobalMaxPoolingNetwork
from medxai.models.weakseg.gp_unet import ACT, NORM

DEFAULT_FEATURES = (8, 16, 32, 32)


class ShuffleUNet(nn.Module):
    """Encoder: conv + pixel unshuffle (x2 per level); decoder: pixel shuffle + skip concatenation."""

    def __init__(self, *, in_channels: int, num_classes: int, features: tuple[int, ...] = DEFAULT_FEATURES) -> None:
        super().__init__()
        self.stem = TwoConv(3, in_channels, features[0], ACT, NORM, True)
        self.down = nn.ModuleList(
            nn.Sequential(
                SubpixelDownsample(3, width, width, scale_factor=2),
                TwoConv(3, width * 8, wider, ACT, NORM, True),
            )
            for width, wider in zip(features[:-1], features[1:])
        )
        self.up = nn.ModuleList(
            UpCat(3, wider, width, width, ACT, NORM, True, upsample="pixelshuffle", halves=False)
            for width, wider in reversed(list(zip(features[:-1], features[1:])))
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


def gp_shuffleunet(
    *, in_channels: int, num_classes: int, features: tuple[int, ...] = DEFAULT_FEATURES
) -> GlobalMaxPoolingNetwork:
    """A 3D GP-ShuffleUNet with ``len(features) - 1`` levels (inputs padded to multiples of 2**levels)."""
    backbone = ShuffleUNet(in_channels=in_channels, num_classes=num_classes, features=features)
    # Deep supervision reads the first level (2x down-sampled), not the deepest: on 400 presence phantoms at 32^3
    # an auxiliary head on the deepest level (4^3, a lesion ~1 voxel) never left chance and neither did the
    # network in 12 epochs; on the first level the head learnt from epoch 3 and the network's validation AUC
    # reached 0.77 by epoch 12 (the GP-UNet's one level is the same 2x).
    return GlobalMaxPoolingNetwork(backbone, divisor=2 ** (len(features) - 1), encoder_layer="down.0",
                                   encoder_channels=features[1])
