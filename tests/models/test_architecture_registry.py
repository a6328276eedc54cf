"""The architecture registry: every name builds and gives class logits; plugins register their own."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medxai.errors import ConfigError
from medxai.models.registry import ARCHITECTURES, architecture_names, build_network, get_architecture, register_architecture

BUILT_IN = ["tiny", "small", "densenet121", "resnet10", "resnet18", "resnet34", "efficientnet-b0", "seresnet50"]


@pytest.mark.parametrize("arch", BUILT_IN)
def test_every_architecture_builds_and_runs(arch: str) -> None:
    network = build_network(arch, in_channels=2, num_classes=3, spatial_size=(32, 32, 32)).eval()
    with torch.no_grad():
        logits = network(torch.randn(2, 2, 32, 32, 32))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    layer = get_architecture(arch).target_layer
    assert layer in dict(network.named_modules())


def test_tiny_is_small() -> None:
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(32, 32, 32))
    assert sum(p.numel() for p in network.parameters()) < 50_000
    kinds = {type(m) for m in network.modules()}
    assert {nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.MaxPool3d, nn.AdaptiveAvgPool3d, nn.Linear} <= kinds


def test_plugins_register_weakseg_architectures() -> None:
    class Global(nn.Module):
        def __init__(self, in_channels: int, num_classes: int) -> None:
            super().__init__()
            self.conv = nn.Conv3d(in_channels, num_classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).amax(dim=(2, 3, 4))

    register_architecture(
        "test-gp", lambda *, in_channels, num_classes, spatial_size: Global(in_channels, num_classes),
        task="weakseg", target_layer="conv",
    )
    try:
        assert "test-gp" in architecture_names(task="weakseg")
        assert "test-gp" not in architecture_names(task="classification")
        network = build_network("test-gp", in_channels=1, num_classes=2, spatial_size=(16, 16, 16))
        assert network(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 2)
    finally:
        del ARCHITECTURES["test-gp"]


def test_unknown_names_and_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'vgg'"):
        build_network("vgg", in_channels=1, num_classes=2, spatial_size=(32, 32, 32))
    with pytest.raises(ConfigError, match="2 classes"):
        build_network("tiny", in_channels=1, num_classes=1, spatial_size=(32, 32, 32))
    with pytest.raises(ConfigError, match="task"):
        register_architecture("x", lambda **_: nn.Identity(), task="detection")
