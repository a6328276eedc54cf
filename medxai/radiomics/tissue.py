"""Tissue masks that clip peritumoral regions, from CT Hounsfield units.

``lung``: air-like voxels (< -400 HU) that do not touch the image border (which removes the air around
the patient), then a closing of 5 mm so vessels and the nodule's immediate surroundings stay inside
(the usual threshold + connected-component + closing recipe, e.g. Hu S et al., IEEE TMI 2001); the
closing is computed only where it is needed (``within``), because on a whole chest CT it takes long.
``body``: the largest connected component above -500 HU with its holes filled (drops air and table
surroundings; holes are what it encloses in-plane). These are heuristics for clipping shells, not segmentations to report.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medxai.errors import ConfigError, InvalidInputError
from medxai.radiomics.shells import Crop
from medxai.volume import Volume

TISSUES = ("lung", "body")
_LUNG_HU = -400.0
_BODY_HU = -500.0
_CLOSING_MM = 5.0


def _closing(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Morphological closing by a ball of ``radius_mm`` world mm, as two distance transforms."""
    pad = [int(math.ceil(radius_mm / s)) + 1 for s in spacing]
    padded = np.pad(mask, [(p, p) for p in pad], mode="edge")  # the scan's edge continues, not air
    dilated = ndimage.distance_transform_edt(~padded, sampling=spacing) <= radius_mm
    closed = ndimage.distance_transform_edt(dilated, sampling=spacing) > radius_mm
    return closed[tuple(slice(p, -p) for p in pad)]


def _labels_touching(labels: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Label values present on the two faces of each axis in ``axes``."""
    faces = [np.take(labels, end, axis=axis) for axis in axes for end in (0, -1)]
    return np.setdiff1d(np.unique(np.concatenate([f.ravel() for f in faces])), [0])


def _in_plane_axes(image: Volume) -> tuple[int, ...]:
    """The index axes other than the cranio-caudal one (a chest CT may cut through the lungs there)."""
    cranio_caudal = int(np.argmax(np.abs(image.affine[2, :3]) / np.linalg.norm(image.affine[:3, :3], axis=0)))
    return tuple(a for a in range(3) if a != cranio_caudal)


def _fill_holes(mask: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Fill what ``mask`` encloses, where only the faces of ``axes`` count as outside."""
    labels, _ = ndimage.label(~mask)
    outside = _labels_touching(labels, axes)
    return mask | ((labels > 0) & ~np.isin(labels, outside))


def tissue_mask(image: Volume, *, tissue: str, within: Crop | None = None) -> np.ndarray:
    """A boolean ``tissue`` mask (``lung`` or ``body``) on the image grid; the image must be CT in HU.

    ``within`` limits the lung's closing (the slow step) to a sub-box, e.g. the peritumoral regions'
    extent; outside it the lung mask is the unclosed air-like region.
    """
    if tissue not in TISSUES:
        raise ConfigError(f"unknown tissue {tissue!r} (choose from {', '.join(TISSUES)}, or give a tissue mask file)")
    data = np.asarray(image.data)
    if tissue == "body":
        labels, count = ndimage.label(data > _BODY_HU)
        if count == 0:
            raise InvalidInputError(f"no voxel above {_BODY_HU:g} HU: not a CT in Hounsfield units?", path=image.metadata.get("source"))
        largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        return _fill_holes(labels == largest, _in_plane_axes(image))
    # Air outside the patient reaches the in-plane image border; the lungs may reach the first and last
    # slices of a chest CT, so the faces of the cranio-caudal axis do not count.
    labels, _ = ndimage.label(data < _LUNG_HU)
    outside = _labels_touching(labels, _in_plane_axes(image))
    lung = (labels > 0) & ~np.isin(labels, outside)
    if not lung.any():
        raise InvalidInputError(
            f"no enclosed air-like region (< {_LUNG_HU:g} HU) found for a lung mask: not a chest CT in HU?",
            path=image.metadata.get("source"),
        )
    window = within if within is not None else tuple(slice(0, n) for n in lung.shape)
    lung[window] = _closing(lung[window], _CLOSING_MM, image.spacing)
    return lung
