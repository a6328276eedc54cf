"""Supervoxel feature ablation: a gradient-free perturbation method.

Each SLIC supervoxel (Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel
Methods", TPAMI 2012; ``skimage.segmentation.slic`` in 3D with the model grid's spacing) is replaced
by a baseline value and the drop of the target is that supervoxel's attribution (Captum's
``FeatureAblation`` with the supervoxel map as feature mask). Needs no gradients, so it also works
on models whose gradients are useless.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from captum.attr import FeatureAblation
from skimage.segmentation import slic
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution
from medxai.attribution.targets import BoundTarget
from medxai.errors import ConfigError


def supervoxels(inputs: torch.Tensor, *, size_mm: float, spacing_mm: tuple[float, float, float], compactness: float) -> torch.Tensor:
    """SLIC supervoxels of ``inputs`` ``(1, C, X, Y, Z)`` of about ``size_mm`` across, ``(1, 1, X, Y, Z)`` int64."""
    image = inputs[0].detach().float().cpu().numpy()
    low = image.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(image.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    image = np.moveaxis((image - low) / span, 0, -1)  # channels last, each scaled to [0, 1]
    extent_mm3 = math.prod(n * s for n, s in zip(image.shape[:3], spacing_mm))
    segments = max(2, round(extent_mm3 / size_mm**3))
    labels = slic(image, n_segments=segments, compactness=compactness, spacing=np.asarray(spacing_mm),
                  channel_axis=-1, start_label=0, enforce_connectivity=True)
    return torch.as_tensor(labels, dtype=torch.int64, device=inputs.device)[None, None]


class FeatureAblationMethod(AttributionMethod):
    """Target drop when each supervoxel is set to ``baseline`` (signed; positive = evidence for the target)."""

    name = "feature_ablation"
    sign = "signed"
    needs_gradients = False
    reference = "Zeiler & Fergus 2014 (ablation); Achanta et al. 2012 (SLIC supervoxels)"
    batches = True
    pass_memory = 2.0  # as occlusion: one forward-only pass per batch of ablated copies

    def __init__(
        self,
        network: nn.Module,
        *,
        execution: Execution | None = None,
        supervoxel_mm: float = 12.0,
        compactness: float = 0.3,
        baseline: float = 0.0,
    ) -> None:
        super().__init__(network, execution=execution)
        if supervoxel_mm <= 0 or compactness <= 0:
            raise ConfigError(f"feature_ablation needs positive supervoxel_mm and compactness, got {supervoxel_mm}, {compactness}")
        self.params = {"supervoxel_mm": supervoxel_mm, "compactness": compactness, "baseline": float(baseline),
                       "segmentation": "SLIC (skimage) on the model-grid input"}

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        mask = supervoxels(inputs, size_mm=self.params["supervoxel_mm"], spacing_mm=self.execution.spacing_mm,
                           compactness=self.params["compactness"])
        batch = self.batch_size(model, inputs)
        self.diagnostics.update({"supervoxels": int(mask.max()) + 1, "perturbations_per_eval": batch})
        return FeatureAblation(model).attribute(
            inputs, baselines=self.params["baseline"], target=0, feature_mask=mask, perturbations_per_eval=batch
        )
