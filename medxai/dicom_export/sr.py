"""TID 1500 Measurement Report (Comprehensive 3D SR) of a case: segment volumes, radiomics features and the
explanations' scores and verdicts (highdicom).

Each SEG segment gets a volumetric measurement group (TID 1411) referencing it by segment number, with its
tracking UID, its volume and, when ``features.csv`` holds its region and distance, its radiomics features.
Each explained method gets a measurement group (TID 1501) with its ``scores.csv`` metrics and verdict.
Radiomics features and explanation metrics have no standard concept: they are coded in the private scheme
``99MEDXAI`` with PyRadiomics' / medxai's column names as code meanings (:func:`private_code`), unit ``1``
(values as the CSVs hold them).
"""
from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path
from typing import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from medxai.dicom_export.identity import (DEVICE_SERIAL_NUMBER, MANUFACTURER, MODEL_NAME, SOFTWARE_VERSION,
                                          derived_uid, digest)
from medxai.dicom_export.seg import PRIVATE_CODING_SCHEME, PRIVATE_SCHEME, TYPES, Region, segment_uid
from medxai.dicom_export.source import SourceSeries
from medxai.errors import InvalidInputError

SERIES_NUMBER = 991
MILLILITRE = Code("ml", "UCUM", "milliliter")
NO_UNITS = Code("1", "UCUM", "no units")
VERDICT = Code("VERDICT", PRIVATE_SCHEME, "Explanation verdict")
EXPLANATION = Code("EXPLANATION", PRIVATE_SCHEME, "Attribution heatmap")
IDENTITY_COLUMNS = {"case_id", "method", "region", "distance_mm", "verdict", "verdict_reason", "image", "mask"}
PROCEDURES = {"CT": codes.cid100.CTUnspecifiedBodyRegion, "MR": codes.cid100.MRIUnspecifiedBodyRegion,
              "PT": codes.cid100.PETUnspecifiedBodyRegion}


def read_rows(path: Path, case_id: str) -> list[dict[str, str]]:
    """The rows of a case-folder CSV that belong to ``case_id`` (all rows when it has no case_id column)."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [dict(row) for row in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidInputError(f"unreadable CSV ({error})", path=path) from None
    return [row for row in rows if row.get("case_id", case_id) in (case_id, None, "")]


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def private_code(name: str) -> Code:
    """A private concept for a column name: the name itself as code value when it fits the 16 characters of a
    Code Value, else a stable digest of it (a Long Code Value would be valid DICOM, but highdicom 0.28's SR
    parser reads only Code Value); the name is always the code meaning."""
    value = name if len(name) <= 16 else "MX" + hashlib.sha1(name.encode()).hexdigest()[:14].upper()
    return Code(value, PRIVATE_SCHEME, name[:64])


def _measurements(row: Mapping[str, str]) -> list[hd.sr.Measurement]:
    """Every finite numeric column of a row (except identifying columns) as a private-coded measurement."""
    found = []
    for column, text in row.items():
        value = _number(text)
        if column and column not in IDENTITY_COLUMNS and not column.startswith("diagnostics_") and value is not None:
            found.append(hd.sr.Measurement(name=private_code(column), value=value, unit=NO_UNITS))
    return found


def _feature_row(region: Region, features: Sequence[Mapping[str, str]]) -> Mapping[str, str] | None:
    if region.distance_mm is None:
        return None
    for row in features:
        if row.get("region") == region.kind and _number(row.get("distance_mm")) == region.distance_mm:
            return row
    return None


def _segment_group(number: int, region: Region, seg: hd.seg.Segmentation, source: SourceSeries, voxel_ml: float,
                   features: Sequence[Mapping[str, str]]) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    volume = hd.sr.Measurement(name=codes.SCT.Volume, value=float(region.data.sum()) * voxel_ml, unit=MILLILITRE)
    row = _feature_row(region, features)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=segment_uid(source, region), identifier=region.label),
        # Built by hand: ReferencedSegment.from_segmentation (highdicom 0.28) needs per-frame segment numbers, which a
        # one-segment SEG keeps in its shared functional groups, and frames, which an empty segment has none of.
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(source.first.SeriesInstanceUID)),
        finding_type=TYPES[region.kind],
        measurements=[volume, *(_measurements(row) if row else [])],
    )


def _method_group(method: str, row: Mapping[str, str], source: SourceSeries) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    verdict = (row.get("verdict") or "").strip()
    evaluations = [hd.sr.QualitativeEvaluation(VERDICT, Code(verdict[:16], PRIVATE_SCHEME, verdict))] if verdict else []
    label = f"explanation {method}"
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(source.first.SeriesInstanceUID, "method", method),
                                                     identifier=label),
        finding_type=EXPLANATION,
        measurements=_measurements(row) or None,
        qualitative_evaluations=evaluations or None,
    )


def build_sr(*, case_id: str, source: SourceSeries, regions: Sequence[Region], seg: hd.seg.Segmentation | None,
             scores: Sequence[Mapping[str, str]], features: Sequence[Mapping[str, str]]) -> hd.sr.Comprehensive3DSR:
    """The measurement report of a case; ``seg`` holds ``regions`` as segments 1..n in order."""
    voxel_ml = abs(float(np.linalg.det(source.grid.affine[:3, :3]))) / 1000.0
    groups: list = [_segment_group(n, r, seg, source, voxel_ml, features) for n, r in enumerate(regions, start=1)] if seg else []
    groups += [_method_group(row["method"], row, source) for row in scores if row.get("method")]
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("medxai", MODEL_NAME, SOFTWARE_VERSION), name=MODEL_NAME, manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURES.get(str(source.first.get("Modality", "")), codes.cid100.ImagingProcedure),
        imaging_measurements=groups,
        referenced_images=None if groups else list(source.datasets),
    )
    facts = [case_id, seg.SOPInstanceUID if seg is not None else "", *(segment_uid(source, r) for r in regions),
             repr(list(scores)), repr(list(features))]
    content = digest(*(fact.encode() for fact in facts))  # what the report says (its own timestamps left out)
    series_uid = derived_uid(source.first.SeriesInstanceUID, "sr-series", content)
    return hd.sr.Comprehensive3DSR(
        evidence=[*source.datasets, *([seg] if seg is not None else [])],
        content=report,
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=derived_uid(series_uid, "sr", 1),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        series_description="medxai measurements",
        coding_schemes=[PRIVATE_CODING_SCHEME],
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
