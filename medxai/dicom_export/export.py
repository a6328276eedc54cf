"""``export-dicom``: every DICOM object of one case folder, attached to its source series' study.

All objects are built in memory first (any bad input fails before a file is written), then each is written
atomically: ``seg.dcm`` (masks), ``pm-<method>.dcm`` (heatmaps), ``report-pdf.dcm`` (report.pdf) and
``sr.dcm`` (the TID 1500 measurement report). A NIfTI/NRRD/MHA source with the user's identifiers is first
written as a new image series (``scan-0001.dcm``...; :mod:`medxai.dicom_export.image_series`), which the
objects then reference exactly as they would a DICOM source.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator

from pydicom.dataset import Dataset

from medxai.dicom_export.encapsulated_pdf import build_encapsulated_pdf
from medxai.dicom_export.image_series import NewStudy, image_series
from medxai.dicom_export.parametric_map import FIRST_SERIES_NUMBER, build_parametric_map, read_explanations, read_heatmaps
from medxai.dicom_export.seg import build_seg, read_regions
from medxai.dicom_export.source import SourceSeries, is_volume_file, read_source
from medxai.dicom_export.sr import build_sr, read_rows
from medxai.errors import ConfigError, InvalidInputError
from medxai.io.atomic import atomic_path, output_folder
from medxai.io.dicom_series import quiet_pydicom
from medxai.io.naming import safe_case_id
from medxai.io.readers import read_volume


def _case_id(case_dir: Path, explanations: dict[str, Any] | None) -> str:
    recorded = (explanations or {}).get("case_id")
    if not recorded and (case_dir / "segmentation.json").is_file():
        try:
            recorded = json.loads((case_dir / "segmentation.json").read_text(encoding="utf-8")).get("case_id")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            recorded = None
    return str(recorded or case_dir.name)


def new_study(source_path: str | Path, *, patient_id: str | None = None, patient_name: str | None = None,
              modality: str | None = None, study_uid: str | None = None) -> NewStudy | None:
    """The user's identifiers for a NIfTI/NRRD/MHA source (all but the study UID required); None for a DICOM
    source, which keeps its own patient and study (identifiers given for one are refused)."""
    source_path = Path(source_path)
    options = {"--patient-id": patient_id, "--patient-name": patient_name, "--modality": modality}
    if not is_volume_file(source_path):
        given = [name for name, value in {**options, "--study-uid": study_uid}.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only for a NIfTI/NRRD/MHA --source; a DICOM series keeps its own "
                              "patient and study")
        return None
    missing = [name for name, value in options.items() if value is None]
    if missing:
        raise InvalidInputError(f"not a DICOM series: a NIfTI/NRRD/MHA scan has no patient or study; give {', '.join(missing)}"
                                f"{' (CT or MR)' if modality is None else ''} to write it as a new DICOM series first",
                                path=source_path)
    return NewStudy(patient_id=str(patient_id), patient_name=str(patient_name), modality=str(modality).upper(),
                    study_uid=study_uid)


def build_case_objects(case_dir: str | Path, source_path: str | Path, *, series_uid: str | None = None,
                       study: NewStudy | None = None) -> dict[str, Dataset]:
    """The DICOM objects of one case folder, by output file name (nothing written). With ``study``,
    ``source_path`` is a NIfTI/NRRD/MHA scan: its image series comes first."""
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise InvalidInputError("not a case folder (expected the folder explain/segment/radiomics wrote)", path=case_dir)
    with quiet_pydicom(), _quiet_highdicom():  # warnings about the source's own values (a one-part PatientName...)
        if study is None:
            return _build(case_dir, read_source(source_path, series_uid=series_uid))
        if series_uid is not None:
            raise ConfigError("--series-uid picks a series of a DICOM source, not of a NIfTI/NRRD/MHA scan")
        return _build_from_volume(case_dir, Path(source_path), study)


def _build_from_volume(case_dir: Path, scan: Path, study: NewStudy) -> dict[str, Dataset]:
    """The scan as a new image series, and the case's objects on it: the series goes through a temporary
    folder so that the objects see it exactly as they see a DICOM source (read back, sorted, its grid)."""
    images = {f"scan-{k + 1:04d}.dcm": dataset for k, dataset in enumerate(image_series(read_volume(scan), study, path=scan))}
    with tempfile.TemporaryDirectory(prefix="medxai-dicom-") as folder:
        for name, dataset in images.items():
            dataset.save_as(Path(folder) / name, enforce_file_format=True)
        objects = _build(case_dir, read_source(folder))
    return {**images, **objects}


@contextlib.contextmanager
def _quiet_highdicom() -> Iterator[None]:
    """highdicom logs notes such as "encoding an empty image" at WARNING: not the user's business."""
    logger = logging.getLogger("highdicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _build(case_dir: Path, source: SourceSeries) -> dict[str, Dataset]:
    explanations = read_explanations(case_dir)
    case_id = _case_id(case_dir, explanations)
    regions = read_regions(case_dir, source)
    heatmaps = read_heatmaps(case_dir, explanations, source) if explanations else []
    objects: dict[str, Dataset] = {}
    seg = build_seg(regions, source) if regions else None
    if seg is not None:
        objects["seg.dcm"] = seg
    for offset, heatmap in enumerate(heatmaps):
        objects[f"pm-{safe_case_id(heatmap.method)}.dcm"] = build_parametric_map(heatmap, source, series_number=FIRST_SERIES_NUMBER + offset)
    if (case_dir / "report.pdf").is_file():
        objects["report-pdf.dcm"] = build_encapsulated_pdf(case_dir / "report.pdf", source)
    if not objects:
        raise InvalidInputError("nothing to export: no mask, region mask, heatmap (explanations.json) or report.pdf",
                                path=case_dir)
    scores = read_rows(case_dir / "scores.csv", case_id)
    features = read_rows(case_dir / "features.csv", case_id)
    if regions or scores:
        objects["sr.dcm"] = build_sr(case_id=case_id, source=source, regions=regions, seg=seg, scores=scores,
                                     features=features)
    return objects


def export_case(case_dir: str | Path, source_path: str | Path, out_dir: str | Path, *,
                series_uid: str | None = None, study: NewStudy | None = None) -> list[Path]:
    """Write the DICOM objects of ``case_dir`` into ``out_dir`` (with ``study``, first the NIfTI/NRRD/MHA
    ``source_path`` as a new image series); returns the files written."""
    with output_folder(out_dir) as folder:
        objects = build_case_objects(case_dir, source_path, series_uid=series_uid, study=study)
        written = []
        for name, dataset in objects.items():
            with atomic_path(folder / name) as temporary:
                dataset.save_as(temporary, enforce_file_format=True)
            written.append(folder / name)
    return written
