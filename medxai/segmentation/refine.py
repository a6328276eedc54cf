"""Optional image-based refinement of a weakly-supervised mask (``medxai segment --refine METHOD``).

A class map says *where* the evidence is but draws its boundary at the scale of the network's receptive
field: thresholded, it gives a blob around the lesion, not the lesion's margin. Refinement keeps the map's
localisation and takes the margin from the image: the connected component of the thresholded mask that
holds the mask's highest-scoring voxel is boxed with a margin in mm; the box is split into two intensity
classes by a clustering segmenter of :mod:`medxai.radiomics.segmenters` (Otsu, fuzzy c-means, Gaussian
mixture, k-means); the class with the higher mean heatmap is the lesion (so bright and dark lesions both
work, and a box much larger than the lesion does not flip the choice, as a rule based on the box centre
would); an opening, hole filling and the component at the peak (or nearest to it) clean it. Like the CRF
refinement common in weakly-supervised segmentation, it reads the image only, never a voxel label. It is
not part of Chatterjee et al.'s method: report both.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from medxai.errors import ConfigError, InvalidInputError
from medxai.volume import Step, Volume

DEFAULT_MARGIN_MM = 3.0


def refiners() -> tuple[str, ...]:
    from medxai.radiomics.segmenters import CLUSTERING

    return CLUSTERING


def check_refiner(method: str | None) -> None:
    if method is not None and method not in refiners():
        raise ConfigError(f"unknown --refine method {method!r} (choose from {', '.join(refiners())})")


def refine_mask(mask: Volume, heatmap: Volume, image: Volume, *, method: str, margin_mm: float = DEFAULT_MARGIN_MM,
                seed: int = 0) -> tuple[Volume, dict[str, Any]]:
    """The mask re-drawn from ``image`` inside a box around the component of ``mask`` at the heatmap's peak.

    ``mask``, ``heatmap`` and ``image`` share one grid. An empty mask stays empty. When the segmenter
    finds nothing in the box the component itself is kept (``info["fallback"]`` says why)."""
    from medxai.radiomics.segmenters import clean_mask, split_intensities

    check_refiner(method)
    if not (mask.same_grid(heatmap) and mask.same_grid(image)):
        raise InvalidInputError("refinement needs the mask, heatmap and image on one grid")
    binary = np.asarray(mask.data) > 0
    info: dict[str, Any] = {"method": method, "margin_mm": margin_mm, "box": None, "fallback": None}
    if not binary.any():
        return mask, info
    labels, _ = ndimage.label(binary)
    values = np.where(binary, np.asarray(heatmap.data, dtype=np.float64), -np.inf)
    peak = np.unravel_index(int(np.argmax(values)), binary.shape)  # the mask's highest-scoring voxel
    component = labels == labels[peak]
    spacing = np.abs(np.asarray(image.spacing, dtype=np.float64))
    pad = np.ceil(margin_mm / spacing).astype(int)
    where = np.argwhere(component)
    lo = np.maximum(where.min(axis=0) - pad, 0)
    hi = np.minimum(where.max(axis=0) + pad, np.asarray(binary.shape) - 1)
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
    info["box"] = {"lo": [int(v) for v in lo], "hi": [int(v) for v in hi], "anchor": [int(v) for v in peak]}
    roi = np.asarray(image.data[box], dtype=np.float64)
    refined = np.zeros(binary.shape, dtype=bool)
    bright = split_intensities(roi, method=method, seed=seed) if roi.size >= 8 and np.ptp(roi) > 0 else None
    if bright is None or bright.all() or not bright.any():
        refined, info["fallback"] = component, "kept the thresholded component: the box holds one intensity class"
    else:
        heat = np.asarray(heatmap.data[box], dtype=np.float64)
        lesion = bright if heat[bright].mean() >= heat[~bright].mean() else ~bright
        anchor = np.asarray(peak) - lo
        lesion = clean_mask(lesion, anchor=anchor, spacing=spacing)
        if lesion.any():
            refined[box] = lesion
        else:
            refined, info["fallback"] = component, "kept the thresholded component: the split left no lesion voxel"
    step = Step("refine", {"method": method, "margin_mm": margin_mm, "lo": info["box"]["lo"], "hi": info["box"]["hi"]})
    return mask.with_data(refined.astype(np.uint8), step=step), info
