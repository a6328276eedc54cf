"""Recorded, invertible preprocessing from a scan's native grid to the model grid and back.

Intensity normalisation is applied per channel on the native grid (MONAI ``NormalizeIntensity`` /
``ScaleIntensityRange``); the spatial part is a MONAI ``Compose`` of ``Orientationd`` -> ``Spacingd`` ->
``Resized`` (or ``ResizeWithPadOrCropd``) acting on a ``MetaTensor`` that records every applied operation.
:meth:`Preprocessor.to_native` maps any model-grid map back with MONAI's ``Invertd`` on that record, so a
heatmap lands on the scan's own grid with exactly its affine.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    Invertd,
    NormalizeIntensity,
    Orientationd,
    Resized,
    ResizeWithPadOrCropd,
    ScaleIntensityRange,
    Spacingd,
)

from medxai.errors import ConfigError, InvalidInputError, MedxaiError
from medxai.volume import Step, Volume

INTENSITY_METHODS = ("zscore", "window", "none")
FIT_MODES = ("resize", "pad_crop")
_KEY = "image"
_MAP_KEY = "map"


@dataclass(frozen=True)
class ChannelIntensity:
    """Intensity normalisation of one channel: ``zscore`` (whole volume), ``window`` (``low..high`` -> 0..1,
    clipped) or ``none``."""

    method: str = "zscore"
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in INTENSITY_METHODS:
            raise ConfigError(f"unknown intensity method {self.method!r} (expected {', '.join(INTENSITY_METHODS)})")
        if self.method == "window":
            if self.window is None or len(self.window) != 2 or not self.window[0] < self.window[1]:
                raise ConfigError(f"intensity window needs low < high, got {self.window}")
            object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))
        elif self.window is not None:
            raise ConfigError(f"intensity method {self.method!r} takes no window")

    @classmethod
    def parse(cls, text: str) -> "ChannelIntensity":
        """``zscore``, ``none`` or ``window:LOW,HIGH`` (e.g. ``window:-1000,400``)."""
        method, _, bounds = text.strip().partition(":")
        if method == "window":
            try:
                low, high = (float(v) for v in bounds.split(","))
            except ValueError:
                raise ConfigError(f"intensity {text!r}: expected window:LOW,HIGH") from None
            return cls("window", (low, high))
        if bounds:
            raise ConfigError(f"intensity {text!r}: only 'window' takes bounds")
        return cls(method)


def parse_intensity(text: str) -> tuple[ChannelIntensity, ...]:
    """Per-channel intensity settings separated by ``;`` (``zscore;window:0,100``); one entry applies to all."""
    return tuple(ChannelIntensity.parse(part) for part in text.split(";"))


@dataclass(frozen=True)
class PreprocessingConfig:
    """What turns a scan into a model input; stored in every model directory (JSON).

    ``spacing`` in mm (None keeps the native spacing); ``fit`` is ``resize`` (whole field of view scaled to
    ``spatial_size``) or ``pad_crop`` (centred pad/crop at the given spacing); ``channels`` names the input
    channels in order; ``intensity`` holds one setting per channel (or one for all).
    """

    spatial_size: tuple[int, int, int] = (64, 64, 64)
    spacing: tuple[float, float, float] | None = None
    orientation: str = "RAS"
    fit: str = "resize"
    channels: tuple[str, ...] = ("image",)
    intensity: tuple[ChannelIntensity, ...] = field(default_factory=lambda: (ChannelIntensity(),))

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.spatial_size)
        if len(size) != 3 or min(size) < 1:
            raise ConfigError(f"spatial size must be three positive sizes, got {self.spatial_size}")
        object.__setattr__(self, "spatial_size", size)
        if self.spacing is not None:
            spacing = tuple(float(s) for s in self.spacing)
            if len(spacing) != 3 or min(spacing) <= 0:
                raise ConfigError(f"spacing must be three positive sizes in mm, got {self.spacing}")
            object.__setattr__(self, "spacing", spacing)
        if self.fit not in FIT_MODES:
            raise ConfigError(f"unknown fit {self.fit!r} (expected {', '.join(FIT_MODES)})")
        axes = [set(pair) & set(self.orientation) for pair in ("LR", "PA", "IS")]
        if len(self.orientation) != 3 or any(len(found) != 1 for found in axes):
            raise ConfigError(f"orientation must be three axis codes such as RAS or LPS, got {self.orientation!r}")
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        intensity = tuple(self.intensity)
        if len(intensity) not in (1, len(self.channels)):
            raise ConfigError(f"{len(intensity)} intensity settings for {len(self.channels)} channels")
        object.__setattr__(self, "intensity", intensity)

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    def channel_intensity(self, index: int) -> ChannelIntensity:
        return self.intensity[0] if len(self.intensity) == 1 else self.intensity[index]

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["intensity"] = [asdict(setting) for setting in self.intensity]
        return payload

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> "PreprocessingConfig":
        known = {"spatial_size", "spacing", "orientation", "fit", "channels", "intensity"}
        unknown = set(payload) - known
        if unknown:
            raise ConfigError(f"unknown preprocessing keys: {', '.join(sorted(unknown))}")
        values = dict(payload)
        if "intensity" in values:
            values["intensity"] = tuple(
                ChannelIntensity(item["method"], tuple(item["window"]) if item.get("window") else None)
                for item in values["intensity"]
            )
        for key in ("spatial_size", "spacing", "channels"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True, eq=False)
class PreparedInput:
    """A scan on the model grid: ``tensor`` (C, X, Y, Z) MetaTensor with its applied operations, and the
    native ``reference`` volume (first channel as read) that maps are returned onto."""

    tensor: MetaTensor
    reference: Volume


def _normalise(data: np.ndarray, setting: ChannelIntensity) -> np.ndarray:
    values = np.asarray(data, dtype=np.float32)
    if setting.method == "zscore":
        return np.asarray(NormalizeIntensity()(values), dtype=np.float32)
    if setting.method == "window":
        low, high = setting.window  # type: ignore[misc]
        return np.asarray(ScaleIntensityRange(low, high, 0.0, 1.0, clip=True)(values), dtype=np.float32)
    return values


class Preprocessor:
    """Applies a :class:`PreprocessingConfig` and inverts its spatial part for any model-grid map.

    ``window_spacing`` (models trained on patches, :mod:`medxai.models.sliding`): the whole scan is resampled to
    that spacing and kept whole (no resize, no pad/crop), for sliding windows of the patch size to run over it."""

    def __init__(self, config: PreprocessingConfig, *, window_spacing: Sequence[float] | None = None) -> None:
        self.config = config
        self.window_spacing = None if window_spacing is None else tuple(float(s) for s in window_spacing)
        steps: list[Any] = [Orientationd(keys=_KEY, axcodes=config.orientation, labels=None)]
        spacing = self.window_spacing or config.spacing
        if spacing is not None:
            steps.append(Spacingd(keys=_KEY, pixdim=spacing, mode="bilinear", padding_mode="border"))
        if self.window_spacing is None:  # else the whole scan at the training spacing: the inferer cuts the windows
            if config.fit == "resize":
                steps.append(Resized(keys=_KEY, spatial_size=config.spatial_size, mode="trilinear", anti_aliasing=True))
            else:
                steps.append(ResizeWithPadOrCropd(keys=_KEY, spatial_size=config.spatial_size, mode="constant"))
        self.spatial = Compose(steps)

    def prepare(self, volumes: Sequence[Volume]) -> PreparedInput:
        """Normalise each channel, stack them and bring them onto the model grid (operations recorded)."""
        if len(volumes) != self.config.in_channels:
            raise InvalidInputError(
                f"model expects {self.config.in_channels} channel(s) ({', '.join(self.config.channels)}), "
                f"got {len(volumes)} scan(s)"
            )
        reference = volumes[0]
        for volume in volumes[1:]:
            if not volume.same_grid(reference):
                raise InvalidInputError(
                    "channels must share one grid: shape/affine of "
                    f"{volume.metadata.get('source', 'a channel')} differ from {reference.metadata.get('source', 'the first')}"
                )
        stacked = np.stack([_normalise(v.data, self.config.channel_intensity(i)) for i, v in enumerate(volumes)])
        tensor = MetaTensor(torch.from_numpy(stacked), affine=torch.as_tensor(reference.affine, dtype=torch.float64))
        prepared = self.spatial({_KEY: tensor})[_KEY]
        return PreparedInput(tensor=prepared.float(), reference=reference)

    def to_native(
        self, model_map: torch.Tensor | np.ndarray, prepared: PreparedInput, *, interpolation: str = "linear"
    ) -> Volume:
        """Map a model-grid map ((X, Y, Z) or (1, X, Y, Z)) back onto the native grid through the inverse of the
        recorded spatial operations (MONAI ``Invertd``). Values are not de-normalised."""
        if interpolation not in ("linear", "nearest"):
            raise ConfigError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
        values = torch.as_tensor(np.asarray(model_map) if isinstance(model_map, np.ndarray) else model_map)
        values = values.detach().to("cpu", torch.float32)
        if values.ndim == 3:
            values = values[None]
        model_shape = tuple(prepared.tensor.shape[1:])
        if values.ndim != 4 or values.shape[0] != 1 or tuple(values.shape[1:]) != model_shape:
            raise ValueError(f"map shape {tuple(values.shape)} is not the model grid {model_shape} (one channel)")
        invert = Invertd(keys=_MAP_KEY, transform=self.spatial, orig_keys=_KEY, nearest_interp=interpolation == "nearest")
        native = invert({_MAP_KEY: MetaTensor(values), _KEY: prepared.tensor})[_MAP_KEY]
        reference = prepared.reference
        affine = native.affine.numpy() if isinstance(native, MetaTensor) else None
        scale = float(np.max(reference.spacing))
        if tuple(native.shape[1:]) != reference.shape or affine is None or not np.allclose(
            affine, reference.affine, atol=1e-3 * scale
        ):
            raise MedxaiError(f"inverse preprocessing did not return the native grid (shape {tuple(native.shape[1:])})")
        data = np.asarray(native[0].detach().cpu().numpy(), dtype=np.float32)
        step = Step("to_native", {"interpolation": interpolation, "from_model_grid": list(model_shape)})
        return Volume(data=data, affine=reference.affine, metadata={"source": "model-grid map"}, history=reference.history + (step,))
