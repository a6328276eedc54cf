"""Tiny 3D networks and settings for attribution tests (real torch/MONAI modules, fixed seeds)."""
from __future__ import annotations

import torch
from torch import nn

# Options that keep every method to a second or two at 32^3 on a CPU.
FAST_OPTIONS: dict[str, dict] = {
    "integrated_gradients": {"n_steps": 4, "max_steps": 4},
    "smoothgrad": {"n_samples": 3},
    "smooth_gradcampp": {"n_samples": 3},
    "occlusion": {"window_mm": 16.0, "stride_mm": 16.0},
    "feature_ablation": {"supervoxel_mm": 16.0},
}


class SmallClassifier(nn.Module):
    """Conv3d-BatchNorm3d-ReLU-MaxPool blocks, global pooling, linear head; one in-place ReLU reused twice
    (the pattern of MONAI's ResNet blocks that hook-based methods trip over)."""

    def __init__(self, in_channels: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(6)
        self.conv2 = nn.Conv3d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(8)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d(2)
        self.features = nn.Sequential(nn.Conv3d(8, 8, 3, padding=1), nn.ReLU())
        self.gap = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.pool(self.act(self.bn2(self.conv2(x))))
        return self.head(torch.flatten(self.gap(self.features(x)), 1))


def randomise_batch_norm(network: nn.Module, seed: int) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics and affine parameters (as after training); eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                count = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(count, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(count, generator=generator))
                module.weight.copy_(0.5 + torch.rand(count, generator=generator))
                module.bias.copy_(0.1 * torch.randn(count, generator=generator))
    return network.eval()
