"""What a scan is: geometry, intensities and (for DICOM) the series found; never patient identifiers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medxai.errors import InvalidInputError
from medxai.io.preflight import check_path
from medxai.io.readers import read_mask, read_volume
from medxai.volume import Volume

NIFTI_ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_image_file(path: Path) -> bool:
    """True for NIfTI/NRRD/MHA files (read by suffix), as opposed to DICOM files and folders."""
    return path.is_file() and path.name.lower().endswith(NIFTI_ITK_SUFFIXES)


def volume_summary(volume: Volume) -> dict[str, Any]:
    """Geometry (shape, spacing, orientation codes, origin, affine) and intensity range of a volume."""
    finite = volume.data[np.isfinite(volume.data)] if np.issubdtype(volume.data.dtype, np.floating) else volume.data
    return {
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 6) for s in volume.spacing],
        "orientation": volume.orientation,
        "origin_mm": [round(float(v), 6) for v in volume.affine[:3, 3]],
        "affine": [[round(float(v), 6) for v in row] for row in volume.affine],
        "dtype": str(volume.data.dtype),
        "intensity": {
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "mean": float(finite.mean()) if finite.size else None,
        },
    }


def _mask_summary(mask_path: Path, reference: Volume, label: int | str | None) -> dict[str, Any]:
    mask = read_mask(mask_path, reference, label=label)
    voxels = int(np.count_nonzero(mask.data))
    voxel_ml = float(abs(np.linalg.det(reference.affine[:3, :3]))) / 1000.0
    keys = ("roi_number", "roi_name", "segment_number", "segment_label", "labels")
    extra = {k: mask.metadata[k] for k in keys if k in mask.metadata}
    return {"source": mask_path.name, "label": label, "voxels": voxels, "volume_ml": round(voxels * voxel_ml, 4), **extra}


def describe_scan(path: str | Path, *, series_uid: str | None = None, mask: str | Path | None = None,
                  label: int | str | None = None) -> dict[str, Any]:
    """A JSON-ready description of ``path`` (NIfTI/NRRD/MHA file, DICOM file or folder).

    For DICOM, every image series found is listed (UID, number, description, modality, counts,
    orientation, why it is not a 3D volume if so) and each 3D series is summarised; the scan must hold
    at least one 3D volume. ``mask`` (label map, RTSTRUCT or SEG) is summarised on the single volume.
    """
    from medxai.io.dicom import load_series, require_series, select_series

    path = Path(path)
    check_path(path, folder_ok=not path.name.lower().endswith(NIFTI_ITK_SUFFIXES))  # a folder is a DICOM series
    if is_image_file(path):
        volume = read_volume(path)
        result: dict[str, Any] = {"source": str(path), "format": volume.metadata.get("format", "unknown"),
                                  "modality": "unknown", "volume": volume_summary(volume)}
        volumes = [volume]
    else:
        series = require_series(path)
        if series_uid is not None:
            series = [select_series(series, path, series_uid=series_uid)]
        listed, volumes = [], []
        for info in series:
            entry: dict[str, Any] = {
                "uid": info.uid, "number": info.number, "description": info.description, "modality": info.modality,
                "files": info.n_files, "frames": info.n_frames, "orientation": info.orientation,
                "is_volume": info.is_volume, "problem": info.problem,
            }
            if info.is_volume:
                volume = load_series(info, root=path)
                volumes.append(volume)
                entry["volume"] = volume_summary(volume)
                entry["acquisition"] = dict(volume.metadata.get("acquisition", {}))
            listed.append(entry)
        if not volumes:
            problems = "; ".join(f"{s.label()}: {s.problem}" for s in series)
            raise InvalidInputError(f"no series forms a 3D volume ({problems})", path=path)
        result = {"source": str(path), "format": "dicom", "series": listed}
    if mask is not None:
        if len(volumes) != 1:
            raise InvalidInputError(f"{len(volumes)} 3D series: a mask needs a single image series", path=path)
        result["mask"] = _mask_summary(Path(mask), volumes[0], label)
    return result
