"""One entry point to read any supported scan or mask into a :class:`~medxai.volume.Volume`."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from nibabel import orientations

from medxai.errors import InvalidInputError
from medxai.io.preflight import check_path
from medxai.volume import Step, Volume

logger = logging.getLogger(__name__)

_NIFTI = (".nii", ".nii.gz")
_ITK = (".nrrd", ".nhdr", ".mha", ".mhd")


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def read_volume(path: str | Path, *, series_uid: str | None = None) -> Volume:
    """Read a NIfTI, NRRD/MHA file or a DICOM folder/file; refuse special files (unopened) and non-finite voxel values."""
    path = Path(path)
    check_path(path, folder_ok=not _has_suffix(path, _NIFTI + _ITK))  # a folder is a DICOM series
    if path.is_dir() or _has_suffix(path, (".dcm",)):
        from medxai.io.dicom import read_dicom_volume

        volume = read_dicom_volume(path, series_uid=series_uid)
    elif _has_suffix(path, _NIFTI):
        from medxai.io.nifti import read_nifti

        volume = read_nifti(path)
    elif _has_suffix(path, _ITK):
        from medxai.io.itk import read_itk

        volume = read_itk(path)
    else:
        from medxai.io.dicom import is_dicom_file, read_dicom_volume

        if not is_dicom_file(path):
            raise InvalidInputError("unsupported file type (expected NIfTI, NRRD/MHA or DICOM)", path=path)
        volume = read_dicom_volume(path, series_uid=series_uid)
    if np.issubdtype(volume.data.dtype, np.floating) and not np.all(np.isfinite(volume.data)):
        count = int(np.size(volume.data) - np.count_nonzero(np.isfinite(volume.data)))
        raise InvalidInputError(f"contains {count} NaN or infinite voxel values", path=path)
    return volume


def reoriented_onto(volume: Volume, reference: Volume) -> np.ndarray | None:
    """``volume``'s voxels on ``reference``'s grid when both grids are the same voxels in world space with
    permuted or flipped index axes (an LAS label map on its LPS CT): an exact axis permutation/flip, no
    interpolation, checked by the resulting affine. None when the grids truly differ."""
    if volume.same_grid(reference):
        return volume.data
    transform = orientations.ornt_transform(orientations.io_orientation(volume.affine),
                                            orientations.io_orientation(reference.affine))
    data = orientations.apply_orientation(volume.data, transform)
    affine = volume.affine @ orientations.inv_ornt_aff(transform, volume.shape)
    if data.shape == reference.shape and Volume(data, affine).same_grid(reference):
        return data
    return None


def _labels(values: np.ndarray) -> list[int | float]:
    """The non-zero values of a label map, as ints where they are whole numbers."""
    found = np.unique(values[values != 0])
    return [int(v) if float(v).is_integer() else float(v) for v in found.tolist()]


def read_mask(path: str | Path, reference: Volume, *, label: int | str | None = None) -> Volume:
    """Read a mask (label map file, DICOM RTSTRUCT or SEG) on ``reference``'s grid, as uint8 0/1.

    A label map must share the reference grid, possibly with permuted or flipped axes (reoriented
    exactly, see :func:`reoriented_onto`); any other grid is an input error, not something to resample
    silently. ``label`` selects one label value or RTSTRUCT ROI name; without it every non-zero label is
    kept (their union), with a logged warning when there are several. ``metadata["labels"]`` lists the
    labels the mask holds.
    """
    path = Path(path)
    check_path(path, folder_ok=True)
    if path.is_file() and not _has_suffix(path, _NIFTI + _ITK):
        from medxai.io.dicom_masks import read_dicom_mask

        return read_dicom_mask(path, reference, label=label)
    mask = read_volume(path)
    data = reoriented_onto(mask, reference)
    if data is None:
        raise InvalidInputError(
            f"mask grid (shape {mask.shape}, orientation {mask.orientation}, spacing "
            f"{tuple(round(s, 3) for s in mask.spacing)}) does not match the image grid (shape {reference.shape}, "
            f"orientation {reference.orientation}, spacing {tuple(round(s, 3) for s in reference.spacing)})",
            path=path,
        )
    values = data if label is None else (data == int(label))
    binary = (np.asarray(values) > 0).astype(np.uint8)
    if not binary.any():
        raise InvalidInputError("mask is empty" + (f" for label {label}" if label is not None else ""), path=path)
    labels = _labels(np.asarray(data)) if label is None else [int(label)]
    if len(labels) > 1:
        logger.warning("%s: labels %s merged into one mask (their union); choose one with a mask label",
                       path.name, ", ".join(map(str, labels)))
    step = None if data is mask.data else Step("reorient_mask", {"from": mask.orientation, "to": reference.orientation})
    return reference.with_data(binary, step=step, source=path.name, format="mask", labels=labels)
