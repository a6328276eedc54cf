"""Regions given on the scan's own grid (mask file, box, voxel) carried onto the model grid.

The region is pushed through the model's own recorded spatial preprocessing (MONAI ``Orientationd`` ->
``Spacingd`` -> ``Resized``/``ResizeWithPadOrCropd``, the same Compose that made the model input), then
thresholded at one half. A region smaller than a model voxel (one voxel, a thin box) keeps the model
voxels where it landed most, so it never vanishes.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from medxai.errors import ConfigError
from medxai.volume import Volume

SPATIAL_KEY = "image"  # the key of the models' preprocessing Compose (medxai.models.preprocessing)


def box_mask(reference: Volume, box: Sequence[int]) -> np.ndarray:
    """A boolean mask of the native grid from inclusive corners ``(i0, j0, k0, i1, j1, k1)``."""
    if len(box) != 6:
        raise ConfigError(f"a box needs six voxel indices i0,j0,k0,i1,j1,k1, got {len(box)}")
    low, high = np.asarray(box[:3], dtype=int), np.asarray(box[3:], dtype=int)
    shape = np.asarray(reference.shape)
    if np.any(low < 0) or np.any(high >= shape) or np.any(low > high):
        raise ConfigError(f"box {tuple(int(b) for b in box)} is not inside the scan grid {tuple(int(s) for s in shape)} "
                          "(inclusive corners, low <= high)")
    mask = np.zeros(reference.shape, dtype=bool)
    mask[low[0] : high[0] + 1, low[1] : high[1] + 1, low[2] : high[2] + 1] = True
    return mask


def voxel_mask(reference: Volume, voxel: Sequence[int]) -> np.ndarray:
    """A boolean mask of the native grid holding the one voxel ``(i, j, k)``."""
    if len(voxel) != 3:
        raise ConfigError(f"a voxel needs three indices i,j,k, got {len(voxel)}")
    return box_mask(reference, [*voxel, *voxel])


def to_model_grid(mask: np.ndarray, reference: Volume, spatial: Any) -> torch.Tensor:
    """``mask`` (native grid, bool) on the model grid as a bool tensor ``(X, Y, Z)``.

    ``spatial`` is the preprocessor's spatial MONAI transform (``Preprocessor.spatial``).
    """
    if tuple(mask.shape) != reference.shape:
        raise ConfigError(f"region shape {tuple(mask.shape)} differs from the scan grid {reference.shape}")
    tensor = MetaTensor(torch.from_numpy(mask.astype(np.float32))[None], affine=torch.as_tensor(reference.affine, dtype=torch.float64))
    moved = torch.as_tensor(spatial({SPATIAL_KEY: tensor})[SPATIAL_KEY])[0].float()
    region = moved >= 0.5
    if not bool(region.any()):
        peak = float(moved.max())
        if peak <= 0:
            raise ConfigError("the region lies outside the model's field of view")
        region = moved >= peak * (1 - 1e-6)
    return region
