"""Write a :class:`~medxai.volume.Volume` as one enhanced multi-frame DICOM object (tests only).

Geometry and rescale go into functional groups as scanners write them (PS3.3 C.7.6.16): orientation and
pixel measures shared, plane position and pixel value transformation per frame; frames in a seeded
random order. ``temporal_positions > 1`` repeats every slice (values times t + 1) to make a 4D object.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from medxai.dicom_export.image_series import lps_geometry
from medxai.testing.dicom_writer import ds_string, frame_of_reference_uid, stored_values, study_uid
from medxai.volume import Volume

ENHANCED_CLASSES = {"MR": UID("1.2.840.10008.5.1.4.1.1.4.1"), "CT": UID("1.2.840.10008.5.1.4.1.1.2.1")}


def _item(**attributes: object) -> DicomSequence:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return DicomSequence([item])


def write_enhanced_series(volume: Volume, path: str | Path, *, modality: str = "MR", shuffle_seed: int | None = 0,
                          rescale_slope: float = 1.0, rescale_intercept: float = 0.0, temporal_positions: int = 1,
                          patient_name: str = "Anon") -> Path:
    """Write ``volume`` (values already ``intercept + slope * n``) as an enhanced CT/MR object at ``path``."""
    directions, spacing, origin = lps_geometry(volume.affine)
    slope, intercept = float(ds_string(rescale_slope)), float(ds_string(rescale_intercept))
    frames = [(t, k) for t in range(temporal_positions) for k in range(volume.shape[2])]
    if shuffle_seed is not None:
        frames = [frames[int(i)] for i in np.random.default_rng(shuffle_seed).permutation(len(frames))]
    values = np.stack([volume.data[:, :, k].T * (t + 1) for t, k in frames]).astype(np.float64)
    stored, representation = stored_values(values, slope, intercept)
    uid = generate_uid(entropy_srcs=[patient_name, modality, volume.affine.tobytes().hex(), str(temporal_positions)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ENHANCED_CLASSES[modality], uid
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = ENHANCED_CLASSES[modality], uid, modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid(patient_name), generate_uid(entropy_srcs=[uid, "series"])
    ds.FrameOfReferenceUID, ds.PatientName, ds.PatientID = frame_of_reference_uid(patient_name), patient_name, "anon"
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 7, 1, f"enhanced {modality}"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = volume.shape[1], volume.shape[0], len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, representation
    shared = Dataset()
    orientation = np.concatenate([directions[:, 0], directions[:, 1]])
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=[ds_string(v) for v in orientation])
    shared.PixelMeasuresSequence = _item(PixelSpacing=[ds_string(spacing[1]), ds_string(spacing[0])],
                                         SliceThickness=ds_string(spacing[2]))
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    groups = []
    for t, k in frames:
        group = Dataset()
        position = origin + directions[:, 2] * spacing[2] * k
        group.PlanePositionSequence = _item(ImagePositionPatient=[ds_string(v) for v in position])
        group.PixelValueTransformationSequence = _item(RescaleSlope=ds_string(slope), RescaleIntercept=ds_string(intercept),
                                                       RescaleType="US")
        group.FrameContentSequence = _item(TemporalPositionIndex=t + 1, InStackPositionNumber=k + 1)
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(groups)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    ds.save_as(Path(path), enforce_file_format=True)
    return Path(path)
