"""Occlusion: the drop of the target when a 3D window of the input is replaced by a baseline value.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014. The window and
stride are given in millimetres and turned into voxels with the model grid's spacing, so the same
options mean the same physical size on anisotropic scans. Without a region of interest this is
Captum's ``Occlusion``. With one (a body mask or a box on the model grid), windows that hold no ROI
voxel are skipped entirely (air costs nothing); Captum has no such option, so that case is a
hand-written batched sliding window over the same window positions as Captum's: inside the ROI the
result equals Captum's, outside it is zero.
"""
from __future__ import annotations

import itertools
import math

import torch
from captum.attr import Occlusion
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution
from medxai.attribution.targets import BoundTarget
from medxai.errors import ConfigError


def window_voxels(size_mm: float, spacing_mm: tuple[float, float, float], shape: tuple[int, ...]) -> tuple[int, ...]:
    """A length in mm as a voxel count per axis (at least 1, at most the axis length)."""
    return tuple(max(1, min(int(n), round(size_mm / s))) for s, n in zip(spacing_mm, shape))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Captum's window positions along one axis: ceil((length - window) / stride) + 1 starts."""
    return [i * stride for i in range(math.ceil((length - window) / stride) + 1)]


class OcclusionMethod(AttributionMethod):
    """Mean output drop over the windows covering each voxel (signed; positive = evidence for the target)."""

    name = "occlusion"
    sign = "signed"
    needs_gradients = False
    reference = "Zeiler & Fergus 2014, arXiv:1311.2901"
    batches = True
    pass_memory = 2.0  # per occluded copy, of the forward-only estimate: measured 0.9-1.9 (tiny CNN to DenseNet121)

    def __init__(
        self,
        network: nn.Module,
        *,
        execution: Execution | None = None,
        window_mm: float = 16.0,
        stride_mm: float = 8.0,
        baseline: float = 0.0,
        roi: torch.Tensor | None = None,
    ) -> None:
        super().__init__(network, execution=execution)
        if window_mm <= 0 or not 0 < stride_mm <= window_mm:
            raise ConfigError(f"occlusion needs 0 < stride_mm <= window_mm, got window {window_mm}, stride {stride_mm}")
        self.params = {"window_mm": window_mm, "stride_mm": stride_mm, "baseline": float(baseline),
                       "roi": "none" if roi is None else "given"}
        self.roi = roi

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        spatial = tuple(inputs.shape[2:])
        window = window_voxels(self.params["window_mm"], self.execution.spacing_mm, spatial)
        stride = tuple(min(w, s) for w, s in zip(window, window_voxels(self.params["stride_mm"], self.execution.spacing_mm, spatial)))
        batch = self.batch_size(model, inputs)
        self.diagnostics.update({"window_voxels": window, "stride_voxels": stride, "perturbations_per_eval": batch})
        if self.roi is None:
            channels = inputs.shape[1]
            return Occlusion(model).attribute(
                inputs, sliding_window_shapes=(channels, *window), strides=(channels, *stride),
                baselines=self.params["baseline"], target=0, perturbations_per_eval=batch,
            )
        return self._occlude_roi(model, inputs, window, stride, batch)

    def _occlude_roi(
        self, model: BoundTarget, inputs: torch.Tensor, window: tuple[int, ...], stride: tuple[int, ...], batch: int
    ) -> torch.Tensor:
        roi = self.roi.to(device=inputs.device, dtype=torch.bool)
        if tuple(roi.shape) != tuple(inputs.shape[2:]):
            raise ConfigError(f"occlusion ROI shape {tuple(roi.shape)} differs from the model grid {tuple(inputs.shape[2:])}")
        starts = [window_starts(n, w, s) for n, w, s in zip(inputs.shape[2:], window, stride)]
        boxes = [tuple(slice(a, a + w) for a, w in zip(corner, window)) for corner in itertools.product(*starts)]
        boxes = [box for box in boxes if bool(roi[box].any())]
        self.diagnostics["windows_evaluated"] = len(boxes)
        total = torch.zeros(inputs.shape[2:], device=inputs.device)
        count = torch.zeros_like(total)
        with torch.no_grad():
            reference = model(inputs)[0, 0]
            for first in range(0, len(boxes), batch):
                chunk = boxes[first : first + batch]
                occluded = inputs.expand(len(chunk), *inputs.shape[1:]).clone()
                for row, box in enumerate(chunk):
                    occluded[(row, slice(None), *box)] = self.params["baseline"]
                drops = reference - model(occluded)[:, 0]
                for drop, box in zip(drops, chunk):
                    total[box] += drop
                    count[box] += 1
        heatmap = torch.where(roi & (count > 0), total / count.clamp(min=1), torch.zeros_like(total))
        return heatmap.expand(inputs.shape[1:]).unsqueeze(0).clone()
