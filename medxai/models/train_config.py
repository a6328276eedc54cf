"""What ``medxai train`` does, as one validated value: :class:`TrainConfig` (per-task defaults, checked before
any data is read) and :class:`Augmentation` (the transforms' parameters; the record written into the model
directory is read back from the built MONAI transforms, :func:`describe_augmentation`).

Per-task defaults (``None`` in a field means "the task's default", :data:`TASK_DEFAULTS`):

- ``classification``: the ``small`` CNN, lr 2e-3, no gradient clipping, a 64^3 input, 40 epochs without early
  stopping (patience 40). Measured 2026-12-08 on 160 phantoms (``sample-data --seed 0``), held-out AUC on 40
  fresh ones (``--seed 1``): 0.895 (accuracy 0.70), against 0.81 for the former defaults (``tiny``, lr 1e-3,
  20 epochs, patience 10) and 0.76 for this recipe stopped by patience 10 (the best epoch came at 26 of 40).
  The same recipe reached 0.97 with 400 phantoms (docs/results.md).
- ``weakseg``: the best weakly-supervised recipe measured (docs/weakseg.md): lr 3e-3 with the gradient clipped
  to norm 1 (the GP models' pooled maps spike the loss otherwise), a 32^3 input (the GP-UNet's receptive field
  covered the lesions at 2 mm, not at 1.33 or 1 mm), 40 epochs, deep supervision 0.5 (the network's default),
  and the negative class chosen automatically when exactly one label names the absence of a finding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from medxai.errors import ConfigError

AUTO = "auto"  # negative_class: pick the class whose name says "absence" (weakseg only)
ABSENCE_NAMES = ("normal", "healthy", "negative", "absent", "nolesion", "notumour", "notumor", "nofinding", "control")


@dataclass(frozen=True)
class TaskDefaults:
    arch: str
    lr: float
    max_grad_norm: float  # 0: no clipping
    spatial_size: int
    epochs: int
    patience: int


TASK_DEFAULTS = {
    "classification": TaskDefaults(arch="small", lr=2e-3, max_grad_norm=0.0, spatial_size=64, epochs=40, patience=40),
    "weakseg": TaskDefaults(arch="gp-unet", lr=3e-3, max_grad_norm=1.0, spatial_size=32, epochs=40, patience=10),
}


@dataclass(frozen=True)
class Augmentation:
    """Light 3D augmentation: flips on every axis, a small affine, intensity scale and shift (MONAI)."""

    flip_prob: float = 0.5
    affine_prob: float = 0.5
    rotate_rad: float = 0.15
    scale: float = 0.08
    translate_voxels: float = 3.0
    intensity_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1

    def build(self, seed: int) -> Any:
        """The MONAI ``Compose`` of these transforms, seeded."""
        from monai.transforms import Compose, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

        transforms = Compose([
            *(RandFlipd(keys="image", prob=self.flip_prob, spatial_axis=axis) for axis in range(3)),
            RandAffined(keys="image", prob=self.affine_prob, rotate_range=(self.rotate_rad,) * 3,
                        scale_range=(self.scale,) * 3, translate_range=(self.translate_voxels,) * 3, padding_mode="zeros"),
            RandScaleIntensityd(keys="image", factors=self.intensity_scale, prob=self.intensity_prob),
            RandShiftIntensityd(keys="image", offsets=self.intensity_shift, prob=self.intensity_prob),
        ])
        transforms.set_random_state(seed=seed)
        return transforms


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


# The parameters each transform class holds, read from the object (MONAI keeps them on inner array transforms).
_PARAMETERS = {
    "RandFlipd": lambda t: {"spatial_axis": t.flipper.spatial_axis},
    "RandAffined": lambda t: {
        "rotate_range_rad": t.rand_affine.rand_affine_grid.rotate_range,
        "scale_range": t.rand_affine.rand_affine_grid.scale_range,
        "translate_range_voxels": t.rand_affine.rand_affine_grid.translate_range,
        "mode": t.mode, "padding_mode": t.padding_mode,
    },
    "RandScaleIntensityd": lambda t: {"factors": t.scaler.factors},
    "RandShiftIntensityd": lambda t: {"offsets": t.shifter.offsets},
}


def describe_augmentation(transforms: Any) -> list[dict[str, Any]]:
    """One record per transform of a MONAI ``Compose``: its class, probability and parameters, read from the
    transform objects themselves (so the record cannot drift from what ran)."""
    records = []
    for transform in transforms.transforms:
        name = type(transform).__name__
        if name not in _PARAMETERS:
            raise TypeError(f"no description of the augmentation transform {name}")
        parameters = {key: _plain(value) for key, value in _PARAMETERS[name](transform).items()}
        records.append({"transform": name, "prob": float(transform.prob), **parameters})
    return records


def absence_class(class_names: Sequence[str]) -> str | None:
    """The one class whose name says "no finding" (normal, healthy, negative, absent, no-lesion, ...), or
    None when no class or several do."""
    matches = [name for name in class_names if re.sub(r"[^a-z]", "", name.lower()) in ABSENCE_NAMES]
    return matches[0] if len(matches) == 1 else None


@dataclass(frozen=True)
class TrainConfig:
    """Every choice of one training run. ``None`` fields take the task's default (:meth:`resolved`);
    ``negative_class`` is a class name, ``"auto"`` (weakseg: :func:`absence_class`; ignored for
    classification) or None (every class its own map)."""

    arch: str | None = None
    task: str = "classification"
    epochs: int | None = None
    batch_size: int = 8
    lr: float | None = None
    val_fraction: float = 0.2
    seed: int = 0
    spatial_size: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None
    device: str = "auto"
    patience: int | None = None
    intensity: str = "zscore"
    classes: tuple[str, ...] | None = None
    max_grad_norm: float | None = None
    warmup_epochs: float = 0.0
    pooling: str | None = None
    deep_supervision: float | None = None
    negative_class: str | None = AUTO
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        size = self.spatial_size
        if isinstance(size, int):
            object.__setattr__(self, "spatial_size", (size,) * 3)
        elif size is not None:
            object.__setattr__(self, "spatial_size", tuple(int(s) for s in size))
        if self.spacing is not None:
            object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))

    @classmethod
    def from_options(cls, **options: Any) -> "TrainConfig":
        """A config from keyword options (the ``train_model`` keywords); an unknown one is a ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**options)

    def resolved(self) -> "TrainConfig":
        """This config with the task's defaults filled in (``negative_class`` stays ``auto`` until the labels
        are known: :meth:`with_classes`)."""
        defaults = TASK_DEFAULTS.get(self.task)
        if defaults is None:
            raise ConfigError(f"unknown task {self.task!r} (expected {', '.join(TASK_DEFAULTS)})")
        size = self.spatial_size or (defaults.spatial_size,) * 3
        return replace(
            self, arch=defaults.arch if self.arch is None else self.arch,
            patience=defaults.patience if self.patience is None else self.patience,
            lr=defaults.lr if self.lr is None else self.lr, epochs=defaults.epochs if self.epochs is None else self.epochs,
            max_grad_norm=defaults.max_grad_norm if self.max_grad_norm is None else self.max_grad_norm,
            spatial_size=size, negative_class=None if self.task != "weakseg" and self.negative_class == AUTO else self.negative_class,
        )

    def validate(self) -> "TrainConfig":
        """The resolved config, or a one-line ConfigError naming the first bad option."""
        from medxai.models.registry import get_architecture
        from medxai.models.weakseg.base import parse_pooling

        config = self.resolved()
        spec = get_architecture(config.arch)
        assert config.epochs is not None and config.lr is not None and config.max_grad_norm is not None
        assert config.arch is not None and config.patience is not None
        if spec.task != config.task:
            raise ConfigError(f"architecture {config.arch!r} is for task {spec.task!r}, not {config.task!r}")
        if config.epochs < 1 or config.batch_size < 1 or not config.lr > 0 or config.patience < 1:
            raise ConfigError("epochs, batch size and patience must be at least 1 and the learning rate positive")
        if not 0 < config.val_fraction < 1:
            raise ConfigError(f"the validation share must lie between 0 and 1, got {config.val_fraction}")
        if not config.max_grad_norm >= 0:
            raise ConfigError(f"the gradient-norm clip must be positive (0: no clipping), got {config.max_grad_norm}")
        if not 0 <= config.warmup_epochs < config.epochs:
            raise ConfigError(f"the warm-up must be at least 0 and shorter than the {config.epochs} epochs, "
                              f"got {config.warmup_epochs}")
        for option, value in (("--pooling", config.pooling), ("--negative-class", config.negative_class)):
            if value is not None and spec.task != "weakseg":
                raise ConfigError(f"{option} applies to the weakly-supervised architectures, not to {config.arch!r}")
        if config.pooling is not None:
            parse_pooling(config.pooling)
        weight = config.deep_supervision
        if weight is not None and (weight < 0 or (weight > 0 and spec.task != "weakseg")):
            raise ConfigError(f"deep supervision is a weight >= 0 for the weakly-supervised architectures, got "
                              f"{weight} for {config.arch!r}")
        return config

    def with_classes(self, class_names: Sequence[str], *, path: Path | None = None) -> tuple["TrainConfig", str | None]:
        """The negative class settled against the labels, and how it was chosen (``option``, ``automatic``,
        or None when there is none); a named class that is not a label is a ConfigError."""
        if self.negative_class == AUTO:
            chosen = absence_class(class_names)
            return replace(self, negative_class=chosen), ("automatic" if chosen else None)
        if self.negative_class is not None and self.negative_class not in class_names:
            raise ConfigError(f"negative class {self.negative_class!r} is not one of the classes ({', '.join(class_names)})",
                              path=path)
        return self, ("option" if self.negative_class else None)
