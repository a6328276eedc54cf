"""One entry point to read any supported scan or mask into a :class:`~medxai.volume.Volume`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medxai.errors import InvalidInputError
from medxai.volume import Volume

_NIFTI = (".nii", ".nii.gz")
_ITK = (".nrrd", ".nhdr", ".mha", ".mhd")


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def read_volume(path: str | Path, *, series_uid: str | None = None) -> Volume:
    """Read a NIfTI, NRRD/MHA file or a DICOM folder/file; refuse non-finite voxel values."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError("no such file or folder", path=path)
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


def read_mask(path: str | Path, reference: Volume, *, label: int | str | None = None) -> Volume:
    """Read a mask (label map file, DICOM RTSTRUCT or SEG) on ``reference``'s grid, as uint8 0/1.

    A label map must already share the reference grid (a mismatched mask is an input error, not
    something to resample silently); ``label`` selects one label value or RTSTRUCT ROI name.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError("no such mask file", path=path)
    if path.is_file() and not _has_suffix(path, _NIFTI + _ITK):
        from medxai.io.dicom_masks import read_dicom_mask

        return read_dicom_mask(path, reference, label=label)
    mask = read_volume(path)
    if not mask.same_grid(reference):
        raise InvalidInputError(
            f"mask grid (shape {mask.shape}, orientation {mask.orientation}, spacing "
            f"{tuple(round(s, 3) for s in mask.spacing)}) does not match the image grid (shape {reference.shape}, "
            f"orientation {reference.orientation}, spacing {tuple(round(s, 3) for s in reference.spacing)})",
            path=path,
        )
    values = mask.data if label is None else (mask.data == int(label))
    binary = (np.asarray(values) > 0).astype(np.uint8)
    if not binary.any():
        raise InvalidInputError("mask is empty" + (f" for label {label}" if label is not None else ""), path=path)
    return reference.with_data(binary, source=path.name, format="mask")
