"""Supervoxel feature ablation: a gradient-free perturbation method.

Each SLIC supervoxel (Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel
Methods", TPAMI 2012; ``skimage.segmentation.slic`` in 3D with the model grid's spacing) is replaced
by a baseline value and the drop of the target is that supervoxel's attribution (Captum's
``FeatureAblation`` with the supervoxel map as feature mask). Needs no gradients, so it also works
on models whose gradients are useless.

By default (no ``supervoxel_mm``) the supervoxel size scales with what the model sees, as occlusion's window:
12 mm, but at least 1/8 of the model grid's extent (the cube root of its volume), so a large field of view
gives a few hundred supervoxels, not tens of thousands. With a region of interest (``roi``: a model-grid mask,
or ``"body"``: the scan's foreground) supervoxels are drawn inside it only (SLIC's ``mask``), everything
outside is one more feature (one pass) and its attribution is set to zero, as occlusion does outside its ROI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import FeatureAblation
from skimage.segmentation import slic
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution, input_key
from medxai.attribution.occlusion import Roi, region_of_interest
from medxai.attribution.targets import BoundTarget
from medxai.attribution.timing import Passes
from medxai.errors import ConfigError

DEFAULT_SUPERVOXEL_MM = 12.0
SUPERVOXELS_PER_AXIS = 8  # a default supervoxel spans at least 1/8 of the model grid's extent (about 8^3 in all)


def supervoxels(inputs: torch.Tensor, *, size_mm: float, spacing_mm: tuple[float, float, float], compactness: float,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """SLIC supervoxels of ``inputs`` ``(1, C, X, Y, Z)`` of about ``size_mm`` across, ``(1, 1, X, Y, Z)`` int64;
    with ``mask`` (X, Y, Z) only inside it, labels from 1, and 0 everywhere outside it."""
    image = inputs[0].detach().float().cpu().numpy()
    low = image.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(image.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    image = np.moveaxis((image - low) / span, 0, -1)  # channels last, each scaled to [0, 1]
    inside = None if mask is None else mask.detach().cpu().numpy().astype(bool)
    voxels = image[..., 0].size if inside is None else int(inside.sum())
    segments = max(2, round(voxels * math.prod(spacing_mm) / size_mm**3))
    labels = slic(image, n_segments=segments, compactness=compactness, spacing=np.asarray(spacing_mm),
                  channel_axis=-1, start_label=0 if inside is None else 1, enforce_connectivity=True, mask=inside)
    return torch.as_tensor(labels, dtype=torch.int64, device=inputs.device)[None, None]


def default_supervoxel_mm(spacing_mm: tuple[float, float, float], shape: tuple[int, ...]) -> float:
    """12 mm, or 1/``SUPERVOXELS_PER_AXIS`` of the model grid's extent (cube root of its volume) when larger."""
    extent_mm3 = math.prod(n * s for n, s in zip(shape, spacing_mm))
    return max(DEFAULT_SUPERVOXEL_MM, extent_mm3 ** (1 / 3) / SUPERVOXELS_PER_AXIS)


@dataclass(frozen=True)
class Supervoxels:
    """Supervoxel labels ``(1, 1, X, Y, Z)`` (0 = outside the ROI when there is one), the ROI, what it is, the size."""

    labels: torch.Tensor
    roi: torch.Tensor | None
    roi_kind: str
    size_mm: float

    @property
    def count(self) -> int:
        """Features ablated: the supervoxels, and the outside of a ROI."""
        return int(self.labels.max()) + 1


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
        supervoxel_mm: float | None = None,
        compactness: float = 0.3,
        baseline: float = 0.0,
        roi: Roi = None,
    ) -> None:
        super().__init__(network, execution=execution)
        if (supervoxel_mm is not None and supervoxel_mm <= 0) or compactness <= 0:
            raise ConfigError(f"feature_ablation needs positive supervoxel_mm and compactness, got {supervoxel_mm}, {compactness}")
        self.params = {"supervoxel_mm": "auto" if supervoxel_mm is None else supervoxel_mm, "compactness": compactness,
                       "baseline": float(baseline), "segmentation": "SLIC (skimage) on the model-grid input",
                       "roi": roi if isinstance(roi, str) else ("none" if roi is None else "given")}
        self.roi = roi
        self._segments: tuple[tuple[object, ...], Supervoxels] | None = None

    def segments(self, inputs: torch.Tensor) -> Supervoxels:
        """The supervoxels of ``inputs``, worked out once per input tensor."""
        key = input_key(inputs)
        if self._segments is None or self._segments[0] != key:
            spatial, spacing = tuple(inputs.shape[2:]), self.execution.spacing_mm
            size = self.params["supervoxel_mm"]
            size = default_supervoxel_mm(spacing, spatial) if size == "auto" else size
            roi, kind = region_of_interest(self.roi, inputs)
            labels = supervoxels(inputs, size_mm=size, spacing_mm=spacing, compactness=self.params["compactness"], mask=roi)
            self._segments = (key, Supervoxels(labels, roi, kind, float(size)))
        return self._segments[1]

    def planned_passes(self, inputs: torch.Tensor) -> Passes:
        """The clean pass, then one forward pass per supervoxel (and one for the outside of a ROI)."""
        features = self.segments(inputs).count
        return Passes(count=features, unit="supervoxels", forward=1 + features, batch=self.pass_batch(features))

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        segments = self.segments(inputs)
        batch = self.batch_size(model, inputs)
        self.diagnostics.update({"supervoxels": segments.count, "supervoxel_mm_used": round(segments.size_mm, 3),
                                 "perturbations_per_eval": batch, "roi": segments.roi_kind})
        heatmap = FeatureAblation(model).attribute(
            inputs, baselines=self.params["baseline"], target=0, feature_mask=segments.labels, perturbations_per_eval=batch
        )
        return heatmap if segments.roi is None else heatmap * segments.roi.to(heatmap.dtype)
