"""DICOM series discovery: group every image object in a folder tree by SeriesInstanceUID.

Only headers are read here (``stop_before_pixels``); pixel decoding happens in :mod:`medxai.io.dicom`.
Non-image objects (RTSTRUCT, SEG, SR, presentation states, RT dose, DICOMDIR) and non-DICOM files are
ignored. Each frame of each file becomes a :class:`Frame` with the geometry the slice sorter needs.
"""
from __future__ import annotations

import contextlib
import logging
import struct
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medxai.errors import InvalidInputError
from medxai.io.dicom_frames import Frame, frames_of
from medxai.io.dicom_geometry import GantryTiltError, NotAVolumeError, stack_geometry

# What a damaged or foreign file can make pydicom raise while parsing a header.
HEADER_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, struct.error, OverflowError)
NON_IMAGE_MODALITIES = frozenset({"RTSTRUCT", "SEG", "SR", "PR", "KO", "REG", "RTDOSE", "RTPLAN", "RTRECORD", "DOC", "PLAN"})
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
RAW_DATASET_STARTS = (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02")  # group 0008/0002, either byte order


@dataclass(frozen=True)
class SeriesInfo:
    """One image series: identifiers and description (never patient data), its frames, and whether the
    frames form a 3D volume (``problem`` says why not; ``skippable`` marks series that are simply not 3D,
    such as localizers or single images, as opposed to damaged 3D series)."""

    uid: str
    number: int | None
    description: str
    modality: str
    files: tuple[Path, ...]
    frames: tuple[Frame, ...]
    orientation: str
    is_volume: bool
    problem: str | None
    skippable: bool
    tilted: bool = False

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def readable(self, *, resample_tilt: bool = False) -> bool:
        """True when the series can be read as a 3D volume (a tilted one only with ``resample_tilt``)."""
        return self.is_volume or (resample_tilt and self.tilted)

    def label(self) -> str:
        """A short, identifier-free label: ``#<number> '<description>' (<uid>)``."""
        number = "" if self.number is None else f"#{self.number} "
        description = f"'{self.description}' " if self.description else ""
        return f"{number}{description}({self.uid})"


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and logged decoder tracebacks: the readers turn each failure into one
    InvalidInputError line instead of a screenful on stderr."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            logger.setLevel(level)


def read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file, or None when ``path`` is not DICOM.

    Files with the ``DICM`` preamble are parsed normally. Files without it (old ACR-NEMA style, raw
    datasets) are parsed by force only when they start with a group 0002/0008 tag, and accepted only with
    a SOP Class UID and a Series Instance UID, so other files are never mistaken for DICOM.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return None
    has_preamble = head[128:132] == b"DICM"
    if not has_preamble and head[:2] not in RAW_DATASET_STARTS:
        return None
    with quiet_pydicom():
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True, force=not has_preamble)
        except HEADER_ERRORS:
            return None
    if has_preamble or ("SOPClassUID" in dataset and "SeriesInstanceUID" in dataset):
        return dataset
    return None


def is_image_object(dataset: Dataset) -> bool:
    """True for image storage objects; False for RTSTRUCT, SEG, SR, presentation states, DICOMDIR..."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    media_class = str(getattr(dataset.get("file_meta", Dataset()), "MediaStorageSOPClassUID", ""))
    if DICOMDIR_SOP_CLASS in (sop_class, media_class) or "DirectoryRecordSequence" in dataset:
        return False
    if str(dataset.get("Modality", "")).upper() in NON_IMAGE_MODALITIES:
        return False
    name = UID(sop_class).name if sop_class else ""
    known = bool(sop_class) and name != sop_class
    return "Image Storage" in name or (not known and "Rows" in dataset)


def _orientation_name(frames: tuple[Frame, ...]) -> str:
    orientations = {frame.orientation for frame in frames}
    if None in orientations or not orientations:
        return "unknown"
    if len({tuple(np.round(o, 3)) for o in orientations if o is not None}) > 1:
        return "mixed"
    row, column = np.asarray(frames[0].orientation[:3]), np.asarray(frames[0].orientation[3:])
    normal = np.abs(np.cross(row, column))
    plane = ("sagittal", "coronal", "axial")[int(np.argmax(normal))]
    return plane if normal.max() > 1 - 1e-3 else f"oblique {plane}"


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _make_series(uid: str, members: list[tuple[Path, Dataset]], broken: list[Path], root: Path) -> SeriesInfo:
    members.sort(key=lambda item: str(item[0]))
    first = members[0][1] if members else Dataset()
    frames = tuple(frame for path, dataset in members for frame in frames_of(dataset, path))
    files = tuple(path for path, _ in members) + tuple(broken)
    problem: str | None = None
    skippable = tilted = False
    image_types = {str(v).upper() for _, d in members for v in (d.get("ImageType") or [])}
    if broken:
        names = ", ".join(_relative(p, root) for p in broken[:3])
        problem = f"truncated or unreadable DICOM file(s): {names}"
    elif "MOSAIC" in image_types:
        problem, skippable = "Siemens mosaic images are not supported (de-mosaic with dcm2niix first)", True
    else:
        try:
            stack_geometry(frames, root=root)
        except NotAVolumeError as error:
            problem, skippable = error.problem, True
        except GantryTiltError as error:
            problem, tilted = error.problem, True
        except InvalidInputError as error:
            problem, skippable = error.problem, "LOCALIZER" in image_types
    return SeriesInfo(
        uid=uid,
        number=_int_or_none(first.get("SeriesNumber")),
        description=str(first.get("SeriesDescription", "") or "").strip(),
        modality=str(first.get("Modality", "") or "").strip() or "unknown",
        files=files,
        frames=frames,
        orientation=_orientation_name(frames),
        is_volume=problem is None,
        problem=problem,
        skippable=skippable,
        tilted=tilted,
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def discover_series(folder: str | Path) -> list[SeriesInfo]:
    """Every image series under ``folder`` (a folder tree or a single file), ordered by series number.

    Non-DICOM files and non-image DICOM objects are ignored; image files whose header cannot be
    completed (truncated) are attached to their series, which then reports the problem.
    """
    root = Path(folder)
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    broken: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        if path.name.upper() == "DICOMDIR":
            continue
        dataset = read_header(path)
        if dataset is None or not is_image_object(dataset):
            continue
        uid = str(dataset.get("SeriesInstanceUID", "") or "unknown")
        if "Rows" not in dataset or "Columns" not in dataset:
            broken[uid].append(path)
        else:
            groups[uid].append((path, dataset))
    base = root.parent if root.is_file() else root
    series = [_make_series(uid, groups.get(uid, []), broken.get(uid, []), base) for uid in sorted(set(groups) | set(broken))]
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid))
