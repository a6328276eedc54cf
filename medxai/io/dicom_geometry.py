"""Slice sorting and the voxel-to-RAS affine of a DICOM frame stack (PS3.3 C.7.6.2.1.1).

Frames are ordered by their position along the slice normal (row cosine x column cosine), never by
file name or InstanceNumber. The slice step comes from the positions themselves, not SliceThickness.
Array axes follow dcm2niix/nibabel: ``data[i, j, k]`` with i along a row (column index), j down the
rows, k along the normal. DICOM patient coordinates are LPS; the affine returned is RAS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from medxai.errors import InvalidInputError
from medxai.io.dicom_frames import Frame

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOLERANCE = 1e-4  # per direction-cosine component
SAME_POSITION_MM = 0.01
SPACING_TOLERANCE_MM = 1e-3
TILT_TOLERANCE_FRACTION = 0.05  # of the smallest pixel spacing, accumulated over the whole stack
STEP_TOLERANCE_MM, STEP_TOLERANCE_FRACTION = 0.01, 0.01


class NotAVolumeError(InvalidInputError):
    """Valid DICOM that is simply not a 3D volume: a single image, a 4D series, a projection image."""


class GantryTiltError(InvalidInputError):
    """Slices stacked obliquely to their own plane (gantry tilt): readable only by explicit resampling."""


@dataclass(frozen=True)
class StackGeometry:
    """Frames sorted along the slice normal, the grid shape (columns, rows, slices) and its RAS affine.

    ``tilt_shifts`` (slices x 2, in voxels along i and j) is set only when a tilted stack was accepted
    for resampling: slice k must be shifted by it to land on the orthogonal grid of ``affine``.
    """

    frames: tuple[Frame, ...]
    shape: tuple[int, int, int]
    affine: np.ndarray
    slice_spacing: float
    tilt_shifts: np.ndarray | None = None


def describe_frame(frame: Frame, root: Path) -> str:
    """``file`` or ``file frame N``, relative to the folder being read."""
    try:
        name = str(frame.path.relative_to(root))
    except ValueError:
        name = frame.path.name
    return name if frame.index is None else f"{name} frame {frame.index + 1}"


def _check_planes(frames: Sequence[Frame], root: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Common orientation (row, column cosines) and pixel spacing, or an error naming the offender."""
    missing = [f for f in frames if f.position is None or f.orientation is None or f.spacing is None]
    if missing:
        raise NotAVolumeError(
            f"no ImagePositionPatient/ImageOrientationPatient/PixelSpacing on {describe_frame(missing[0], root)}: "
            "not a cross-sectional image, cannot form a 3D volume",
            path=root,
        )
    sizes = sorted({(f.rows, f.columns) for f in frames})
    if len(sizes) > 1:
        raise InvalidInputError(f"slices differ in size ({' and '.join(f'{r}x{c}' for r, c in sizes[:2])} pixels)", path=root)
    orientations = np.array([f.orientation for f in frames], dtype=np.float64)
    distinct = [frames[0]]
    for frame, orientation in zip(frames, orientations):
        if not any(np.allclose(orientation, d.orientation, atol=ORIENTATION_TOLERANCE) for d in distinct):
            distinct.append(frame)
    if len(distinct) > 1:
        raise InvalidInputError(
            f"mixed slice orientations within the series ({len(distinct)} distinct ImageOrientationPatient values, "
            f"e.g. {describe_frame(distinct[0], root)} and {describe_frame(distinct[1], root)})",
            path=root,
        )
    row, column = orientations[0, :3], orientations[0, 3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(column) - 1) > 1e-3 or abs(row @ column) > 1e-3:
        raise InvalidInputError(f"ImageOrientationPatient {list(orientations[0])} is not two orthonormal vectors", path=root)
    spacings = np.array([f.spacing for f in frames], dtype=np.float64)
    if np.ptp(spacings, axis=0).max() > SPACING_TOLERANCE_MM:
        low, high = spacings.min(axis=0).tolist(), spacings.max(axis=0).tolist()
        raise InvalidInputError(f"pixel spacing varies between slices ({low} to {high} mm)", path=root)
    if spacings[0].min() <= 0:
        raise InvalidInputError(f"non-positive PixelSpacing {' x '.join(f'{float(v):g}' for v in spacings[0])} mm", path=root)
    return row / np.linalg.norm(row), column / np.linalg.norm(column), (float(spacings[0, 0]), float(spacings[0, 1]))


def _check_positions(ordered: list[Frame], distances: np.ndarray, root: Path) -> None:
    """Refuse 4D stacks and duplicate positions (``ordered`` is sorted by ``distances``)."""
    boundaries = np.flatnonzero(np.diff(distances) > SAME_POSITION_MM) + 1
    counts = np.diff(np.concatenate([[0], boundaries, [len(distances)]]))
    if counts.max() == 1:
        return
    if counts.min() == counts.max() and len(counts) > 1:
        raise NotAVolumeError(
            f"4D series: {counts[0]} frames at each of {len(counts)} slice positions (several temporal positions, "
            "echoes or volumes); a single 3D volume is needed",
            path=root,
        )
    first = int(np.argmax(counts > 1))
    start = int(np.concatenate([[0], boundaries])[first])
    raise InvalidInputError(
        f"duplicate slice position {distances[start]:.3f} mm along the slice normal "
        f"({describe_frame(ordered[start], root)} and {describe_frame(ordered[start + 1], root)})",
        path=root,
    )


def stack_geometry(frames: Sequence[Frame], *, root: Path, resample_tilt: bool = False) -> StackGeometry:
    """Sort ``frames`` along the slice normal, validate the stack and build its RAS affine.

    Refuses (``InvalidInputError``, naming ``root``): missing geometry, mixed sizes or orientations,
    a single slice, 4D stacks, duplicate positions, gantry tilt (positions drifting in-plane; accepted
    with ``resample_tilt``, returning the per-slice shifts onto an orthogonal grid) and uneven slice
    steps such as a missing slice.
    """
    if not frames:
        raise NotAVolumeError("no image frames", path=root)
    row, column, (row_spacing, column_spacing) = _check_planes(frames, root)
    if len(frames) < 2:
        raise NotAVolumeError("single 2D image (1 slice): a 3D volume needs at least 2 slices", path=root)
    normal = np.cross(row, column)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    distances = positions @ normal
    order = np.argsort(distances, kind="stable")
    ordered = [frames[int(i)] for i in order]
    positions, distances = positions[order], distances[order]
    _check_positions(ordered, distances, root)
    in_plane = (positions - positions[0]) @ np.stack([row, column], axis=1)
    drift = float(np.linalg.norm(in_plane, axis=1).max())
    tilted = drift > TILT_TOLERANCE_FRACTION * min(row_spacing, column_spacing)
    if tilted and not resample_tilt:
        raise GantryTiltError(
            f"slices are not stacked perpendicular to the image plane (gantry tilt or sheared stack: {drift:.3f} mm "
            "in-plane drift across the stack); refused unless resampled explicitly (convert --resample-tilt)",
            path=root,
        )
    steps = np.diff(distances)
    expected = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - expected) > max(STEP_TOLERANCE_MM, STEP_TOLERANCE_FRACTION * expected))
    if bad.size:
        at = int(bad[0])
        raise InvalidInputError(
            f"inconsistent slice spacing: {steps[at]:.3f} mm gap between slices at {distances[at]:.3f} and "
            f"{distances[at + 1]:.3f} mm along the normal ({describe_frame(ordered[at], root)} and "
            f"{describe_frame(ordered[at + 1], root)}) where {expected:.3f} mm is expected (missing slice?)",
            path=root,
        )
    spacing = float((distances[-1] - distances[0]) / (len(distances) - 1))
    lps = np.eye(4)
    lps[:3, 0] = row * column_spacing
    lps[:3, 1] = column * row_spacing
    lps[:3, 2] = normal * spacing
    lps[:3, 3] = positions[0]
    shape = (frames[0].columns, frames[0].rows, len(frames))
    shifts = in_plane / np.array([column_spacing, row_spacing]) if tilted else None
    return StackGeometry(frames=tuple(ordered), shape=shape, affine=LPS_TO_RAS @ lps, slice_spacing=spacing, tilt_shifts=shifts)
