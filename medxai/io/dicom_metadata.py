"""Acquisition metadata of a DICOM series for sidecars and ``info``: an allow-list, so that no patient
identifier (name, ID, birth date, accession number, institution, dates, physicians) can ever leak."""
from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import DSfloat, IS

# DICOM keywords copied when present. Nothing here identifies a patient, a person, a place or a date.
ACQUISITION_KEYWORDS = (
    "Modality", "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "SeriesDescription", "SeriesNumber",
    "SeriesInstanceUID", "ProtocolName", "BodyPartExamined", "ImageType", "PatientPosition",
    "MagneticFieldStrength", "ImagingFrequency", "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle",
    "EchoTrainLength", "ScanningSequence", "SequenceVariant", "SequenceName", "PulseSequenceName", "MRAcquisitionType",
    "SliceThickness", "SpacingBetweenSlices", "KVP", "XRayTubeCurrent", "ExposureTime", "ConvolutionKernel",
    "ReconstructionDiameter", "Units", "DecayCorrection", "CorrectedImage", "SeriesType",
    "PhotometricInterpretation", "BitsStored", "PixelRepresentation",
)
# Where enhanced multi-frame objects keep some of them instead (inside functional-group macros).
_ENHANCED_ALIASES = {"EchoTime": ("EffectiveEchoTime",)}


def _json_value(value: Any) -> Any:
    if isinstance(value, (MultiValue, list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, (DSfloat, float)):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (bytes, bytearray)) or value is None:
        return None
    return str(value).strip()


def _functional_group_items(dataset: Dataset) -> list[Dataset]:
    """The macro items of the shared and first per-frame functional groups (enhanced objects)."""
    items: list[Dataset] = []
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = dataset.get(keyword)
        if not groups:
            continue
        for element in groups[0]:
            if element.VR == "SQ" and element.value:
                items.append(element.value[0])
    return items


def _lookup(dataset: Dataset, keyword: str, macro_items: list[Dataset]) -> Any:
    if keyword in dataset and dataset[keyword].value not in (None, ""):
        return dataset[keyword].value
    for alias in (keyword, *_ENHANCED_ALIASES.get(keyword, ())):
        for item in macro_items:
            if alias in item and item[alias].value not in (None, ""):
                return item[alias].value
    return None


def acquisition_metadata(dataset: Dataset) -> dict[str, Any]:
    """Allow-listed acquisition parameters of ``dataset`` plus its transfer syntax, JSON-ready."""
    macro_items = _functional_group_items(dataset)
    result: dict[str, Any] = {}
    for keyword in ACQUISITION_KEYWORDS:
        value = _json_value(_lookup(dataset, keyword, macro_items))
        if value not in (None, "", []):
            result[keyword] = value
    # Anonymisation often blanks these UIDs (pydicom then holds a plain '' instead of a UID): omit them.
    syntax = str(getattr(dataset.get("file_meta", Dataset()), "TransferSyntaxUID", "") or "")
    if syntax:
        result["TransferSyntaxUID"] = syntax
        result["TransferSyntax"] = UID(syntax).name
    sop_class = str(dataset.get("SOPClassUID", "") or "")
    if sop_class:
        result["SOPClass"] = UID(sop_class).name
    return result
