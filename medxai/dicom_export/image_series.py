"""A NIfTI/NRRD/MHA scan as a new DICOM image series, with the identifiers the user gives and nothing else.

DICOM outputs (SEG, Parametric Map...) must reference a source image series in a study. A NIfTI scan has
neither, so :func:`image_series` writes the scan itself as single-frame CT or MR Image objects on its exact
grid (one instance per slice k, RAS -> LPS), in a new study (or the one ``--study-uid`` names) whose patient
is the one the user names. Built by hand with pydicom: highdicom has no constructor for CT/MR images from an
array (its ``legacy`` module converts existing single-frame objects, its ``sc`` module writes Secondary
Captures, which carry no patient geometry).

Voxel values are stored as 16-bit integers, exactly: integer data as they are (an intercept shifts a range
wider than int16 into uint16), float data through RescaleSlope/Intercept when every value lies on one
``intercept + slope * n`` ladder of at most 65536 steps (a CT converted to NIfTI with scl_slope, say); other
float data is refused, never quantised. MR Image objects have no rescale, so MR data must be whole numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
from pydicom.valuerep import format_number_as_ds, validate_value

from medxai.dicom_export.identity import MANUFACTURER, MODEL_NAME, SOFTWARE_VERSION, derived_uid, digest
from medxai.dicom_export.source import TYPE2_PATIENT_STUDY
from medxai.errors import ConfigError, InvalidInputError
from medxai.volume import Volume

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
SOP_CLASSES = {"CT": UID("1.2.840.10008.5.1.4.1.1.2"), "MR": UID("1.2.840.10008.5.1.4.1.1.4")}
SERIES_NUMBER = 1
LEVELS = 65536  # 16-bit stored values


@dataclass(frozen=True)
class NewStudy:
    """What the user says about a NIfTI scan: its patient, its modality and, optionally, the study it joins
    (a new study UID, derived from the scan and these identifiers, otherwise)."""

    patient_id: str
    patient_name: str
    modality: str = "CT"
    study_uid: str | None = None

    def __post_init__(self) -> None:
        if self.modality not in SOP_CLASSES:
            raise ConfigError(f"--modality must be one of {', '.join(SOP_CLASSES)} for a NIfTI/NRRD source, not {self.modality!r}")
        for option, vr, value in (("--patient-id", "LO", self.patient_id), ("--patient-name", "PN", self.patient_name),
                                  ("--study-uid", "UI", self.study_uid)):
            if value is not None and not _valid(vr, value):
                raise ConfigError(f"{option} {value!r} is not a valid DICOM {vr} value")
            if value is not None and not value.strip():
                raise ConfigError(f"{option} is empty")


def _valid(vr: str, value: str) -> bool:
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError:
        return False
    return "\\" not in value and value.isprintable()  # one value; no control characters


def lps_geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS direction cosines (3x3, columns i j k), spacing (i, j, k) and origin of a RAS affine; ValueError for
    a sheared affine (no stack of DICOM image planes holds it)."""
    linear = LPS_FROM_RAS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    directions = linear / spacing
    if np.abs(directions.T @ directions - np.eye(3)).max() > 1e-6:
        raise ValueError("sheared (non-orthogonal) grid")
    return directions, spacing, LPS_FROM_RAS @ np.asarray(affine, dtype=np.float64)[:3, 3]


@dataclass(frozen=True)
class StoredPixels:
    """16-bit stored values (i, j, k) and the rescale that gives the voxel values back."""

    values: np.ndarray
    slope: str
    intercept: str

    @property
    def pixel_representation(self) -> int:
        return 1 if self.values.dtype == np.int16 else 0


def stored_pixels(data: np.ndarray, modality: str, path: object) -> StoredPixels:
    """Exact 16-bit stored values for ``data``, or an InvalidInputError saying why there are none."""
    values = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("NaN or infinite voxel values cannot be stored in a DICOM image", path=path)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if np.array_equal(values, np.rint(values)):
        if low >= -32768 and high <= 32767:
            return StoredPixels(values.astype(np.int16), "1", "0")
        if low >= 0 and high <= 65535:
            return StoredPixels(values.astype(np.uint16), "1", "0")
        if high - low < LEVELS and modality == "CT":
            return StoredPixels((values - low).astype(np.uint16), "1", format_number_as_ds(low))
        raise InvalidInputError(f"voxel values {low:g}..{high:g} span more than the 16 bits of a DICOM "
                                f"{modality} image", path=path)
    if modality != "CT":
        raise InvalidInputError(f"non-integer voxel values cannot be stored in a DICOM {modality} image (it has no "
                                "rescale slope): convert the scan to whole numbers, or export it as CT", path=path)
    return _ladder(values, low, high, path)


def _ladder(values: np.ndarray, low: float, high: float, path: object) -> StoredPixels:
    """Float values on one ``intercept + slope * n`` ladder (n < 65536), exactly within float32 rounding."""
    levels = np.unique(values)
    if levels.size == 1:  # one value: the intercept alone
        return StoredPixels(np.zeros(values.shape, np.uint16), "1", format_number_as_ds(low))
    steps = int(round((high - low) / float(np.diff(levels).min())))
    if steps >= LEVELS:
        raise InvalidInputError(f"float voxel values with {levels.size} distinct levels cannot be stored exactly as "
                                "16-bit DICOM pixels (rescale slope and intercept); refusing to quantise them", path=path)
    slope, intercept = format_number_as_ds((high - low) / steps), format_number_as_ds(low)
    stored = np.rint((values - float(intercept)) / float(slope))
    restored = stored * float(slope) + float(intercept)  # what a DICOM reader computes
    tolerance = 1e-3 * float(slope) + np.abs(values) * np.finfo(np.float32).eps
    if stored.min() < 0 or stored.max() >= LEVELS or np.any(np.abs(restored - values) > tolerance):
        raise InvalidInputError("float voxel values do not lie on one rescale slope/intercept ladder and cannot be "
                                "stored exactly as 16-bit DICOM pixels; refusing to quantise them", path=path)
    return StoredPixels(stored.astype(np.uint16), slope, intercept)


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def image_series(volume: Volume, study: NewStudy, *, path: object) -> list[Dataset]:
    """``volume`` as single-frame DICOM images (slice k = instance k + 1), in memory."""
    try:
        directions, spacing, origin = lps_geometry(volume.affine)
    except ValueError:
        raise InvalidInputError("a sheared (non-orthogonal) grid cannot be written as a DICOM image series", path=path) from None
    pixels = stored_pixels(volume.data, study.modality, path)
    key = "nifti:" + digest(np.ascontiguousarray(volume.data).tobytes(), str(volume.data.dtype).encode(),
                            volume.affine.tobytes(), "\x1f".join((study.patient_id, study.patient_name, study.modality)).encode())
    study_uid = study.study_uid or derived_uid(key, "study")
    series_uid, frame_uid = derived_uid(key, "series", study_uid), derived_uid(key, "frame-of-reference", study_uid)
    shared = _shared(study, study_uid, series_uid, frame_uid, directions, spacing, pixels)
    datasets = []
    for k in range(volume.shape[2]):
        dataset = Dataset()
        dataset.update(shared)
        dataset.SOPInstanceUID = derived_uid(key, "image", series_uid, k)
        dataset.file_meta = _file_meta(dataset.SOPClassUID, dataset.SOPInstanceUID)
        dataset.InstanceNumber = k + 1
        dataset.ImagePositionPatient = [_ds(v) for v in origin + directions[:, 2] * spacing[2] * k]
        plane = np.ascontiguousarray(pixels.values[:, :, k].T)  # DICOM rows run along j, columns along i
        dataset.Rows, dataset.Columns = plane.shape
        dataset.PixelData = plane.tobytes()
        datasets.append(dataset)
    return datasets


def _file_meta(sop_class: UID, sop_instance: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _shared(study: NewStudy, study_uid: str, series_uid: str, frame_uid: str, directions: np.ndarray,
            spacing: np.ndarray, pixels: StoredPixels) -> Dataset:
    """The attributes every slice shares: the user's identifiers, Type 2 study attributes empty, the grid."""
    dataset = Dataset()
    dataset.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the user's names as given
    dataset.SOPClassUID = SOP_CLASSES[study.modality]
    dataset.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if study.modality == "CT" else "OTHER"]
    for keyword in TYPE2_PATIENT_STUDY:
        setattr(dataset, keyword, "")  # Type 2: unknown, so empty; nothing is made up
    dataset.PatientID, dataset.PatientName = study.patient_id, study.patient_name
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    dataset.Modality, dataset.SeriesNumber, dataset.Laterality = study.modality, SERIES_NUMBER, ""
    dataset.PositionReferenceIndicator, dataset.PatientOrientation, dataset.PatientPosition = "", "", ""
    dataset.Manufacturer, dataset.ManufacturerModelName = MANUFACTURER, MODEL_NAME
    dataset.SoftwareVersions = SOFTWARE_VERSION
    dataset.ImageOrientationPatient = [_ds(v) for v in np.concatenate([directions[:, 0], directions[:, 1]])]
    dataset.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # between rows (j), between columns (i)
    dataset.SliceThickness = _ds(spacing[2])
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = pixels.pixel_representation
    if study.modality == "CT":
        dataset.RescaleSlope, dataset.RescaleIntercept, dataset.RescaleType = pixels.slope, pixels.intercept, "US"
        dataset.KVP, dataset.AcquisitionNumber = "", ""
    else:  # MR Image module: Type 1 sequence attributes say "unknown" as far as the standard allows
        dataset.ScanningSequence, dataset.SequenceVariant, dataset.ScanOptions = "RM", "NONE", ""
        dataset.MRAcquisitionType, dataset.RepetitionTime, dataset.EchoTime = "", "", ""
        dataset.EchoTrainLength, dataset.AcquisitionNumber = "", ""
    return dataset
