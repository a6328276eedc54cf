"""Architecture registry: the names ``--arch`` takes, each mapped to a builder of a 3D MONAI network.

Every network built here follows one contract: ``forward(x) -> logits`` of shape ``(N, num_classes)``
for ``x`` of shape ``(N, in_channels, X, Y, Z)``. Other packages add their own architectures with
:func:`register_architecture` (weakly-supervised models register under ``task="weakseg"``); modules in
``PLUGIN_MODULES`` are imported on first use so their architectures are known to every command.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from medxai.errors import ConfigError

TASKS = ("classification", "weakseg")
PLUGIN_MODULES = ("medxai.models.weakseg",)


class NetworkBuilder(Protocol):
    def __call__(self, *, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module: ...


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its builder, its task and the layer Grad-CAM style methods should use."""

    name: str
    builder: NetworkBuilder
    task: str
    target_layer: str | None = None


class TinyCNN(nn.Module):
    """A small Conv3d-BatchNorm3d-ReLU-MaxPool CNN with global average pooling and a linear head (tests, demos)."""

    def __init__(self, *, in_channels: int, num_classes: int, widths: tuple[int, ...] = (8, 16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            layers += [nn.Conv3d(channels, width, 3, padding=1, bias=False), nn.BatchNorm3d(width), nn.ReLU()]
            if index < len(widths) - 1:
                layers.append(nn.MaxPool3d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class SmallCNN(nn.Module):
    """A stride-2 Conv3d stem, then Conv3d-BatchNorm3d-ReLU-MaxPool blocks, and a head on global max and
    average pooling concatenated: a small lesion is a local maximum of the features, which averaging alone
    dilutes. About 0.1 M parameters; built for lesion presence at 64^3 on a CPU."""

    def __init__(self, *, in_channels: int, num_classes: int, widths: tuple[int, ...] = (16, 32, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm3d(widths[0]), nn.ReLU(),
        ]
        for before, width in zip(widths[:-1], widths[1:]):
            layers += [nn.MaxPool3d(2), nn.Conv3d(before, width, 3, padding=1, bias=False), nn.BatchNorm3d(width), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        pooled = torch.cat([features.amax(dim=(2, 3, 4)), features.mean(dim=(2, 3, 4))], dim=1)
        return self.head(pooled)


def _small(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    return SmallCNN(in_channels=in_channels, num_classes=num_classes)


def _tiny(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    return TinyCNN(in_channels=in_channels, num_classes=num_classes)


def _resnet(depth: int) -> NetworkBuilder:
    def build(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
        from monai.networks.nets import resnet

        factory = getattr(resnet, f"resnet{depth}")
        return factory(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes, pretrained=False)

    return build


def _densenet121(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=num_classes)


def _efficientnet_b0(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=3, in_channels=in_channels, num_classes=num_classes)


def _seresnet50(*, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    from monai.networks.nets import SEResNet50

    return SEResNet50(spatial_dims=3, in_channels=in_channels, num_classes=num_classes, pretrained=False)


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    name: str, builder: NetworkBuilder, *, task: str = "classification", target_layer: str | None = None
) -> None:
    """Make ``name`` available to ``--arch``. ``builder(in_channels=, num_classes=, spatial_size=)`` returns
    a module whose ``forward`` gives class logits ``(N, num_classes)``; ``target_layer`` names the module
    Grad-CAM style explainers should hook (dotted path as in ``named_modules()``)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r} for architecture {name!r} (expected one of {', '.join(TASKS)})")
    ARCHITECTURES[name] = Architecture(name=name, builder=builder, task=task, target_layer=target_layer)


for _name, _builder, _layer in (
    ("tiny", _tiny, "features"),
    ("small", _small, "features"),
    ("densenet121", _densenet121, "class_layers.relu"),
    ("resnet10", _resnet(10), "layer4"),
    ("resnet18", _resnet(18), "layer4"),
    ("resnet34", _resnet(34), "layer4"),
    ("efficientnet-b0", _efficientnet_b0, "_bn1"),
    ("seresnet50", _seresnet50, "layer4"),
):
    register_architecture(_name, _builder, target_layer=_layer)


def _load_plugins() -> None:
    for module in PLUGIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def get_architecture(arch: str) -> Architecture:
    """The registered architecture called ``arch`` (ConfigError naming the known ones otherwise)."""
    if arch not in ARCHITECTURES:
        _load_plugins()
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))})")
    return ARCHITECTURES[arch]


def architecture_names(*, task: str | None = None) -> list[str]:
    """Every registered name (plugins included), optionally only those of one task."""
    _load_plugins()
    return sorted(name for name, spec in ARCHITECTURES.items() if task is None or spec.task == task)


def build_network(arch: str, *, in_channels: int, num_classes: int, spatial_size: tuple[int, int, int]) -> nn.Module:
    """Build the network ``arch`` for ``in_channels`` input channels and ``num_classes`` logits."""
    if in_channels < 1 or num_classes < 2:
        raise ConfigError(f"need at least 1 input channel and 2 classes, got {in_channels} and {num_classes}")
    size = tuple(int(s) for s in spatial_size)
    if len(size) != 3 or min(size) < 8:
        raise ConfigError(f"spatial size must be three sizes of at least 8 voxels, got {spatial_size}")
    spec = get_architecture(arch)
    return spec.builder(in_channels=in_channels, num_classes=num_classes, spatial_size=size)  # type: ignore[arg-type]
