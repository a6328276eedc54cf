"""A model ready for inference (:class:`LoadedModel`), the device rule, and the bounds every loader checks
before anything is allocated. Its own module so the loaders (:mod:`medxai.models.model_dir`,
:mod:`medxai.models.byo`) and every user of a loaded model import it without importing each other."""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medxai.errors import ConfigError, InvalidInputError
from medxai.models.preprocessing import Preprocessor
from medxai.models.sliding import SlidingWindow, SlidingWindowNetwork, absence_index, scan_score_rule

# What a model may plausibly ask for; checked before anything is allocated.
MAX_CLASSES = 1000
MAX_CHANNELS = 64
MAX_AXIS = 1024
MAX_VOXELS = 512**3
SPACING_MM = (0.01, 100.0)


@dataclass(eq=False)
class LoadedModel:
    """A model ready for inference: ``network(x) -> logits (N, len(classes))`` in eval mode on its device.

    ``sliding_window``: set for a model trained on patches; its ``network`` is then a
    :class:`~medxai.models.sliding.SlidingWindowNetwork` and its preprocessor resamples whole scans to the
    training spacing (see :mod:`medxai.models.sliding`)."""

    network: nn.Module
    arch: str
    classes: list[str]
    task: str
    preprocessor: Preprocessor
    sha256: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    target_layer: str | None = None
    sliding_window: SlidingWindow | None = None

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


def windowed(model: LoadedModel, window: SlidingWindow) -> LoadedModel:
    """``model`` run by sliding windows: its network wrapped, its preprocessing resampling the whole scan to
    ``window.spacing_mm`` (no resize), ``sliding_window`` set."""
    base = model.network.base if isinstance(model.network, SlidingWindowNetwork) else model.network
    return dataclasses.replace(
        model, network=SlidingWindowNetwork(base, window, absence=absence_index(base, model.classes),
                                            num_classes=len(model.classes)),
        preprocessor=Preprocessor(model.preprocessor.config, window_spacing=window.spacing_mm), sliding_window=window,
    )


def with_window_options(model: LoadedModel, *, overlap: float | None = None, blend: str | None = None,
                        sw_batch_size: int | None = None) -> LoadedModel:
    """A sliding-window ``model`` with the recorded overlap/blend or the window batch overridden (ConfigError for
    a model trained on whole volumes when any is given)."""
    given = {key: value for key, value in (("overlap", overlap), ("blend", blend), ("sw_batch_size", sw_batch_size))
             if value is not None}
    if not given:
        return model
    if model.sliding_window is None:
        raise ConfigError(f"{', '.join(given)} only apply to models trained on patches (this one saw whole volumes)")
    return windowed(model, dataclasses.replace(model.sliding_window, **given))


def window_record(model: LoadedModel) -> dict[str, Any] | None:
    """What explanations and segmentations record about the windows (None for whole-volume models)."""
    window = model.sliding_window
    if window is None:
        return None
    absence = getattr(model.network, "absence", None)
    return {**window.to_record(), "sw_batch_size": window.sw_batch_size,
            "scan_score": scan_score_rule(None if absence is None else model.classes[absence])}
