"""Write test RTSTRUCT and DICOM SEG objects for masks on a :class:`~medxai.volume.Volume` grid.

For tests only: minimal but valid objects (the attributes mask readers use), in the frame of reference
that :func:`medxai.testing.dicom_writer.write_dicom_series` gives series of the same ``patient_name``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from medxai.dicom_export.image_series import LPS_FROM_RAS, lps_geometry
from medxai.testing.dicom_writer import ds_string, frame_of_reference_uid, study_uid
from medxai.volume import Volume

RTSTRUCT_CLASS = UID("1.2.840.10008.5.1.4.1.1.481.3")
SEG_CLASS = UID("1.2.840.10008.5.1.4.1.1.66.4")


def _base(sop_class: UID, modality: str, patient_name: str, seed: str) -> Dataset:
    uid = generate_uid(entropy_srcs=[seed, modality, patient_name])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, uid
    meta.TransferSyntaxUID, meta.ImplementationClassUID = ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, uid, modality
    ds.PatientName, ds.PatientID = patient_name, "anon"
    ds.StudyInstanceUID = study_uid(patient_name)
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, modality, "series"])
    ds.FrameOfReferenceUID = frame_of_reference_uid(patient_name)
    ds.SeriesNumber, ds.InstanceNumber = 900, 1
    return ds


def write_rtstruct(path: str | Path, rois: Mapping[str, Sequence[np.ndarray]], *, patient_name: str = "Anon",
                   frame_of_reference: str | None = None) -> Path:
    """An RTSTRUCT with one ROI per ``rois`` item (numbered 1, 2, ...), each a list of closed planar
    contours given as (N, 3) RAS mm points."""
    ds = _base(RTSTRUCT_CLASS, "RTSTRUCT", patient_name, f"rtstruct-{sorted(rois)}")
    frame_uid = frame_of_reference or ds.FrameOfReferenceUID
    ds.StructureSetLabel = "medxai test"
    referenced = Dataset()
    referenced.FrameOfReferenceUID = frame_uid
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([referenced])
    structure_items, contour_items = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame_uid
        roi.ROIGenerationAlgorithm = "MANUAL"
        structure_items.append(roi)
        contour_sequence = []
        for points in contours:
            lps = np.asarray(points, dtype=np.float64) @ LPS_FROM_RAS.T
            contour = Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(lps)
            contour.ContourData = [ds_string(v) for v in lps.ravel()]
            contour_sequence.append(contour)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor = number, [255, 0, 0]
        item.ContourSequence = DicomSequence(contour_sequence)
        contour_items.append(item)
    ds.StructureSetROISequence = DicomSequence(structure_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.save_as(Path(path), enforce_file_format=True)
    return Path(path)


def _item(**attributes: object) -> DicomSequence:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return DicomSequence([item])


def write_seg(path: str | Path, labels: Volume, segment_labels: Mapping[int, str], *, patient_name: str = "Anon",
              shuffle_seed: int | None = 0) -> Path:
    """A BINARY DICOM SEG of the label map ``labels``: one frame per (segment, non-empty slice), frames in
    a seeded random order."""
    directions, spacing, origin = lps_geometry(labels.affine)
    frames = [(segment, k) for segment in segment_labels for k in range(labels.shape[2])
              if np.any(labels.data[:, :, k] == segment)]
    if shuffle_seed is not None:
        frames = [frames[int(i)] for i in np.random.default_rng(shuffle_seed).permutation(len(frames))]
    ds = _base(SEG_CLASS, "SEG", patient_name, f"seg-{sorted(segment_labels.items())}-{labels.shape}")
    ds.SegmentationType, ds.ContentLabel = "BINARY", "MEDXAI_TEST"
    ds.Rows, ds.Columns, ds.NumberOfFrames = labels.shape[1], labels.shape[0], len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    segments = []
    for number, name in segment_labels.items():
        segment = Dataset()
        segment.SegmentNumber, segment.SegmentLabel, segment.SegmentAlgorithmType = number, name, "MANUAL"
        segments.append(segment)
    ds.SegmentSequence = DicomSequence(segments)
    shared = Dataset()
    orientation = np.concatenate([directions[:, 0], directions[:, 1]])
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=[ds_string(v) for v in orientation])
    shared.PixelMeasuresSequence = _item(PixelSpacing=[ds_string(spacing[1]), ds_string(spacing[0])],
                                         SliceThickness=ds_string(spacing[2]))
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for segment, k in frames:
        group = Dataset()
        position = origin + directions[:, 2] * spacing[2] * k
        group.PlanePositionSequence = _item(ImagePositionPatient=[ds_string(v) for v in position])
        group.SegmentIdentificationSequence = _item(ReferencedSegmentNumber=segment)
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    pixels = np.stack([(labels.data[:, :, k] == segment).T for segment, k in frames]).astype(np.uint8)
    ds.PixelData = pack_bits(pixels)
    ds.save_as(Path(path), enforce_file_format=True)
    return Path(path)
