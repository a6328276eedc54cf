"""The source DICOM series of an export: its headers in slice order and its grid (RAS affine).

Discovery, series choice and slice sorting are :mod:`medxai.io.dicom`'s; this module only reads the headers
of the chosen series' files (no pixels) in the order the writers need, and maps NIfTI outputs of a case
folder onto the series' grid exactly (permuted or flipped axes allowed, never resampled).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import highdicom as hd
import pydicom
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import validate_value

from medxai.errors import InvalidInputError
from medxai.io.dicom import require_series, select_series
from medxai.io.dicom_geometry import StackGeometry, stack_geometry
from medxai.io.dicom_series import HEADER_ERRORS, quiet_pydicom
from medxai.io.readers import read_volume, reoriented_onto
from medxai.volume import Volume

# Groups of the Patient, Clinical Trial, Study scheduling and Visit modules, and the General Study module's
# optional (Type 3) attributes: highdicom copies whole modules from the source; only TYPE2_PATIENT_STUDY may go.
PATIENT_GROUPS = (0x0010, 0x0012, 0x0032, 0x0038)
STUDY_OPTIONAL = ("StudyDescription", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
                  "NameOfPhysiciansReadingStudy", "PhysiciansReadingStudyIdentificationSequence",
                  "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
                  "ConsultingPhysicianIdentificationSequence", "IssuerOfAccessionNumberSequence", "ReferencedStudySequence",
                  "ReferencedPatientSequence", "ProcedureCodeSequence", "RequestingServiceCodeSequence",
                  "ReasonForPerformedProcedureCodeSequence", "AdmittingDiagnosesDescription",
                  "AdmittingDiagnosesCodeSequence", "InstitutionName", "InstitutionAddress",
                  "InstitutionalDepartmentName", "StationName", "OperatorsName", "PerformingPhysicianName")
# Type 2 attributes of the Patient and General Study modules: every derived object must carry them, empty when
# the source lacks them (an empty value adds no identifier; highdicom copies them from the first source image).
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass(frozen=True)
class SourceSeries:
    """The headers of a source series and its grid.

    ``datasets`` are the source image objects as highdicom wants them: single-frame files in slice (k)
    order, or the one multi-frame file. ``frame_slices[f]`` is the slice index k (along the normal, as in
    :func:`~medxai.io.dicom.read_dicom_volume`'s array) of the f-th source frame in that order.
    ``grid`` is a volume of zeros with the series' shape and RAS affine (what case-folder NIfTIs must match).
    """

    root: Path
    datasets: tuple[Dataset, ...]
    frame_slices: tuple[int, ...]
    grid: Volume
    pixel_measures: hd.PixelMeasuresSequence

    @property
    def first(self) -> Dataset:
        return self.datasets[0]

    def frames_of(self, data: np.ndarray) -> np.ndarray:
        """An (i, j, k) array on ``grid`` as DICOM frames (source frame, row, column), in source frame order."""
        return np.stack([np.asarray(data[:, :, k]).T for k in self.frame_slices])


def _header(path: Path, root: Path) -> Dataset:
    with quiet_pydicom():
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except HEADER_ERRORS as error:
            raise InvalidInputError(f"unreadable DICOM file {path.name} ({type(error).__name__})", path=root) from None
    return minimal_patient_study(dataset)


def minimal_patient_study(dataset: Dataset) -> Dataset:
    """``dataset`` with its patient and study information cut down to the Type 2 attributes every derived
    object must carry (added empty when the source lacks them), so no writer can copy more."""
    for element in list(dataset):
        optional = element.tag.group in PATIENT_GROUPS or element.keyword in STUDY_OPTIONAL or element.VR == "PN"
        if optional and element.keyword not in TYPE2_PATIENT_STUDY:
            del dataset[element.tag]
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in dataset or not _valid(dataset[keyword]):
            setattr(dataset, keyword, "")  # absent, or a value its VR forbids (e.g. a 17-character Study ID): unknown
    return dataset


def _valid(element: DataElement) -> bool:
    values = element.value if element.VM > 1 else [element.value]
    try:
        for value in values:
            validate_value(element.VR, value, config.RAISE)
    except ValueError:
        return False
    return True


def is_volume_file(path: Path) -> bool:
    """Whether ``path`` is a NIfTI/NRRD/MHA scan file (no DICOM header: no patient, no study)."""
    return path.is_file() and path.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"))


def read_source(path: str | Path, *, series_uid: str | None = None) -> SourceSeries:
    """The one 3D series under ``path`` (a folder or a multi-frame file); refuse anything that is not DICOM."""
    root = Path(path)
    if is_volume_file(root):
        raise InvalidInputError("not a DICOM series: a NIfTI/NRRD/MHA scan carries no patient or study to attach DICOM "
                                "outputs to; give the patient's identifiers (export-dicom --patient-id ID "
                                "--patient-name NAME) to write it as a new DICOM series first", path=root)
    info = select_series(require_series(root), root, series_uid=series_uid)
    geometry = stack_geometry(info.frames, root=root)
    files = list(dict.fromkeys(frame.path for frame in geometry.frames))
    slice_of = {(frame.path, frame.index): k for k, frame in enumerate(geometry.frames)}
    if len(files) == 1 and geometry.frames[0].index is not None:  # one multi-frame object: frames in file order
        frame_slices = tuple(slice_of[(files[0], index)] for index in range(len(geometry.frames)))
    elif len(files) == len(geometry.frames):
        frame_slices = tuple(range(len(geometry.frames)))
    else:
        raise InvalidInputError("a series split over several multi-frame files cannot be a DICOM export source", path=root)
    datasets = tuple(_header(file, root) for file in files)
    for dataset in datasets:
        if "FrameOfReferenceUID" not in dataset or "StudyInstanceUID" not in dataset:
            raise InvalidInputError("the source series has no FrameOfReferenceUID or StudyInstanceUID", path=root)
    measures = _pixel_measures(geometry, datasets[0])
    for dataset in datasets:
        if "PixelSpacing" in dataset and dataset.get("SliceThickness") in (None, ""):
            dataset.SliceThickness = measures[0].SliceThickness  # highdicom reads it from every single-frame source
    grid = Volume(data=np.zeros(geometry.shape, dtype=np.uint8), affine=geometry.affine)
    return SourceSeries(root=root, datasets=datasets, frame_slices=frame_slices, grid=grid,
                        pixel_measures=measures)


def _pixel_measures(geometry: StackGeometry, first: Dataset) -> hd.PixelMeasuresSequence:
    """Pixel spacing and slice spacing from the sorted stack; the source's SliceThickness when it has one (a
    Type 2 attribute some series leave out), else the spacing between slices."""
    thickness = first.get("SliceThickness")
    return hd.PixelMeasuresSequence(pixel_spacing=list(geometry.frames[0].spacing or ()),
                                    slice_thickness=float(thickness) if thickness not in (None, "") else geometry.slice_spacing,
                                    spacing_between_slices=geometry.slice_spacing)


def on_source_grid(path: Path, source: SourceSeries) -> np.ndarray:
    """The voxels of a case-folder NIfTI on the source grid (exact axis permutation/flip), or an error."""
    volume = read_volume(path)
    data = reoriented_onto(volume, source.grid)
    if data is None:
        grid = source.grid
        raise InvalidInputError(
            f"grid (shape {volume.shape}, orientation {volume.orientation}, spacing "
            f"{tuple(round(s, 3) for s in volume.spacing)}) is not the source series' grid (shape {grid.shape}, "
            f"orientation {grid.orientation}, spacing {tuple(round(s, 3) for s in grid.spacing)})",
            path=path,
        )
    return np.asarray(data)
