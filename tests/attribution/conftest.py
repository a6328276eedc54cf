"""Fixtures of the attribution tests: tiny networks and inputs (fixed seeds)."""
from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from medxai.testing.attribution_nets import SmallClassifier, randomise_batch_norm

SIZE = 32


@pytest.fixture(scope="session")
def classifier() -> nn.Module:
    """2 input channels, 3 classes."""
    torch.manual_seed(0)
    return randomise_batch_norm(SmallClassifier(), 1)


@pytest.fixture(scope="session")
def segmenter() -> nn.Module:
    """MONAI UNet (residual units, PReLU, instance norm, skip concatenation), 2 output classes."""
    torch.manual_seed(0)
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=1).eval()


@pytest.fixture(scope="session")
def image_2ch() -> torch.Tensor:
    return torch.randn(1, 2, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="session")
def image_1ch() -> torch.Tensor:
    return torch.randn(1, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
