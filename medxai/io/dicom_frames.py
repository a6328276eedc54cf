"""Per-frame geometry and rescale of DICOM image objects, classic single-frame and enhanced multi-frame.

Enhanced CT/MR/PET objects keep geometry in functional groups (PS3.3 C.7.6.16): a per-frame item
overrides the shared item for Plane Position, Plane Orientation, Pixel Measures and Pixel Value
Transformation. Classic objects keep the same attributes at the top level.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from medxai.errors import InvalidInputError


@dataclass(frozen=True)
class Frame:
    """One 2D frame: where its pixels come from and where it lies (LPS, mm). ``index`` is the frame
    number inside a multi-frame file (None for a single-frame file); ``spacing`` is DICOM PixelSpacing
    (between rows, between columns)."""

    path: Path
    index: int | None
    rows: int
    columns: int
    position: tuple[float, ...] | None  # 3 values
    orientation: tuple[float, ...] | None  # 6 values: row cosine, column cosine
    spacing: tuple[float, ...] | None  # 2 values
    slope: float
    intercept: float


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    """``count`` floats from a DICOM multi-value, or None when absent or malformed."""
    if value is None:
        return None
    single = isinstance(value, (str, bytes)) or not hasattr(value, "__iter__")
    items = [value] if single else list(value)  # type: ignore[call-overload]
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _group_item(sequence_keyword: str, per_frame: Dataset | None, shared: Dataset | None) -> Dataset | None:
    """The first item of a functional-group macro, per-frame first, then shared."""
    for container in (per_frame, shared):
        if container is not None and sequence_keyword in container and len(container[sequence_keyword].value) > 0:
            return container[sequence_keyword].value[0]
    return None


def _rescale(source: Dataset | None) -> tuple[float, float]:
    source = source if source is not None else Dataset()
    slope = _floats(source.get("RescaleSlope"), 1)
    intercept = _floats(source.get("RescaleIntercept"), 1)
    return (slope[0] if slope and slope[0] != 0 else 1.0), (intercept[0] if intercept else 0.0)


def frame_count(dataset: Dataset) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def is_enhanced(dataset: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in dataset or "SharedFunctionalGroupsSequence" in dataset


def frames_of(dataset: Dataset, path: Path) -> list[Frame]:
    """Every frame of one image object, with geometry and rescale (None where the object lacks it)."""
    rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    count = frame_count(dataset)
    size = path.stat().st_size
    if count > size:  # every frame takes at least one byte (an encapsulated one an 8-byte item): forged count
        raise InvalidInputError(f"NumberOfFrames {count} is more than a file of {size} bytes can hold", path=path)
    if not is_enhanced(dataset):
        slope, intercept = _rescale(dataset)
        single = count == 1
        return [
            Frame(
                path=path,
                index=None if single else number,
                rows=rows,
                columns=columns,
                # A classic multi-frame object (NM, US, RT dose) has one position for all frames: no stack geometry.
                position=_floats(dataset.get("ImagePositionPatient"), 3) if single else None,
                orientation=_floats(dataset.get("ImageOrientationPatient"), 6),
                spacing=_floats(dataset.get("PixelSpacing"), 2),
                slope=slope,
                intercept=intercept,
            )
            for number in range(count)
        ]
    shared_sequence = dataset.get("SharedFunctionalGroupsSequence")
    shared = shared_sequence[0] if shared_sequence else None
    per_frame_sequence = dataset.get("PerFrameFunctionalGroupsSequence") or []
    frames = []
    for number in range(count):
        per_frame = per_frame_sequence[number] if len(per_frame_sequence) == count else None
        position = _group_item("PlanePositionSequence", per_frame, shared)
        orientation = _group_item("PlaneOrientationSequence", per_frame, shared)
        measures = _group_item("PixelMeasuresSequence", per_frame, shared)
        transformation = _group_item("PixelValueTransformationSequence", per_frame, shared)
        slope, intercept = _rescale(transformation if transformation is not None else dataset)
        frames.append(
            Frame(
                path=path,
                index=number,
                rows=rows,
                columns=columns,
                position=_floats(position.get("ImagePositionPatient") if position is not None else None, 3),
                orientation=_floats(orientation.get("ImageOrientationPatient") if orientation is not None else None, 6),
                spacing=_floats(measures.get("PixelSpacing") if measures is not None else None, 2),
                slope=slope,
                intercept=intercept,
            )
        )
    return frames
