"""Agreement of a predicted mask with a reference mask: Dice, IoU (Jaccard) and HD95 in millimetres.

HD95 is MONAI's ``compute_hausdorff_distance`` with ``percentile=95`` on the masks' surface voxels, with
the voxel spacing of the grid (Euclidean distances in mm, anisotropy respected): the larger of the two
directed 95th-percentile surface distances (pred -> reference, reference -> pred).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance

from medxai.errors import InvalidInputError
from medxai.volume import Volume


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|); 1.0 when both masks are empty."""
    a, b = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|A and B| / |A or B|; 1.0 when both masks are empty."""
    a, b = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def hd95_mm(pred: np.ndarray, truth: np.ndarray, *, spacing: tuple[float, float, float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm; NaN when either mask is empty."""
    a, b = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if not a.any() or not b.any():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty-mask warnings: handled above
        warnings.simplefilter("ignore", FutureWarning)  # MONAI-internal deprecation notice
        value = compute_hausdorff_distance(
            torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None],
            include_background=True, percentile=95, spacing=[float(s) for s in spacing],
        )
    return float(value.item())


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL: |det| of the affine's linear part (mm^3, exact for oblique grids) / 1000."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def overlap_scores(pred: Volume, truth: Volume) -> dict[str, float]:
    """``dice``, ``iou``, ``hd95_mm`` and both volumes in mL for two masks on one grid."""
    if not pred.same_grid(truth):
        raise InvalidInputError(
            f"reference mask grid {truth.shape} does not match the predicted mask grid {pred.shape}",
            path=truth.metadata.get("source"),
        )
    a, b = np.asarray(pred.data) > 0, np.asarray(truth.data) > 0
    unit = voxel_volume_ml(pred.affine)
    return {
        "dice": dice(a, b),
        "iou": iou(a, b),
        "hd95_mm": hd95_mm(a, b, spacing=pred.spacing),
        "volume_ml": float(a.sum()) * unit,
        "reference_volume_ml": float(b.sum()) * unit,
    }
