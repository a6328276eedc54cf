"""From a class map to the final mask: the threshold, clean-up (largest connected component, enclosed holes
filled; SciPy) and the optional refinement from the image (:mod:`medxai.segmentation.refine`)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from medxai.errors import ConfigError
from medxai.segmentation.threshold import ThresholdRule, binarize, threshold_level
from medxai.volume import Step, Volume

if TYPE_CHECKING:
    from medxai.segmentation.heatmaps import ClassMap


def largest_component(mask: np.ndarray, *, connectivity: int = 3) -> np.ndarray:
    """The largest connected component of a 3D boolean mask (``connectivity`` 1 = faces, 2 = +edges,
    3 = +corners, as :func:`scipy.ndimage.generate_binary_structure`). Ties keep the lowest label."""
    binary = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(binary, structure=ndimage.generate_binary_structure(3, connectivity))
    if count <= 1:
        return binary
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill cavities fully enclosed in 3D (face connectivity of the background)."""
    return ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))


def clean_mask(mask: np.ndarray, *, keep_largest: bool, fill: bool) -> np.ndarray:
    """Optional hole filling, then optional largest-component selection (hole filling first, so a shell
    split by the threshold still counts as one object)."""
    result = np.asarray(mask, dtype=bool)
    if fill:
        result = fill_holes(result)
    if keep_largest:
        result = largest_component(result)
    return result


def map_level(class_map: "ClassMap", rule: ThresholdRule, image: Volume | None) -> tuple[float, str]:
    """The level of ``rule`` for one class map and the map it was computed on. The level comes from the
    model-grid map (what the network produced, whatever background a scan's field of view adds), except for
    rules over the body, computed on the native-grid map inside the foreground of ``image`` (the scan's first
    channel). ``inf`` for a forced-empty mask."""
    if class_map.empty_reason:
        return math.inf, "none (empty mask forced)"
    if not rule.needs_body:
        return threshold_level(class_map.model_map, rule), "model-grid map (positive part)"
    from medxai.metrics.sanity import foreground_array

    if image is None or not image.same_grid(class_map.heatmap):
        raise ConfigError(f"threshold {rule} needs the scan on the heatmap's grid (its body)")
    body = foreground_array(np.asarray(image.data, dtype=np.float64))
    return threshold_level(class_map.heatmap.data, rule, body=body), "native-grid map inside the body (positive part)"


def cut_mask(class_map: "ClassMap", *, rule: ThresholdRule, keep_largest: bool, fill: bool, refine: str | None = None,
             image: Volume | None = None, refine_margin_mm: float = 3.0, seed: int = 0) -> tuple[Volume, float]:
    """The mask of one class map and its level (map units; ``inf`` for a forced-empty mask). ``image`` is the
    scan's first channel: rules over the body read it, and with ``refine`` (a box segmenter) the mask is
    re-drawn from it around the map's peak; what was done is in the mask's ``metadata["refine"]``."""
    level, computed_on = map_level(class_map, rule, image)
    binary = clean_mask(binarize(class_map.heatmap.data, level), keep_largest=keep_largest, fill=fill)
    step = Step("threshold", {"rule": str(rule), "level": level, "largest_component": keep_largest, "fill_holes": fill})
    mask = class_map.heatmap.with_data(binary.astype(np.uint8), step=step, threshold_computed_on=computed_on)
    if refine is not None:
        from medxai.segmentation.refine import refine_mask

        if image is None:
            raise ConfigError("refinement needs the scan image")
        mask, info = refine_mask(mask, class_map.heatmap, image, method=refine, margin_mm=refine_margin_mm, seed=seed)
        mask = mask.with_data(mask.data, refine=info)
    return mask, level
