"""What the report header says about the model and the scan, from files only (nothing is recomputed).

The model: ``medxai-model.json`` (architecture, weights hash, validation metrics, calibration if any).
The scan: modality and study date only when a sidecar or the reader's metadata holds them. Patient name and
ID are read from the scan's DICOM header only when the caller asks for identifiers, and from nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from medxai.errors import InvalidInputError
from medxai.io.data_files import read_data_file
from medxai.volume import Volume

MODEL_JSON = "medxai-model.json"
_SIDECAR_MODALITY = ("modality", "Modality")
_SIDECAR_DATE = ("StudyDate", "study_date", "AcquisitionDateTime", "AcquisitionDate", "SeriesDate")
# what the grey window is chosen from (medxai.report.windows): key in the metadata -> sidecar / DICOM keywords
_DESCRIPTIONS = {"series_description": ("SeriesDescription", "series_description"),
                 "body_part": ("BodyPartExamined", "body_part"), "protocol": ("ProtocolName", "protocol_name")}


@dataclass(frozen=True)
class ModelSummary:
    """The model as the report names it: architecture, weights hash, validation metrics, calibration."""

    path: Path
    arch: str
    sha256: str
    classes: tuple[str, ...]
    version: str | None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    calibration: Mapping[str, Any] | None = None

    def probability_kind(self) -> str:
        """How to read the probability: calibrated (and how), or an uncalibrated softmax."""
        if self.calibration:
            method = self.calibration.get("method", "calibrated")
            return f"calibrated ({method})"
        return "uncalibrated softmax"

    def performance(self) -> str:
        """A line on validation performance (AUC, F1, accuracy, number of cases)."""
        parts = []
        for key, label in (("val_auc", "AUC"), ("val_f1_macro", "macro F1"), ("val_accuracy", "accuracy")):
            value = self.metrics.get(key)
            if isinstance(value, (int, float)):
                parts.append(f"{label} {value:.2f}")
        count = self.metrics.get("val_n")
        if not parts:
            return "no validation metrics recorded in the model folder"
        return ", ".join(parts) + (f" on {count} held-out validation cases" if count else "")


def read_model_summary(folder: Path) -> ModelSummary:
    """The summary of a medxai model folder (reads ``medxai-model.json``; the weights are not loaded)."""
    path = folder / MODEL_JSON
    info = read_data_file(path, what="model description")
    if not isinstance(info, dict) or "arch" not in info or "weights" not in info:
        raise InvalidInputError("not a medxai model description (no arch/weights)", path=path)
    return ModelSummary(
        path=folder, arch=str(info["arch"]), sha256=str(info["weights"].get("sha256", "")),
        classes=tuple(str(c) for c in info.get("classes", ())), version=info.get("versions", {}).get("medxai"),
        metrics=dict(info.get("metrics", {})), calibration=info.get("calibration"),
    )


def _sidecar(source: Path | None) -> dict[str, Any]:
    """The JSON sidecar next to a scan file (``scan.nii.gz`` -> ``scan.json``), if any."""
    if source is None or source.is_dir():
        return {}
    name = source.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"):
        if name.lower().endswith(suffix):
            candidate = source.with_name(name[: -len(suffix)] + ".json")
            if candidate.is_file():
                payload = read_data_file(candidate, what="sidecar")
                return payload if isinstance(payload, dict) else {}
    return {}


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, "", "unknown"):
            return str(value)
    return None


def dicom_identifiers(source: Path, *, series_uid: str | None = None) -> dict[str, str]:
    """Patient name, patient ID and study date from the first DICOM header of ``source`` (file or folder)
    belonging to ``series_uid`` when given."""
    from medxai.io.dicom_series import read_header

    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        header = read_header(path)
        if header is None or (series_uid and str(header.get("SeriesInstanceUID", "")) != series_uid):
            continue
        found = {"patient_name": str(header.get("PatientName", "") or ""), "patient_id": str(header.get("PatientID", "") or ""),
                 "study_date": str(header.get("StudyDate", "") or "")}
        return {key: value for key, value in found.items() if value}
    return {}


def scan_metadata(volume: Volume, source: Path | None, *, include_identifiers: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(metadata, identifiers): modality, study date, series description, body part and protocol name from a
    sidecar or the reader's metadata (allow-listed acquisition facts, no identifiers); patient
    name/ID (and the DICOM study date) only with ``include_identifiers`` and a DICOM scan."""
    sidecar = _sidecar(source)
    acquisition = volume.metadata.get("acquisition", {}) or {}
    metadata: dict[str, str] = {}
    modality = _first(sidecar, _SIDECAR_MODALITY) or _first(dict(volume.metadata), ("modality",)) \
        or _first(dict(acquisition), ("Modality",))
    if modality:
        metadata["modality"] = modality
    date = _first(sidecar, _SIDECAR_DATE)
    if date:
        metadata["study_date"] = date
    converted = sidecar.get("acquisition") if isinstance(sidecar.get("acquisition"), dict) else {}
    for key, names in _DESCRIPTIONS.items():
        found = _first(sidecar, names) or _first(converted, names) \
            or _first(dict(volume.metadata), names) or _first(dict(acquisition), names)
        if found:
            metadata[key] = found
    identifiers: dict[str, str] = {}
    if include_identifiers and source is not None and volume.metadata.get("format") == "dicom":
        identifiers = dicom_identifiers(source, series_uid=volume.metadata.get("series_uid"))
        if "study_date" in identifiers and "study_date" not in metadata:
            metadata["study_date"] = identifiers["study_date"]
        identifiers.pop("study_date", None)
    return metadata, identifiers
