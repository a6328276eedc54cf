"""Boxes that locate a lesion: voxel corners, world-mm corners, or a seed point with a radius.

A :class:`Box` is inclusive on both ends (voxel ``hi`` belongs to the box, as when a reader draws a box
from one voxel to another) and carries the point the lesion is anchored at (the box centre or the seed).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medxai.errors import ConfigError, InvalidInputError
from medxai.volume import Volume

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Box:
    """Voxel box ``lo..hi`` (inclusive) on an image grid and its anchor point in (fractional) voxel indices."""

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    anchor: tuple[float, float, float]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b + 1) for a, b in zip(self.lo, self.hi))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a + 1 for a, b in zip(self.lo, self.hi))  # type: ignore[return-value]


def parse_numbers(text: str | Sequence[float], *, count: int, what: str) -> tuple[float, ...]:
    """``"1,2,3"`` or ``"1 2 3"`` (or a sequence) -> exactly ``count`` finite floats."""
    if isinstance(text, str):
        parts = [p for p in text.replace(",", " ").split() if p]
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"{what} must be {count} numbers, got {text!r}") from None
    else:
        values = tuple(float(v) for v in text)
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{what} must be {count} finite numbers, got {text!r}")
    return values


def _clipped(lo: np.ndarray, hi: np.ndarray, shape: Sequence[int], anchor: np.ndarray, what: str, *, warn: bool = True) -> Box:
    """The box clipped to the image; refused when it misses the image or its anchor lies outside it."""
    lo_c = np.maximum(lo, 0)
    hi_c = np.minimum(hi, np.asarray(shape) - 1)
    if np.any(hi_c < lo_c):
        raise InvalidInputError(f"{what} lies outside the image (shape {tuple(shape)})")
    # The lesion is the component at the anchor: an anchor off the image would pick whatever is nearest.
    if np.any(np.asarray(anchor) < -0.5) or np.any(np.asarray(anchor) > np.asarray(shape) - 0.5):
        point = "seed point" if what.startswith("seed") else "centre"
        where = tuple(round(float(v), 1) for v in anchor)
        raise InvalidInputError(f"{what}: its {point} (voxel {where}) lies outside the image (shape {tuple(shape)})")
    if warn and (np.any(lo_c != lo) or np.any(hi_c != hi)):
        logger.warning("%s %s-%s reaches beyond the image (shape %s): clipped to %s-%s", what,
                       tuple(int(v) for v in lo), tuple(int(v) for v in hi), tuple(shape),
                       tuple(int(v) for v in lo_c), tuple(int(v) for v in hi_c))
    return Box(tuple(int(v) for v in lo_c), tuple(int(v) for v in hi_c), tuple(float(v) for v in anchor))  # type: ignore[arg-type]


def box_from_voxels(values: str | Sequence[float], image: Volume) -> Box:
    """``i0,j0,k0,i1,j1,k1`` voxel corners (inclusive, any order), clipped to the image (with a warning);
    refused when the box misses the image or its centre lies outside it."""
    corners = np.asarray(parse_numbers(values, count=6, what="bbox (i0,j0,k0,i1,j1,k1)")).reshape(2, 3)
    if np.any(corners != np.round(corners)):
        raise ConfigError(f"bbox voxel corners must be integers, got {values!r}")
    lo, hi = corners.min(axis=0).astype(int), corners.max(axis=0).astype(int)
    return _clipped(lo, hi, image.shape, (lo + hi) / 2.0, "bbox")


def box_from_mm(values: str | Sequence[float], image: Volume) -> Box:
    """Two opposite corners ``x0,y0,z0,x1,y1,z1`` in RAS mm: the voxel box that covers that world box."""
    corners = np.asarray(parse_numbers(values, count=6, what="bbox-mm (x0,y0,z0,x1,y1,z1)")).reshape(2, 3)
    lo_w, hi_w = corners.min(axis=0), corners.max(axis=0)
    eight = np.array([[(lo_w, hi_w)[bit >> a & 1][a] for a in range(3)] for bit in range(8)])
    index = image.world_to_index(eight)
    lo = np.floor(index.min(axis=0) + 0.5).astype(int)
    hi = np.floor(index.max(axis=0) + 0.5).astype(int)
    anchor = image.world_to_index((lo_w + hi_w) / 2.0)[0]
    return _clipped(lo, hi, image.shape, anchor, "bbox-mm")


def box_from_seed(seed_mm: str | Sequence[float], radius_mm: float, image: Volume) -> Box:
    """The voxel box that covers the ball of ``radius_mm`` around a RAS seed point; anchored at the seed."""
    if not math.isfinite(radius_mm) or radius_mm <= 0:
        raise ConfigError(f"radius must be a positive number of mm, got {radius_mm}")
    seed = np.asarray(parse_numbers(seed_mm, count=3, what="seed point (x,y,z mm)"))
    centre = image.world_to_index(seed)[0]
    # A world ball of radius r spans r / spacing voxels along each index axis (any orthogonal affine).
    half = radius_mm / np.asarray(image.spacing)
    lo = np.floor(centre - half + 0.5).astype(int)
    hi = np.floor(centre + half + 0.5).astype(int)
    return _clipped(lo, hi, image.shape, centre, "seed point + radius", warn=False)  # a ball may pass the edge
