"""Slices and projections of a volume in radiological display convention, computed in world (RAS) space.

The volume is first brought to its closest canonical (RAS+) orientation by axis permutations and flips only
(nibabel's ``as_closest_canonical``: no resampling, so no voxel value changes). An oblique scan is shown in
that closest canonical orientation and :attr:`Reorientation.obliquity_deg` says by how much it is tilted.

Display convention (radiological, as in PACS viewers):

* axial: patient's right on the image's left, anterior up (viewed from the feet);
* coronal: patient's right on the image's left, superior up (viewed from the front);
* sagittal: anterior on the image's left, superior up.

In RAS+ world coordinates x increases towards the patient's Right, y towards Anterior, z towards Superior
(DICOM's LPS+ is the same axes with x and y negated). Every view below is ``plane.T[::-1, ::-1]`` of a
canonical slice: rows run from high to low (top = anterior or superior) and columns from high to low
(left = patient's right in axial/coronal, anterior in sagittal). Written by hand: no imaging library ships
radiological-convention views of an arbitrary affine as plain arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from medxai.volume import Volume

PLANES = ("axial", "coronal", "sagittal")
# canonical axis normal to each plane, and the (row, column) canonical axes of its displayed image
_NORMAL = {"axial": 2, "coronal": 1, "sagittal": 0}
_AXES = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}
# orientation letters on the image edges: (left, right, top, bottom)
LETTERS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}
_WORLD_AXIS_NAME = ("x", "y", "z")
EDGE_MARGIN = 3  # voxels: a peak slice is never one of the outermost slices of the field of view


@dataclass(frozen=True)
class Reorientation:
    """How a grid maps onto its closest canonical (RAS+) grid: axis permutation and flips, no resampling."""

    ornt: np.ndarray
    native_shape: tuple[int, int, int]
    affine: np.ndarray  # the canonical grid's voxel -> RAS affine
    obliquity_deg: float

    @classmethod
    def of(cls, volume: Volume) -> "Reorientation":
        ornt = io_orientation(volume.affine)
        affine = volume.affine @ inv_ornt_aff(ornt, volume.shape)
        return cls(ornt=ornt, native_shape=volume.shape, affine=affine, obliquity_deg=obliquity_deg(volume.affine))

    @property
    def oblique(self) -> bool:
        return self.obliquity_deg > 0.5

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def array(self, data: np.ndarray) -> np.ndarray:
        """``data`` (native grid) on the canonical grid."""
        if tuple(data.shape) != self.native_shape:
            raise ValueError(f"array shape {data.shape} is not the grid's {self.native_shape}")
        return apply_orientation(np.asarray(data), self.ornt)

    def index(self, ijk: Sequence[float]) -> np.ndarray:
        """A native voxel index in canonical voxel indices."""
        out = np.zeros(3)
        for axis, (target, flip) in enumerate(self.ornt):
            value = float(ijk[axis])
            out[int(target)] = value if flip > 0 else self.native_shape[axis] - 1 - value
        return out


def obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle (degrees) between a voxel axis and its nearest world axis."""
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.clip(np.abs(columns).max(axis=0), -1.0, 1.0)
    return float(np.degrees(np.arccos(cosines.min())))


@dataclass(frozen=True)
class PlaneView:
    """One displayed image: arrays in display order (row 0 at the top), and how to draw them.

    ``pixel_mm`` is a pixel's (height, width) in mm: the spacing along the displayed row and column axes.
    ``overlay`` holds NaN where the map is below its display threshold. ``caption`` names the slice
    position (world mm) or the projection.
    """

    plane: str
    anatomy: np.ndarray
    overlay: np.ndarray | None
    mask: np.ndarray | None
    pixel_mm: tuple[float, float]
    letters: tuple[str, str, str, str]
    caption: str

    @property
    def aspect(self) -> float:
        """A pixel's height over its width (matplotlib ``imshow(aspect=...)``)."""
        return self.pixel_mm[0] / self.pixel_mm[1]

    @property
    def width_mm(self) -> float:
        """The displayed field of view from left to right, in mm."""
        return self.anatomy.shape[1] * self.pixel_mm[1]


def _display(plane_array: np.ndarray) -> np.ndarray:
    """Canonical (first axis = column axis, second = row axis) to display order (see module docstring)."""
    return np.ascontiguousarray(np.asarray(plane_array).T[::-1, ::-1])


def _pixel_mm(reorientation: Reorientation, plane: str) -> tuple[float, float]:
    row_axis, column_axis = _AXES[plane]
    spacing = reorientation.spacing
    return spacing[row_axis], spacing[column_axis]


def _take(array: np.ndarray | None, plane: str, index: int) -> np.ndarray | None:
    if array is None:
        return None
    return _display(np.take(array, index, axis=_NORMAL[plane]))


def threshold_overlay(heatmap: np.ndarray, *, percentile: float, body: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """``heatmap`` with NaN below the ``percentile`` of |values| (and at zero); returns it and the level.

    With ``body``, the level is the percentile of |values| inside the body only (so a background of zeros
    cannot pull it down); voxels outside the body above the level are still shown."""
    magnitude = np.abs(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)))
    sample = magnitude[body] if body is not None and body.any() else magnitude
    level = float(np.percentile(sample, percentile)) if sample.size else 0.0
    shown = np.where((magnitude >= level) & (magnitude > 0), heatmap, np.nan)
    return shown.astype(np.float32), level


def slice_views(
    reorientation: Reorientation, anatomy: np.ndarray, *, point: Sequence[float], overlay: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> list[PlaneView]:
    """Axial, coronal and sagittal slices through the native voxel ``point`` (arrays on the native grid)."""
    canonical = reorientation.array(anatomy)
    shown = None if overlay is None else reorientation.array(overlay)
    outline = None if mask is None else reorientation.array(mask) > 0
    centre = np.clip(np.rint(reorientation.index(point)), 0, np.array(canonical.shape) - 1).astype(int)
    world = reorientation.affine[:3, :3] @ centre + reorientation.affine[:3, 3]
    views = []
    for plane in PLANES:
        normal = _NORMAL[plane]
        index = int(centre[normal])
        views.append(PlaneView(
            plane=plane, anatomy=_take(canonical, plane, index), overlay=_take(shown, plane, index),
            mask=_take(outline, plane, index), pixel_mm=_pixel_mm(reorientation, plane), letters=LETTERS[plane],
            caption=f"{plane} {_WORLD_AXIS_NAME[normal]} = {world[normal]:+.1f} mm",
        ))
    return views


def projection_views(reorientation: Reorientation, anatomy: np.ndarray, heatmap: np.ndarray, *,
                     percentile: float) -> list[PlaneView]:
    """Maximum-|value| projections of the heatmap along each canonical axis (per ray, the value of the voxel
    of largest |value|, sign kept), each shown above its own ``percentile`` of projected |values|, over
    mean-intensity projections of the anatomy."""
    canonical = reorientation.array(anatomy).astype(np.float32)
    values = np.nan_to_num(reorientation.array(heatmap).astype(np.float32))
    views = []
    for plane in PLANES:
        normal = _NORMAL[plane]
        strongest = np.expand_dims(np.abs(values).argmax(axis=normal), normal)
        projected, _ = threshold_overlay(np.take_along_axis(values, strongest, axis=normal).squeeze(normal),
                                         percentile=percentile)
        views.append(PlaneView(
            plane=plane, anatomy=_display(canonical.mean(axis=normal)), overlay=_display(projected), mask=None,
            pixel_mm=_pixel_mm(reorientation, plane), letters=LETTERS[plane], caption=f"{plane} MIP",
        ))
    return views


def interior(shape: Sequence[int], *, margin: int = EDGE_MARGIN) -> np.ndarray:
    """Voxels at least ``margin`` voxels (fewer on short axes: a quarter of the axis) from every face of the
    field of view."""
    inside = np.zeros(tuple(shape), dtype=bool)
    inside[tuple(slice(min(margin, (n - 1) // 4), n - min(margin, (n - 1) // 4)) for n in shape)] = True
    return inside


def peak_index(heatmap: np.ndarray, *, body: np.ndarray | None = None) -> tuple[int, int, int]:
    """Native voxel index of the largest |value| (first in C order on ties) among the voxels inside ``body``
    and away from the edge of the field of view (:func:`interior`); among the interior voxels when the body
    has none there, and among all voxels when the map is zero everywhere else."""
    magnitude = np.abs(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)))
    away = interior(magnitude.shape)
    for allowed in ((away & body) if body is not None else away, away):
        if allowed.any() and magnitude[allowed].max() > 0:
            flat = int(np.argmax(np.where(allowed, magnitude, -1.0)))
            break
    else:
        flat = int(np.argmax(magnitude))
    return tuple(int(i) for i in np.unravel_index(flat, magnitude.shape))  # type: ignore[return-value]


def mask_centre(mask: np.ndarray) -> tuple[float, float, float] | None:
    """Native voxel index of a mask's centroid, or None for an empty mask."""
    points = np.argwhere(np.asarray(mask) > 0)
    if not len(points):
        return None
    return tuple(float(v) for v in points.mean(axis=0))  # type: ignore[return-value]


def obliquity_note(reorientation: Reorientation) -> str | None:
    """A sentence for oblique scans (None when the grid is aligned with the patient axes)."""
    if not reorientation.oblique:
        return None
    return (f"The scan is oblique ({reorientation.obliquity_deg:.1f} deg from the patient axes); views show the "
            "closest canonical orientation without resampling.")

