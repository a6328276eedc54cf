"""Localisation of a heatmap against a ground-truth mask, in physical units, on the scan's native grid.

Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016) with a
tolerance in mm; relevance mass and relevance rank accuracy (Arras et al., "CLEVR-XAI", Information Fusion
2022); AUROC of the heatmap as a voxel classifier of the mask; distances in mm from the heatmap's peak and
centre of mass to the mask; and the share of attribution in peritumoral shells (0-2, 2-4, ... mm outside the
lesion). Distances to the mask come from SciPy's Euclidean distance transform with ``sampling`` = voxel
spacing (exact for the orthogonal axes of scanner affines, oblique or flipped); centres of mass are mapped
to world mm through the affine.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from medxai.errors import InvalidInputError
from medxai.volume import Volume

DEFAULT_SHELLS_MM = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)


def _checked(heatmap: Volume, mask: Volume) -> tuple[np.ndarray, np.ndarray]:
    """The heatmap as float64 and the mask as bool, refusing different grids and empty masks."""
    if not heatmap.same_grid(mask):
        raise InvalidInputError(
            f"heatmap grid (shape {heatmap.shape}, orientation {heatmap.orientation}) does not match the mask grid "
            f"(shape {mask.shape}, orientation {mask.orientation}); localisation needs both on the scan's grid",
            path=mask.metadata.get("source"),
        )
    binary = np.asarray(mask.data) > 0
    if not binary.any():
        raise InvalidInputError("mask is empty", path=mask.metadata.get("source"))
    values = np.asarray(heatmap.data, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("heatmap holds NaN or infinite values", path=heatmap.metadata.get("source"))
    return values, binary


def distance_outside_mm(mask: Volume) -> np.ndarray:
    """Distance in mm from every voxel to the nearest mask voxel centre (0 inside the mask)."""
    return _distance_outside(np.asarray(mask.data) > 0, mask.spacing)


def _distance_outside(binary: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    return ndimage.distance_transform_edt(~binary, sampling=spacing)


def peak_index(heatmap: np.ndarray) -> tuple[int, int, int]:
    """Index of the heatmap's maximum (the first one in C order when several voxels tie)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(heatmap)), heatmap.shape))  # type: ignore[return-value]


def pointing_game(heatmap: Volume, mask: Volume, *, tolerance_mm: float = 0.0) -> bool:
    """True when the heatmap's peak lies in the mask or within ``tolerance_mm`` of it."""
    values, binary = _checked(heatmap, mask)
    return bool(_distance_outside(binary, mask.spacing)[peak_index(values)] <= tolerance_mm)


def _positive_share(positive: np.ndarray, region: np.ndarray) -> float:
    total = float(positive.sum())
    return float(positive[region].sum() / total) if total > 0 else math.nan


def relevance_mass(heatmap: Volume, mask: Volume) -> float:
    """Share of the positive attribution that falls inside the mask (NaN when nothing is positive)."""
    values, binary = _checked(heatmap, mask)
    return _positive_share(np.clip(values, 0.0, None), binary)


def _relevance_rank(values: np.ndarray, binary: np.ndarray) -> float:
    k = int(binary.sum())
    top = np.argsort(-values.ravel(), kind="stable")[:k]
    return float(binary.ravel()[top].sum() / k)


def relevance_rank(heatmap: Volume, mask: Volume) -> float:
    """Share of the heatmap's top-K voxels (K = mask voxels) that lie inside the mask; ties broken by voxel
    order."""
    return _relevance_rank(*_checked(heatmap, mask))


def _auroc(values: np.ndarray, binary: np.ndarray) -> float:
    if binary.all():
        return math.nan
    return float(roc_auc_score(binary.ravel(), values.ravel()))


def auroc(heatmap: Volume, mask: Volume) -> float:
    """Area under the ROC curve of the heatmap as a voxel-wise classifier of the mask (ties count half, so
    a flat map gives 0.5); NaN when the mask covers the whole grid."""
    return _auroc(*_checked(heatmap, mask))


def centre_of_mass_index(heatmap: np.ndarray) -> np.ndarray | None:
    """Fractional voxel index of the centre of mass of the positive part (None when nothing is positive)."""
    positive = np.clip(heatmap, 0.0, None)
    if positive.sum() <= 0:
        return None
    return np.asarray(ndimage.center_of_mass(positive), dtype=np.float64)


def _nearest_mask_mm(mask: Volume, binary: np.ndarray, point: np.ndarray) -> float:
    """Distance in mm from a fractional voxel position to the nearest mask voxel centre (0 when the voxel
    containing the point is in the mask)."""
    rounded = tuple(int(v) for v in np.clip(np.rint(point), 0, np.array(binary.shape) - 1))
    if binary[rounded]:
        return 0.0
    surface = np.argwhere(binary & ~ndimage.binary_erosion(binary))
    return float(np.min(np.linalg.norm(mask.index_to_world(surface) - mask.index_to_world(point), axis=1)))


def _distances(mask: Volume, values: np.ndarray, binary: np.ndarray, distance: np.ndarray) -> dict[str, float]:
    centre = mask.index_to_world(np.asarray(ndimage.center_of_mass(binary)))[0]
    peak = peak_index(values)
    com = centre_of_mass_index(values)
    return {
        "peak_distance_mm": float(distance[peak]),
        "peak_to_centre_mm": float(np.linalg.norm(mask.index_to_world(np.asarray(peak))[0] - centre)),
        "com_distance_mm": math.nan if com is None else _nearest_mask_mm(mask, binary, com),
        "com_to_centre_mm": math.nan if com is None else float(np.linalg.norm(mask.index_to_world(com)[0] - centre)),
    }


def distances_mm(heatmap: Volume, mask: Volume) -> dict[str, float]:
    """Distances in mm from the heatmap's peak and from the centre of mass of its positive part to the
    nearest mask voxel (``peak_distance_mm``, ``com_distance_mm``; 0 inside the mask) and to the mask's
    centre of mass (``peak_to_centre_mm``, ``com_to_centre_mm``). NaN for a centre of mass when nothing is
    positive."""
    values, binary = _checked(heatmap, mask)
    return _distances(mask, values, binary, _distance_outside(binary, mask.spacing))


def shell_name(inner_mm: float, outer_mm: float) -> str:
    return f"shell_mass_{inner_mm:g}_{outer_mm:g}mm"


def _shell_mass(values: np.ndarray, binary: np.ndarray, distance: np.ndarray, edges_mm: Sequence[float]) -> dict[str, float]:
    edges = [float(e) for e in edges_mm]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
        raise InvalidInputError(f"shell edges must increase from >= 0 mm, got {edges}")
    positive = np.clip(values, 0.0, None)
    result: dict[str, float] = {}
    for inner, outer in zip(edges, edges[1:]):
        result[shell_name(inner, outer)] = _positive_share(positive, (distance > inner) & (distance <= outer))
    return result


def shell_mass(heatmap: Volume, mask: Volume, *, edges_mm: Sequence[float] = DEFAULT_SHELLS_MM) -> dict[str, float]:
    """Share of the positive attribution in each peritumoral shell ``edges[i] < d <= edges[i+1]`` mm outside
    the lesion (``shell_mass_0_2mm`` ...), d being the Euclidean distance
    to the nearest lesion voxel on the (anisotropic) grid. NaN when nothing is positive."""
    values, binary = _checked(heatmap, mask)
    return _shell_mass(values, binary, _distance_outside(binary, mask.spacing), edges_mm)


def localisation_scores(
    heatmap: Volume,
    mask: Volume,
    *,
    tolerance_mm: float = 0.0,
    shell_edges_mm: Sequence[float] = DEFAULT_SHELLS_MM,
) -> dict[str, float]:
    """Every localisation score of one heatmap against one mask as a flat dict (``pointing_game`` 0/1;
    ``mass_in_mask`` is the relevance mass accuracy), computing the distance transform once."""
    values, binary = _checked(heatmap, mask)
    distance = _distance_outside(binary, mask.spacing)
    scores: dict[str, float] = {
        "pointing_game": float(distance[peak_index(values)] <= tolerance_mm),
        "mass_in_mask": _positive_share(np.clip(values, 0.0, None), binary),
        "rank_accuracy": _relevance_rank(values, binary),
        "auroc": _auroc(values, binary),
    }
    scores.update(_distances(mask, values, binary, distance))
    scores.update(_shell_mass(values, binary, distance, shell_edges_mm))
    return scores
