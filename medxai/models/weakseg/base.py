"""Global-max-pooling networks: the class heatmaps are the network's own output, the logits their maxima.

Chatterjee et al., "Weakly-supervised segmentation using inherently-explainable classification models and
their application to brain tumour classification" (GP-UNet, GP-ShuffleUNet, GP-ReconResNet), after
Dubost et al., "GP-Unet: lesion detection from weak labels with a 3D regression network" (MICCAI 2017).

One deliberate difference from the authors' code: they max-pool the decoder features and then apply the
1x1 classifier (``last(GMP(x))``), so the score is not exactly the peak of the drawn map. Here the 1x1
classifier comes first and the logit of class ``c`` *is* ``max`` over voxels of heatmap ``c``, so the map
that is thresholded is exactly the evidence the decision used.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalMaxPoolingNetwork(nn.Module):
    """Wrap a fully convolutional ``backbone`` (N, C, X, Y, Z) -> (N, K, X, Y, Z) into a classifier.

    ``heatmaps(x)`` returns the K class maps at the input's own resolution; ``forward(x)`` returns the
    logits ``(N, K)``, the global maximum of each map. Inputs whose sizes are not multiples of
    ``divisor`` (the backbone's total down-sampling) are padded at the far end by edge replication and
    the maps cropped back, so any size works (odd, anisotropic).
    """

    def __init__(self, backbone: nn.Module, *, divisor: int) -> None:
        super().__init__()
        # channels-last 3D tensors make oneDNN's Conv3d faster on CPU with these small channel counts: a
        # training step of the default GP-UNet took 1.6-2.5x less time (32^3 and 64^3, 1 thread, torch 2.13);
        # maps and gradients agree with contiguous format to float rounding (tests/models/test_gp_networks.py)
        self.backbone = backbone.to(memory_format=torch.channels_last_3d)
        self.divisor = int(divisor)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """Class heatmaps ``(N, K, X, Y, Z)`` on the input grid (raw scores, not normalised)."""
        size = x.shape[2:]
        extra = [(-int(n)) % self.divisor for n in size]
        if any(extra):
            # F.pad lists the last axis first: (z_before, z_after, y_before, y_after, x_before, x_after)
            x = F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]), mode="replicate")
        maps = self.backbone(x.contiguous(memory_format=torch.channels_last_3d))
        return maps[:, :, : size[0], : size[1], : size[2]].contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.heatmaps(x), dim=(2, 3, 4))
