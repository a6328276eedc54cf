"""Deep supervision of a GP network's encoder while it trains (Lee et al., "Deeply-Supervised Nets", AISTATS 2015).

A GP network's logit is a pooled voxel map, so at a random start every voxel gets about ``1/N`` of the loss
gradient and a lesion of 0.1-1.6 % of the voxels carries almost none of it: on the presence phantoms the
GP-UNet sat at chance (loss 0.693) for 7-30 epochs, or fell back there after leaving it, at every learning
rate, warm-up and cohort size tried (README, weakly-supervised segmentation). A small CNN head on a
shallow encoder level's features (each architecture names it; at the deepest level of a 32^3 GP-ShuffleUNet,
4^3, a lesion is ~1 voxel and the head did not learn), trained on the same image labels beside the GP loss,
gives those features a strong, early signal (the plain CNNs learn the task in a few epochs); the pooled map
then learns on top of lesion-sensitive features. Measured on 400 phantoms at 32^3: validation AUC 0.88 at
epoch 3 and 0.97 at epoch 12 with the head (weight 0.5), 0.35-0.61 over the first 7 epochs without it.

The head exists only during training and is never saved: the saved network's logits are still exactly the
pooled class maps, so the map that is thresholded is the evidence the decision used.
"""
from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from medxai.models.weakseg.base import GlobalMaxPoolingNetwork

DEFAULT_WEIGHT = 0.5


class AuxiliaryClassifier(nn.Module):
    """Two (max-pool, convolution) levels, global average pooling and a linear layer: class logits from
    encoder features ``(N, C, X, Y, Z)``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        from medxai.models.weakseg.gp_unet import ACT, NORM

        wide = 2 * in_channels
        self.features = nn.Sequential(
            nn.MaxPool3d(2, ceil_mode=True), Convolution(3, in_channels, wide, act=ACT, norm=NORM),
            nn.MaxPool3d(2, ceil_mode=True), Convolution(3, wide, wide, act=ACT, norm=NORM),
        )
        self.head = nn.Linear(wide, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(features).mean(dim=(2, 3, 4)))


class DeepSupervision:
    """An auxiliary classifier fed by ``network``'s encoder output (a forward hook) while training.

    Call :meth:`loss` after each forward pass of the network; :meth:`remove` when training ends."""

    def __init__(self, network: GlobalMaxPoolingNetwork, *, num_classes: int, weight: float = DEFAULT_WEIGHT) -> None:
        if not weight > 0:
            raise ValueError(f"deep-supervision weight must be positive, got {weight}")
        if network.encoder_layer is None:
            raise ValueError("this network names no encoder layer to supervise")
        self.weight = float(weight)
        self.head = AuxiliaryClassifier(network.encoder_channels, num_classes)
        self._features: torch.Tensor | None = None
        source = network.backbone.get_submodule(network.encoder_layer)
        self._hook = source.register_forward_hook(self._capture)

    def _capture(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        self._features = output

    def parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def loss(self, loss_fn: nn.Module, targets: torch.Tensor) -> torch.Tensor:
        """``weight`` times ``loss_fn`` of the head's logits on the features of the last forward pass."""
        if self._features is None:
            raise RuntimeError("deep supervision: run the network's forward pass first")
        features, self._features = self._features, None
        return self.weight * loss_fn(self.head(features).float(), targets)

    def remove(self) -> None:
        self._hook.remove()
        self._features = None
