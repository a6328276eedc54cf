"""A model ready for inference (:class:`LoadedModel`), the device rule, and the bounds every loader checks
before anything is allocated. Its own module so the loaders (:mod:`medxai.models.model_dir`,
:mod:`medxai.models.byo`) and every user of a loaded model import it without importing each other."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medxai.errors import ConfigError, InvalidInputError
from medxai.models.preprocessing import Preprocessor

# What a model may plausibly ask for; checked before anything is allocated.
MAX_CLASSES = 1000
MAX_CHANNELS = 64
MAX_AXIS = 1024
MAX_VOXELS = 512**3
SPACING_MM = (0.01, 100.0)


@dataclass(eq=False)
class LoadedModel:
    """A model ready for inference: ``network(x) -> logits (N, len(classes))`` in eval mode on its device."""

    network: nn.Module
    arch: str
    classes: list[str]
    task: str
    preprocessor: Preprocessor
    sha256: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    target_layer: str | None = None

    @property
    def device(self) -> torch.device:
        for tensor in self.network.parameters():
            return tensor.device
        return torch.device("cpu")


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a configuration error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but no CUDA device is available")
    return torch.device(device)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_spatial_size(size: Any, *, path: Path, what: str = "spatial size") -> tuple[int, int, int]:
    """``size`` as three whole numbers of 1..MAX_AXIS voxels, MAX_VOXELS in all; InvalidInputError otherwise."""
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(is_whole_number(s) and 1 <= s <= MAX_AXIS for s in size)) \
            or math.prod(size) > MAX_VOXELS:
        raise InvalidInputError(
            f"{what} {str(size)[:60]} is not three whole numbers of 1..{MAX_AXIS} voxels, at most {MAX_VOXELS} in all",
            path=path,
        )
    return (size[0], size[1], size[2])
