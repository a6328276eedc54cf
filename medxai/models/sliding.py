"""Sliding-window inference for models trained on patches: the whole scan at the training spacing, cut into
patch-sized windows by MONAI's :class:`~monai.inferers.SlidingWindowInferer`, maps blended back into one volume.

A model directory records ``sliding_window`` (:class:`SlidingWindow`) when its network was trained on patches.
Loading such a model wraps its network in :class:`SlidingWindowNetwork`, and its preprocessor resamples the
whole scan to the recorded spacing instead of resizing it to the patch (``Preprocessor(window_spacing=)``),
so every map comes back onto the scan's own grid through the same recorded inverse as the whole-volume path.

Scan-level class score (:func:`aggregate_logits`): a window is a bag instance and the scan is positive when
*any* window is (multiple-instance learning). With an absence class (the GP network's flat class, else a class
named ``normal``, the label ``medxai patch-cohort`` gives tumour-free patches), the scan's logits are those of
the window least likely to be that class: the max over windows of the presence. The mean over windows would
dilute a lesion seen by one window of a hundred into a "normal" scan. Without an absence class (no presence
task) no window can speak for the scan, so the logits are averaged over the windows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.data.utils import dense_patch_slices
from monai.inferers import SlidingWindowInferer
from torch import nn

from medxai.errors import ConfigError

BLEND_MODES = ("gaussian", "constant")
RECORD_KEYS = ("patch_size", "spacing_mm", "overlap", "blend")
ABSENCE_NAME = "normal"  # the label of tumour-free patches (medxai.models.patch_cohort)
MAX_PATCH_AXIS = 1024
SPACING_RANGE_MM = (0.01, 100.0)


@dataclass(frozen=True)
class SlidingWindow:
    """How a patch-trained model sees a whole scan: ``patch_size`` voxels at ``spacing_mm``, windows
    overlapping by ``overlap`` (0 <= overlap < 1) and blended by ``blend`` (``gaussian`` or ``constant``).
    ``sw_batch_size`` (windows per forward pass, which bounds the memory) is a run-time setting, not recorded."""

    patch_size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    overlap: float = 0.25
    blend: str = "gaussian"
    sw_batch_size: int = 4

    def __post_init__(self) -> None:
        size = tuple(self.patch_size)
        if len(size) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_PATCH_AXIS for s in size):
            raise ConfigError(f"sliding_window.patch_size must be three whole numbers of 1..{MAX_PATCH_AXIS}, got {self.patch_size}")
        spacing = tuple(self.spacing_mm)
        if len(spacing) != 3 or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
                                        and SPACING_RANGE_MM[0] <= s <= SPACING_RANGE_MM[1] for s in spacing):
            raise ConfigError(f"sliding_window.spacing_mm must be three sizes of {SPACING_RANGE_MM[0]}..{SPACING_RANGE_MM[1]} mm, "
                              f"got {self.spacing_mm}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)) or not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"sliding_window.overlap must be a number in [0, 1), got {self.overlap!r}")
        if self.blend not in BLEND_MODES:
            raise ConfigError(f"sliding_window.blend must be one of {', '.join(BLEND_MODES)}, got {self.blend!r}")
        if isinstance(self.sw_batch_size, bool) or not isinstance(self.sw_batch_size, int) or self.sw_batch_size < 1:
            raise ConfigError(f"the window batch size must be a whole number >= 1, got {self.sw_batch_size!r}")
        object.__setattr__(self, "patch_size", size)
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in spacing))
        object.__setattr__(self, "overlap", float(self.overlap))

    @classmethod
    def from_record(cls, record: Any) -> "SlidingWindow":
        """Validate the ``sliding_window`` object of ``medxai-model.json`` (ConfigError naming the problem)."""
        if not isinstance(record, Mapping):
            raise ConfigError("sliding_window must be a JSON object")
        unknown = sorted(set(record) - set(RECORD_KEYS))
        missing = [key for key in RECORD_KEYS[:2] if key not in record]
        if unknown or missing:
            raise ConfigError(f"sliding_window: unknown keys {unknown}" if unknown else f"sliding_window lacks {', '.join(missing)}")
        for key in ("patch_size", "spacing_mm"):
            if not isinstance(record[key], (list, tuple)):
                raise ConfigError(f"sliding_window.{key} must be a list of three numbers")
        return cls(patch_size=tuple(record["patch_size"]), spacing_mm=tuple(record["spacing_mm"]),  # type: ignore[arg-type]
                   overlap=record.get("overlap", 0.25), blend=record.get("blend", "gaussian"))

    def to_record(self) -> dict[str, Any]:
        """The JSON object recorded in ``medxai-model.json`` (run-time settings left out)."""
        return {"patch_size": list(self.patch_size), "spacing_mm": list(self.spacing_mm), "overlap": self.overlap,
                "blend": self.blend}

    def inferer(self) -> SlidingWindowInferer:
        """MONAI's inferer for these windows (inputs smaller than a window are zero-padded, then cropped back)."""
        return SlidingWindowInferer(roi_size=self.patch_size, sw_batch_size=self.sw_batch_size, overlap=self.overlap,
                                    mode=self.blend, padding_mode="constant", cval=0.0)


def padded_to_window(inputs: torch.Tensor, window: SlidingWindow) -> torch.Tensor:
    """``inputs`` (N, C, X, Y, Z) zero-padded on both sides to at least one window, as the inferer pads them."""
    pad: list[int] = []
    for axis in (4, 3, 2):  # F.pad lists the last axis first
        diff = max(window.patch_size[axis - 2] - inputs.shape[axis], 0)
        pad += [diff // 2, diff - diff // 2]
    return F.pad(inputs, pad, mode="constant", value=0.0) if any(pad) else inputs


def window_slices(shape: Sequence[int], window: SlidingWindow) -> list[tuple[slice, slice, slice]]:
    """The windows (slices of the padded grid) in the inferer's order.

    The interval rule is MONAI's own (``monai.inferers.utils._get_scan_interval``, private, restated here):
    ``int(patch * (1 - overlap))`` (at least 1), or the patch itself where the grid is one window wide."""
    size = [max(int(n), p) for n, p in zip(shape, window.patch_size)]
    interval = [p if p == n else max(int(p * (1 - window.overlap)), 1) for n, p in zip(size, window.patch_size)]
    return [tuple(s) for s in dense_patch_slices(size, window.patch_size, interval)]  # type: ignore[misc]


def aggregate_logits(window_logits: torch.Tensor, absence: int | None) -> torch.Tensor:
    """The scan's logits ``(K,)`` from its windows' ``(W, K)``: the logits of the window least likely to be
    the ``absence`` class (max over windows of the presence), or their mean when there is no absence class."""
    if absence is None:
        return window_logits.mean(dim=0)
    chosen = torch.softmax(window_logits.float(), dim=1)[:, absence].argmin()
    return window_logits[chosen]


def scan_score_rule(absence: str | None) -> str:
    """How the scan-level score was made (recorded beside predictions and explanations)."""
    if absence is None:
        return "mean of the windows' logits (no absence class)"
    return f"logits of the window least likely to be {absence!r} (max over windows of the presence)"


class SlidingWindowNetwork(nn.Module):
    """A patch-trained ``base`` network seen on whole scans: ``forward(x)`` gives the scan's logits (N, K)
    aggregated over the windows (:func:`aggregate_logits`), ``heatmaps(x)`` (networks with class maps) the
    windows' class maps blended into one (N, K, X, Y, Z) volume by MONAI's inferer. Without gradients, each
    call first checks that one window batch and the stitched output fit in memory (``memory.check_fits``)."""

    def __init__(self, base: nn.Module, window: SlidingWindow, *, absence: int | None, num_classes: int) -> None:
        super().__init__()
        self.base = base
        self.window = window
        self.absence = absence
        self.num_classes = int(num_classes)

    @property
    def negative_class(self) -> int | None:
        return getattr(self.base, "negative_class", None)

    def window_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every window's logits, ``(N, W, K)``, ``sw_batch_size`` windows per pass."""
        padded = padded_to_window(x, self.window)
        slices = window_slices(padded.shape[2:], self.window)
        step = self.window.sw_batch_size
        per_case = []
        for case in padded:
            logits = [self.base(torch.stack([case[(slice(None), *s)] for s in slices[start:start + step]]))
                      for start in range(0, len(slices), step)]
            per_case.append(torch.cat(logits))
        return torch.stack(per_case)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._preflight(x, outputs=0)
        return torch.stack([aggregate_logits(logits, self.absence) for logits in self.window_logits(x)])

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.base, "heatmaps"):
            raise ConfigError("this patch-trained network has no class maps of its own")
        self._preflight(x, outputs=self.num_classes)
        return self.window.inferer()(x, self.base.heatmaps)

    def _preflight(self, x: torch.Tensor, *, outputs: int) -> None:
        """MemoryError before a pass whose window batch plus stitched maps would not fit (no-grad passes only)."""
        if torch.is_grad_enabled():
            return
        from medxai.attribution.memory import check_fits, per_sample_bytes

        probe = padded_to_window(x[:1], self.window)[(slice(None), slice(None), *window_slices(x.shape[2:], self.window)[0])]
        per_window = per_sample_bytes(self.base, probe, backward=False)
        stitched = 2 * outputs * x[0, 0].numel() * 4  # the blended maps and the inferer's weight sums, float32
        check_fits("sliding-window inference", per_window * self.window.sw_batch_size + stitched, x.device)


def absence_index(network: nn.Module, classes: Sequence[str]) -> int | None:
    """The absence class of a presence task: the network's flat (negative) class, else one named ``normal``."""
    negative = getattr(network, "negative_class", None)
    if negative is not None:
        return int(negative)
    return list(classes).index(ABSENCE_NAME) if ABSENCE_NAME in classes else None
