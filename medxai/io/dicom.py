"""Read a DICOM series (folder, or one multi-frame file) into a :class:`~medxai.volume.Volume`.

pydicom decodes the pixels (JPEG 2000, JPEG-LS, JPEG lossless and RLE through the pylibjpeg plugins);
series discovery, slice sorting and the affine live in :mod:`~medxai.io.dicom_series` and
:mod:`~medxai.io.dicom_geometry`. RescaleSlope/Intercept are applied per frame; the result is integer
when every slope is 1 and every intercept whole, float32 otherwise.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
from scipy import ndimage
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medxai.errors import InvalidInputError
from medxai.io.dicom_frames import Frame
from medxai.io.dicom_geometry import describe_frame, stack_geometry
from medxai.io.dicom_metadata import acquisition_metadata
from medxai.io.dicom_series import HEADER_ERRORS, SeriesInfo, discover_series, quiet_pydicom, read_header
from medxai.io.preflight import check_geometry, check_memory, check_path
from medxai.volume import Step, Volume

# What pydicom and its decoder plugins raise on damaged or undecodable pixel data.
DECODE_ERRORS = (ValueError, AttributeError, RuntimeError, NotImplementedError, KeyError, TypeError, IndexError, struct.error)


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` is a DICOM file (``DICM`` preamble, or a raw dataset with SOP and series UIDs)."""
    path = Path(path)
    return path.is_file() and read_header(path) is not None


def _short(error: BaseException) -> str:
    """The gist of a pydicom/plugin error on one line (a trailing ':' pulls in the first reason)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text.split(" - ")[0]


def select_series(series: list[SeriesInfo], root: Path, *, series_uid: str | None = None,
                  resample_tilt: bool = False) -> SeriesInfo:
    """The one series to read: ``series_uid``, else the only 3D series; refuse ambiguity with the candidates."""
    if series_uid is not None:
        matching = [s for s in series if s.uid == series_uid]
        if not matching:
            found = "; ".join(s.label() for s in series) or "none"
            raise InvalidInputError(f"no series with SeriesInstanceUID {series_uid} (found: {found})", path=root)
        chosen = matching[0]
    else:
        volumes = [s for s in series if s.readable(resample_tilt=resample_tilt)]
        if len(volumes) > 1:
            listing = "; ".join(s.label() for s in volumes)
            raise InvalidInputError(
                f"{len(volumes)} 3D series found, choose one by SeriesInstanceUID (or convert the folder): {listing}",
                path=root,
            )
        if not volumes and len(series) > 1:
            listing = "; ".join(f"{s.label()}: {s.problem}" for s in series)
            raise InvalidInputError(f"no series forms a 3D volume ({listing})", path=root)
        chosen = volumes[0] if volumes else series[0]
    if not chosen.readable(resample_tilt=resample_tilt):
        raise InvalidInputError(chosen.problem or "not a 3D volume", path=root)
    return chosen


def require_series(path: Path) -> list[SeriesInfo]:
    """The image series under ``path`` (folder or file); refuse when there is none, saying what it is."""
    check_path(path, folder_ok=True)
    series = discover_series(path)
    if series:
        return series
    if path.is_dir():
        raise InvalidInputError("no DICOM image series found in this folder", path=path)
    header = read_header(path)
    if header is None:
        raise InvalidInputError("unsupported file type: not a readable DICOM, NIfTI, NRRD or MHA file", path=path)
    kind = str(header.get("Modality", "") or "") or str(header.get("SOPClassUID", "") or "") or "unknown"
    raise InvalidInputError(f"is a DICOM {kind} object, not an image", path=path)


def read_dicom_volume(path: str | Path, *, series_uid: str | None = None, resample_tilt: bool = False) -> Volume:
    """Read the 3D series in a folder tree (or one enhanced multi-frame file) with its exact geometry.

    With several 3D series in the folder, ``series_uid`` picks one; otherwise the error lists them.
    A gantry-tilted series is refused unless ``resample_tilt`` (see :func:`load_series`).
    """
    path = Path(path)
    chosen = select_series(require_series(path), path, series_uid=series_uid, resample_tilt=resample_tilt)
    return load_series(chosen, root=path, resample_tilt=resample_tilt)


def _read_dataset(path: Path, root: Path) -> Dataset:
    with quiet_pydicom():
        try:
            return pydicom.dcmread(path, force=True)
        except HEADER_ERRORS as error:
            raise InvalidInputError(f"unreadable DICOM file {path.name} ({_short(error)})", path=root) from None


def _pixels(dataset: Dataset, frame: Frame, root: Path) -> np.ndarray:
    """All frames of one object as an (F, rows, columns) array of stored values."""
    syntax = str(getattr(dataset.get("file_meta", Dataset()), "TransferSyntaxUID", "") or "")  # '' when blanked
    syntax_name = UID(syntax).name if syntax else "unknown transfer syntax"
    samples = int(dataset.get("SamplesPerPixel") or 1)
    if samples != 1:
        raise InvalidInputError(
            f"{describe_frame(frame, root)}: colour images ({samples} samples per pixel) are not supported", path=root
        )
    with quiet_pydicom():
        try:
            array = np.asarray(dataset.pixel_array)
        except DECODE_ERRORS as error:
            raise InvalidInputError(
                f"cannot decode the pixel data of {describe_frame(frame, root)} (transfer syntax {syntax_name}): {_short(error)}",
                path=root,
            ) from None
    array = array.reshape((-1,) + array.shape[-2:])
    if array.shape[1:] != (frame.rows, frame.columns):
        raise InvalidInputError(
            f"{describe_frame(frame, root)}: pixel data shape {array.shape[1:]} differs from Rows x Columns", path=root
        )
    return array


def _stack_pixels(frames: tuple[Frame, ...], root: Path) -> tuple[np.ndarray, Dataset]:
    """Stored values as a (slices, rows, columns) C-ordered stack in ``frames`` order, and the first dataset.

    Each decoded frame is copied whole into its slab (fast); the caller transposes the result to (i, j, k).
    """
    cache: dict[Path, np.ndarray] = {}
    datasets: list[Dataset] = []
    stored: np.ndarray | None = None
    for k, frame in enumerate(frames):
        if frame.path not in cache:
            datasets.append(_read_dataset(frame.path, root))
            cache[frame.path] = _pixels(datasets[-1], frame, root)
        pixels = cache[frame.path][frame.index or 0]
        if stored is None or not np.can_cast(pixels.dtype, stored.dtype, casting="safe"):
            dtype = pixels.dtype if stored is None else np.promote_types(stored.dtype, pixels.dtype)
            grown = np.empty((len(frames), frames[0].rows, frames[0].columns), dtype=dtype)
            if stored is not None:
                grown[:k] = stored[:k]
            stored = grown
        stored[k] = pixels
    if stored is None:
        raise InvalidInputError("no image frames to read", path=root)
    return stored, datasets[0]


def _rescaled(stored: np.ndarray, frames: tuple[Frame, ...]) -> np.ndarray:
    """Modality values of a (slices, rows, columns) stack: integer when all slopes are 1 and intercepts
    whole, float32 otherwise."""
    slopes = np.array([f.slope for f in frames], dtype=np.float64)
    intercepts = np.array([f.intercept for f in frames], dtype=np.float64)
    if np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)):
        low = float((stored.min(axis=(1, 2)) + intercepts).min())
        high = float((stored.max(axis=(1, 2)) + intercepts).max())
        dtype = next(t for t in (np.int16, np.uint16, np.int32, np.int64) if np.iinfo(t).min <= low and high <= np.iinfo(t).max)
        if dtype == stored.dtype and not intercepts.any():
            return stored
        out = np.empty(stored.shape, dtype=dtype)
        for k, intercept in enumerate(intercepts.astype(np.int64)):
            np.add(stored[k], intercept, out=out[k], dtype=np.int64, casting="unsafe")
        return out
    out = np.empty(stored.shape, dtype=np.float32)
    for k, (slope, intercept) in enumerate(zip(slopes, intercepts)):
        out[k] = stored[k].astype(np.float64) * slope + intercept
    return out


def _untilt(stack: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each (rows, columns) slice in-plane by its (i, j) voxel offset onto the orthogonal grid
    (linear interpolation, as dcm2niix's gantry-tilt correction; outside filled with the minimum)."""
    fill = float(stack.min())
    out = np.empty(stack.shape, dtype=np.float32)
    for k, (shift_i, shift_j) in enumerate(shifts):
        out[k] = ndimage.shift(stack[k].astype(np.float32), (shift_j, shift_i), order=1, mode="grid-constant", cval=fill)
    return out


def load_series(info: SeriesInfo, *, root: Path, resample_tilt: bool = False) -> Volume:
    """Decode, rescale and stack one discovered series (its geometry re-validated here).

    With ``resample_tilt`` a gantry-tilted stack is resampled onto the orthogonal grid through its first
    slice (float32, recorded in the history); otherwise it is refused.
    """
    geometry = stack_geometry(info.frames, root=root, resample_tilt=resample_tilt)
    check_geometry(root, geometry.affine)
    first_frame = geometry.frames[0]
    # Stored values (at most 32 bits) and their rescaled copy, before any pixel is decoded.
    check_memory(root, (first_frame.columns, first_frame.rows, len(geometry.frames)), 8)
    stored, first = _stack_pixels(geometry.frames, root)
    stack = _rescaled(stored, geometry.frames)
    steps = [Step("read_dicom", {"series_uid": info.uid, "files": info.n_files, "frames": len(geometry.frames)})]
    if geometry.tilt_shifts is not None:
        stack = _untilt(stack, geometry.tilt_shifts)
        largest = float(np.abs(geometry.tilt_shifts).max())
        steps.append(Step("resample_gantry_tilt", {"max_shift_voxels": round(largest, 4), "interpolation": "linear"}))
    data = stack.transpose(2, 1, 0)  # (k, row, column) -> (i, j, k), no copy
    slopes = [f.slope for f in geometry.frames]
    intercepts = [f.intercept for f in geometry.frames]
    metadata = {
        "source": root.name,
        "format": "dicom",
        "modality": info.modality,
        "series_uid": info.uid,
        "series_number": info.number,
        "series_description": info.description,
        "n_files": info.n_files,
        "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "") or ""),
        "slice_spacing": geometry.slice_spacing,
        "rescale": {"slope": [min(slopes), max(slopes)], "intercept": [min(intercepts), max(intercepts)]},
        "acquisition": acquisition_metadata(first),
    }
    return Volume(data=data, affine=geometry.affine, metadata=metadata, history=tuple(steps))
