"""Inherently explainable 3D classifiers for weakly-supervised segmentation (``--task weakseg``).

Chatterjee et al., "Weakly-supervised segmentation using inherently-explainable classification models and
their application to brain tumour classification": GP-UNet, GP-ShuffleUNet and GP-ReconResNet, here in 3D.
Each network's ``forward(x)`` gives class logits ``(N, K)`` (the global maxima of its maps) and
``heatmaps(x)`` the class maps ``(N, K, X, Y, Z)`` at the input's resolution. Importing this package
registers the three architectures (the registry imports it as a plugin).
"""
from __future__ import annotations

from torch import nn

from medxai.models.registry import register_architecture
from medxai.models.weakseg.base import GlobalMaxPoolingNetwork


def _build_gp_unet(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    from medxai.models.weakseg.gp_unet import gp_unet

    return gp_unet(in_channels=in_channels, num_classes=num_classes)


def _build_gp_shuffleunet(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    from medxai.models.weakseg.gp_shuffleunet import gp_shuffleunet

    return gp_shuffleunet(in_channels=in_channels, num_classes=num_classes)


def _build_gp_reconresnet(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    from medxai.models.weakseg.gp_reconresnet import gp_reconresnet

    return gp_reconresnet(in_channels=in_channels, num_classes=num_classes)


# target_layer: the features just before the 1x1 class convolution (for Grad-CAM style comparisons).
register_architecture("gp-unet", _build_gp_unet, task="weakseg", target_layer="backbone.up.0")
register_architecture("gp-shuffleunet", _build_gp_shuffleunet, task="weakseg", target_layer="backbone.up.2")
register_architecture("gp-reconresnet", _build_gp_reconresnet, task="weakseg", target_layer="backbone.9")


def has_heatmaps(network: nn.Module) -> bool:
    """True for networks whose class heatmaps are their own output (``network.heatmaps(x)``)."""
    return isinstance(network, GlobalMaxPoolingNetwork)
