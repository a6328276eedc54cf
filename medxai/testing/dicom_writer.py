"""Write test DICOM series from a :class:`~medxai.volume.Volume` (any oblique, flipped, anisotropic grid).

For tests only: files are valid single-frame CT/MR/PT objects (Explicit VR Little Endian) that pydicom,
dcm2niix and medxai read, with deliberately unhelpful file names and scrambled InstanceNumbers so that
a reader relying on either is caught. Voxel values are stored as 16-bit integers through
RescaleSlope/Intercept; :func:`dicom_representable` gives the values a reader will get back.

Round trip: ``read_dicom_volume(folder)`` returns the same affine (within DS rounding, ~1e-10 mm) and the
same array when the affine is right-handed (det > 0, e.g. RAS, LPS, rotations of them). DICOM does not
store slice order, so a left-handed grid comes back with k reversed: identical in world space.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
from pydicom.valuerep import format_number_as_ds

from medxai.dicom_export.image_series import lps_geometry  # the library's geometry, not a copy
from medxai.volume import Volume

SOP_CLASSES = {
    "CT": UID("1.2.840.10008.5.1.4.1.1.2"),
    "MR": UID("1.2.840.10008.5.1.4.1.1.4"),
    "PT": UID("1.2.840.10008.5.1.4.1.1.128"),
}


def ds_string(value: float) -> str:
    """A number as the (at most 16-character) DS string a reader will parse."""
    return format_number_as_ds(float(value))


def dicom_representable(volume: Volume, *, rescale_slope: float = 1.0, rescale_intercept: float = 0.0) -> Volume:
    """``volume`` with values rounded to ``intercept + slope * n`` exactly as a DICOM reader returns them
    (integer dtype when slope is 1 and intercept whole, float32 otherwise)."""
    slope, intercept = float(ds_string(rescale_slope)), float(ds_string(rescale_intercept))
    stored = np.rint((np.asarray(volume.data, dtype=np.float64) - intercept) / slope)
    if slope == 1 and intercept == round(intercept):
        values = stored + intercept
        return volume.with_data(values.astype(np.int16 if values.min() >= -32768 and values.max() <= 32767 else np.int32))
    return volume.with_data((stored * slope + intercept).astype(np.float32))


def stored_values(data: np.ndarray, slope: float, intercept: float) -> tuple[np.ndarray, int]:
    """16-bit stored values and PixelRepresentation; refuses values the rescale cannot represent."""
    exact = (np.asarray(data, dtype=np.float64) - intercept) / slope
    stored = np.rint(exact)
    # Valid float32 inputs sit within ~1e-3 of an integer step after float32 rounding; 0.01 leaves margin.
    if not np.all(np.isfinite(exact)) or np.abs(exact - stored).max(initial=0) > 0.01:
        raise ValueError("volume values are not intercept + slope * integer; pass them through dicom_representable() first")
    if stored.min(initial=0) >= 0 and stored.max(initial=0) <= 65535:
        return stored.astype(np.uint16), 0
    if stored.min() >= -32768 and stored.max() <= 32767:
        return stored.astype(np.int16), 1
    raise ValueError(f"stored values {stored.min():.0f}..{stored.max():.0f} do not fit 16 bits; choose another rescale slope")


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def study_uid(patient_name: str) -> UID:
    """The StudyInstanceUID every series written for ``patient_name`` shares."""
    return _uid(patient_name, "study")


def frame_of_reference_uid(patient_name: str) -> UID:
    """The FrameOfReferenceUID every series written for ``patient_name`` shares."""
    return _uid(patient_name, "frame-of-reference")


def _write_slices(volume: Volume, folder: Path, *, modality: str, series_uid: str, names: list[str], instance_numbers: list[int],
                  rescale_slope: float, rescale_intercept: float, series_description: str, patient_name: str,
                  series_number: int, image_type: tuple[str, ...]) -> list[Path]:
    if modality not in SOP_CLASSES:
        raise ValueError(f"modality must be one of {sorted(SOP_CLASSES)}")
    directions, spacing, origin = lps_geometry(volume.affine)
    stored, representation = stored_values(volume.data, float(ds_string(rescale_slope)), float(ds_string(rescale_intercept)))
    folder.mkdir(parents=True, exist_ok=True)
    study, frame_uid = study_uid(patient_name), frame_of_reference_uid(patient_name)
    paths = []
    for k in range(volume.shape[2]):
        pixels = np.ascontiguousarray(stored[:, :, k].T)  # DICOM rows run along j, columns along i
        sop_uid = _uid(series_uid, k, hashlib.sha256(pixels.tobytes()).hexdigest())
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = SOP_CLASSES[modality], sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame_uid
        ds.Modality, ds.Manufacturer, ds.ImageType = modality, "medxai test writer", list(image_type)
        ds.PatientName, ds.PatientID = patient_name, "anon"
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = series_description, series_number, instance_numbers[k]
        ds.ImagePositionPatient = [ds_string(v) for v in origin + directions[:, 2] * spacing[2] * k]
        ds.ImageOrientationPatient = [ds_string(v) for v in np.concatenate([directions[:, 0], directions[:, 1]])]
        ds.PixelSpacing = [ds_string(spacing[1]), ds_string(spacing[0])]  # between rows (j), between columns (i)
        ds.SliceThickness = ds_string(spacing[2])
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, representation
        ds.RescaleSlope, ds.RescaleIntercept = ds_string(rescale_slope), ds_string(rescale_intercept)
        ds.PixelData = pixels.tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dicom_series(volume: Volume, folder: str | Path, *, modality: str = "CT", series_uid: str | None = None,
                       shuffle_seed: int | None = 0, rescale_slope: float = 1.0, rescale_intercept: float = 0.0,
                       series_description: str = "medxai test series", patient_name: str = "Anon",
                       series_number: int = 1) -> list[Path]:
    """Write ``volume`` as a single-frame DICOM series in ``folder``; returns the paths in slice (k) order.

    With ``shuffle_seed`` set, file names are a seeded permutation unrelated to position and
    InstanceNumbers another one; ``None`` writes ``im_0000.dcm``... with InstanceNumber k + 1.
    Study and frame-of-reference UIDs derive from ``patient_name``, so series written for the same
    patient share them; UIDs are deterministic for the same inputs.
    """
    n = volume.shape[2]
    data_digest = hashlib.sha256(np.ascontiguousarray(volume.data).tobytes()).hexdigest()
    series_uid = series_uid or _uid(series_description, modality, volume.affine.tobytes().hex(), data_digest, shuffle_seed)
    if shuffle_seed is None:
        ranks, instance_numbers = list(range(n)), [k + 1 for k in range(n)]
    else:
        rng = np.random.default_rng(shuffle_seed)
        ranks, instance_numbers = [int(r) for r in rng.permutation(n)], [int(r) + 1 for r in rng.permutation(n)]
    token = hashlib.sha256(series_uid.encode()).hexdigest()[:6]
    names = [f"im_{token}_{rank:04d}.dcm" for rank in ranks]
    return _write_slices(volume, Path(folder), modality=modality, series_uid=series_uid, names=names,
                         instance_numbers=instance_numbers, rescale_slope=rescale_slope, rescale_intercept=rescale_intercept,
                         series_description=series_description, patient_name=patient_name, series_number=series_number,
                         image_type=("ORIGINAL", "PRIMARY", "AXIAL"))


def write_localizer(folder: str | Path, *, plane: str = "coronal", size: tuple[int, int] = (24, 20),
                    spacing_mm: float = 4.0, centre_ras: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    modality: str = "CT", patient_name: str = "Anon", series_number: int = 99) -> Path:
    """Write a one-slice LOCALIZER series (``plane`` coronal or sagittal) into ``folder``; returns its path."""
    axes = {"coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)), "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))}  # RAS i, j
    if plane not in axes:
        raise ValueError("plane must be 'coronal' or 'sagittal'")
    i_axis, j_axis = (np.array(axis) for axis in axes[plane])
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1] = i_axis * spacing_mm, j_axis * spacing_mm
    affine[:3, 2] = np.cross(i_axis, j_axis) * spacing_mm
    affine[:3, 3] = np.asarray(centre_ras) - affine[:3, :2] @ ((np.asarray(size) - 1) / 2.0)
    ii, jj = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")
    volume = Volume(data=(ii * 7 + jj * 3)[:, :, None].astype(np.int16), affine=affine)
    series_uid = _uid("localizer", plane, patient_name, affine.tobytes().hex())
    paths = _write_slices(volume, Path(folder), modality=modality, series_uid=series_uid, names=[f"loc_{plane}.dcm"],
                          instance_numbers=[1], rescale_slope=1.0, rescale_intercept=0.0,
                          series_description=f"Localizer {plane}", patient_name=patient_name, series_number=series_number,
                          image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    return paths[0]
