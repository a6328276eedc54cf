"""DICOM masks on an image grid: RTSTRUCT contours (rasterised) and DICOM SEG segments (placed).

No maintained library rasterises RTSTRUCT contours onto an arbitrary (oblique, flipped) voxel grid
without heavy extra dependencies (rt-utils and dcmrtstruct2nii assume axial grids and pull in
OpenCV/ITK), so the fill is written here: contour points are mapped world -> voxel index on the
reference grid and each closed planar contour is filled per slice with ``skimage.draw.polygon``
(pixel centres inside the polygon); contours on the same slice are XOR-combined, i.e. the even-odd
rule, so an inner contour cuts a hole. SEG frames are read with pydicom and placed voxel-for-voxel;
a SEG on another grid is refused rather than resampled.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from skimage.draw import polygon

from medxai.errors import InvalidInputError
from medxai.io.dicom_frames import frames_of
from medxai.io.dicom_geometry import LPS_TO_RAS
from medxai.io.dicom_series import HEADER_ERRORS, quiet_pydicom, read_header
from medxai.volume import Volume

OFF_SLICE_TOLERANCE = 0.25  # of a slice: how far a contour plane may sit from the nearest slice centre
GRID_TOLERANCE = 0.05  # of a voxel: how far a SEG frame may sit from the image grid


def _select(items: dict[int, str], label: int | str | None, kind: str, path: Path) -> int:
    """The ROI/segment number that ``label`` names (a number or a name); the only one when None."""
    listing = ", ".join(f"{number} '{name}'" for number, name in sorted(items.items())) or "none"
    if label is None:
        if len(items) == 1:
            return next(iter(items))
        raise InvalidInputError(f"{len(items)} {kind}s ({listing}): choose one with a label (number or name)", path=path)
    text = str(label).strip()
    if text.lstrip("-").isdigit() and int(text) in items:
        return int(text)
    for matcher in (lambda name: name == text, lambda name: name.lower() == text.lower()):
        found = [number for number, name in items.items() if matcher(name)]
        if found:
            return found[0]
    raise InvalidInputError(f"no {kind} named or numbered {label!r} (available: {listing})", path=path)


def _check_frame_of_reference(uids: set[str], reference: Volume, path: Path) -> None:
    expected = reference.metadata.get("frame_of_reference_uid")
    if expected and uids and expected not in uids:
        raise InvalidInputError("mask is in another frame of reference than the image (FrameOfReferenceUID differs)", path=path)


def _lps_to_index(points: np.ndarray, reference: Volume) -> np.ndarray:
    return reference.world_to_index(points * np.array([-1.0, -1.0, 1.0]))


def rasterise_rtstruct(dataset: Dataset, reference: Volume, *, label: int | str | None, path: Path) -> Volume:
    """Fill the closed planar contours of one ROI on ``reference``'s grid (even-odd rule, pixel centres)."""
    rois = {int(item.ROINumber): str(item.get("ROIName", "") or "") for item in dataset.get("StructureSetROISequence") or []}
    number = _select(rois, label, "ROI", path)
    references = {str(item.get("ReferencedFrameOfReferenceUID", "")) for item in dataset.get("StructureSetROISequence") or []
                  if int(item.ROINumber) == number} - {""}
    _check_frame_of_reference(references, reference, path)
    contours = [c for item in dataset.get("ROIContourSequence") or [] if int(item.ReferencedROINumber) == number
                for c in item.get("ContourSequence") or [] if str(c.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR"]
    shape = reference.shape
    mask = np.zeros(shape, dtype=bool)
    inside = 0
    for contour in contours:
        index = _lps_to_index(np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3), reference)
        slices = index[:, 2]
        k = int(np.rint(slices.mean()))
        if np.ptp(slices) > OFF_SLICE_TOLERANCE or abs(slices.mean() - k) > OFF_SLICE_TOLERANCE:
            raise InvalidInputError(
                f"ROI {number} '{rois[number]}' has a contour that does not lie on an image slice (k = "
                f"{slices.min():.2f}..{slices.max():.2f}): drawn on another grid? Resampling contours is not supported",
                path=path,
            )
        if not 0 <= k < shape[2]:
            continue
        rows, columns = polygon(index[:, 0], index[:, 1], shape=shape[:2])
        filled = np.zeros(shape[:2], dtype=bool)
        filled[rows, columns] = True
        mask[:, :, k] ^= filled
        inside += 1
    if not mask.any():
        raise InvalidInputError(
            f"ROI {number} '{rois[number]}' has no contour area on the image grid ({len(contours)} closed contours)", path=path
        )
    return reference.with_data(mask.astype(np.uint8), source=path.name, format="rtstruct", roi_number=number,
                               roi_name=rois[number], contours=len(contours), contours_on_grid=inside)


def place_seg(dataset: Dataset, reference: Volume, *, label: int | str | None, path: Path) -> Volume:
    """The frames of one SEG segment placed on ``reference``'s grid (fractional: above half the maximum)."""
    segments = {int(item.SegmentNumber): str(item.get("SegmentLabel", "") or "") for item in dataset.get("SegmentSequence") or []}
    number = _select(segments, label, "segment", path)
    _check_frame_of_reference({str(dataset.get("FrameOfReferenceUID", ""))} - {""}, reference, path)
    with quiet_pydicom():
        try:
            pixels = np.asarray(dataset.pixel_array)
        except (ValueError, AttributeError, RuntimeError, NotImplementedError) as error:
            raise InvalidInputError(f"cannot decode the SEG pixel data ({str(error).splitlines()[0]})", path=path) from None
    pixels = pixels.reshape((-1,) + pixels.shape[-2:])
    fractional = str(dataset.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    threshold = float(dataset.get("MaximumFractionalValue") or 255) / 2 if fractional else 0
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    frames = frames_of(dataset, path)
    to_index = np.linalg.inv(reference.affine) @ LPS_TO_RAS
    mask = np.zeros(reference.shape, dtype=bool)
    for frame, group, values in zip(frames, per_frame, pixels):
        identification = group.get("SegmentIdentificationSequence")
        if not identification or int(identification[0].ReferencedSegmentNumber) != number:
            continue
        if frame.position is None or frame.orientation is None or frame.spacing is None:
            raise InvalidInputError("SEG frame without plane position, orientation or pixel spacing", path=path)
        lps = np.eye(4)
        lps[:3, 0] = np.asarray(frame.orientation[:3]) * frame.spacing[1]
        lps[:3, 1] = np.asarray(frame.orientation[3:]) * frame.spacing[0]
        lps[:3, 3] = frame.position
        mapping = to_index @ lps
        linear, offset = mapping[:3, :2], mapping[:3, 3]
        if not (np.allclose(np.abs(linear).sum(axis=0), 1, atol=1e-3) and np.allclose(np.abs(linear).max(axis=0), 1, atol=1e-3)
                and np.allclose(offset, np.rint(offset), atol=GRID_TOLERANCE)):
            raise InvalidInputError(
                "SEG frames do not lie on the image grid (other orientation, spacing or positions); "
                "resampling masks is not supported",
                path=path,
            )
        rows, columns = np.nonzero(values > threshold)
        target = np.rint(linear @ np.stack([columns, rows]) + offset[:, None]).astype(np.int64)
        valid = np.all((target >= 0) & (target < np.array(reference.shape)[:, None]), axis=0)
        mask[target[0, valid], target[1, valid], target[2, valid]] = True
    if not mask.any():
        raise InvalidInputError(f"segment {number} '{segments[number]}' is empty on the image grid", path=path)
    return reference.with_data(mask.astype(np.uint8), source=path.name, format="seg", segment_number=number,
                               segment_label=segments[number])


def read_dicom_mask(path: str | Path, reference: Volume, *, label: int | str | None = None) -> Volume:
    """A uint8 0/1 mask on ``reference``'s grid from a DICOM RTSTRUCT (one ROI) or SEG (one segment)."""
    path = Path(path)
    header = read_header(path)
    if header is None:
        raise InvalidInputError("not a readable DICOM file (expected an RTSTRUCT or SEG mask)", path=path)
    modality = str(header.get("Modality", "") or "").upper()
    if modality not in ("RTSTRUCT", "SEG"):
        raise InvalidInputError(f"is a DICOM {modality or 'non-mask'} object, not an RTSTRUCT or SEG mask", path=path)
    with quiet_pydicom():
        try:
            dataset = pydicom.dcmread(path, force=True)
        except HEADER_ERRORS as error:
            raise InvalidInputError(f"unreadable DICOM mask ({str(error).splitlines()[0]})", path=path) from None
    if modality == "RTSTRUCT":
        return rasterise_rtstruct(dataset, reference, label=label, path=path)
    return place_seg(dataset, reference, label=label, path=path)
