"""GP-ReconResNet in 3D: strided-convolution encoder, residual blocks, transposed-convolution decoder.

Chatterjee et al. (GP-ReconResNet, from ReconResNet, Chatterjee et al. 2019); residual units are
MONAI ``ResidualUnit`` (He et al. 2016). No skip connections, as in the original.
"""
from __future__ import annotations

from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.layers.factories import Conv
from torch import nn

from medxai.models.weakseg.base import GlobalMaxPoolingNetwork
from medxai.models.weakseg.gp_unet import ACT, NORM


def gp_reconresnet(
    *, in_channels: int, num_classes: int, width: int = 8, updown_blocks: int = 2, res_blocks: int = 4,
    dropout: float = 0.2,
) -> GlobalMaxPoolingNetwork:
    """A 3D GP-ReconResNet; ``width`` doubles at each of ``updown_blocks`` stride-2 levels."""
    layers: list[nn.Module] = [Convolution(3, in_channels, width, kernel_size=5, act=ACT, norm=NORM)]
    channels = width
    for _ in range(updown_blocks):
        layers.append(Convolution(3, channels, channels * 2, strides=2, act=ACT, norm=NORM))
        channels *= 2
    layers += [
        ResidualUnit(3, channels, channels, subunits=2, act=ACT, norm=NORM, dropout=dropout)
        for _ in range(res_blocks)
    ]
    encoder_layer, encoder_channels = str(len(layers) - 1), channels  # the last residual unit
    for _ in range(updown_blocks):
        layers.append(Convolution(3, channels, channels // 2, strides=2, is_transposed=True, act=ACT, norm=NORM))
        channels //= 2
    layers.append(Conv["conv", 3](channels, num_classes, kernel_size=1))
    return GlobalMaxPoolingNetwork(nn.Sequential(*layers), divisor=2**updown_blocks, encoder_layer=encoder_layer,
                                   encoder_channels=encoder_channels)
