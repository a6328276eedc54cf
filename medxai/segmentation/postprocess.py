"""Mask clean-up after thresholding: keep the largest connected component, fill enclosed holes (SciPy)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


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
