"""Encapsulated PDF (PS3.3 A.45.1) of a case folder's ``report.pdf``, in the source study.

highdicom has no encapsulated-document class: its :class:`~highdicom.SOPClass` gives the Patient, General
Study, series, equipment and SOP Common modules; the Encapsulated Document and SC Equipment modules are set
here by hand. The PDF bytes are stored unchanged (the report holds identifiers only if it was asked to).
"""
from __future__ import annotations

import datetime
from pathlib import Path

import highdicom as hd
from pydicom.uid import ExplicitVRLittleEndian, UID

from medxai.dicom_export.identity import (DEVICE_SERIAL_NUMBER, MANUFACTURER, MODEL_NAME, SOFTWARE_VERSION,
                                          derived_uid, digest)
from medxai.dicom_export.source import SourceSeries
from medxai.errors import InvalidInputError

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
SERIES_NUMBER = 990
TITLE = "medxai explanation report"


def patient_study_arguments(source: SourceSeries) -> dict[str, object]:
    """The Type 2 Patient and General Study attributes of the source (empty when it has none), nothing more."""
    first = source.first
    return {
        "study_instance_uid": first.StudyInstanceUID, "patient_id": first.PatientID, "patient_name": first.PatientName,
        "patient_birth_date": first.PatientBirthDate, "patient_sex": first.PatientSex,
        "accession_number": first.AccessionNumber, "study_id": first.StudyID, "study_date": first.StudyDate,
        "study_time": first.StudyTime, "referring_physician_name": first.ReferringPhysicianName,
    }


def build_encapsulated_pdf(pdf_path: Path, source: SourceSeries) -> hd.SOPClass:
    """An Encapsulated PDF instance holding the bytes of ``pdf_path``."""
    try:
        document = pdf_path.read_bytes()
    except OSError as error:
        raise InvalidInputError(f"unreadable report ({error.strerror})", path=pdf_path) from None
    if not document.startswith(b"%PDF-"):
        raise InvalidInputError("not a PDF file", path=pdf_path)
    series_uid = derived_uid(source.first.SeriesInstanceUID, "pdf-series", digest(document))
    now = datetime.datetime.now()
    instance = hd.SOPClass(
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=derived_uid(series_uid, "pdf", 1),
        sop_class_uid=ENCAPSULATED_PDF_STORAGE,
        instance_number=1,
        modality="DOC",
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=TITLE,
        content_date=now.date(),
        content_time=now.time(),
        **patient_study_arguments(source),  # type: ignore[arg-type]
    )
    instance.ConversionType = "WSD"  # SC Equipment: made on a workstation
    instance.BurnedInAnnotation = "NO"
    instance.AcquisitionDateTime = ""
    instance.DocumentTitle = TITLE
    instance.ConceptNameCodeSequence = []
    instance.MIMETypeOfEncapsulatedDocument = "application/pdf"
    instance.EncapsulatedDocument = document + (b"\0" if len(document) % 2 else b"")  # OB values have even length
    instance.EncapsulatedDocumentLength = len(document)
    return instance
