"""Gather what earlier commands wrote about one case into :class:`CaseResults` (reads files, computes nothing).

Sources, all optional except the heatmaps' scan: ``explanations.json`` + ``<method>.nii.gz`` (explain),
``scores.csv`` (score, or a pipeline case folder), ``segmentation.json`` + ``mask.nii.gz`` (segment),
``features.csv`` (radiomics), ``prediction.json``/``scan.json`` (pipeline), a radiomics study folder
(``auc.csv`` + ``auc_vs_distance.png``), and the model folder's ``medxai-model.json``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from medxai.errors import InvalidInputError, UsageError
from medxai.io.data_files import read_data_file
from medxai.io.naming import INPUT_RECORD, parse_input_label
from medxai.io.readers import read_mask, read_volume
from medxai.report.provenance import MODEL_JSON, ModelSummary, read_model_summary, scan_metadata
from medxai.volume import Volume

EXPLANATIONS = "explanations.json"
SEGMENTATION = "segmentation.json"
STUDY_FILES = ("auc.csv", "auc_vs_distance.png")


@dataclass(frozen=True)
class MethodResult:
    """One attribution method's heatmap on the scan's grid, what it means, and its scores row."""

    name: str
    heatmap: Volume
    sign: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    scores: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Segmentation:
    """The weakly-supervised mask of the case and its record (``segmentation.json``)."""

    mask: Volume
    record: Mapping[str, Any]

    @property
    def volume_ml(self) -> float | None:
        value = self.record.get("mask", {}).get("volume_ml")
        return float(value) if value is not None else None


@dataclass(frozen=True)
class Radiomics:
    """Per-case feature rows (lesion and peritumoral regions) and, when given, a cohort study."""

    rows: Sequence[Mapping[str, str]] = ()
    study_auc: Sequence[Mapping[str, str]] = ()
    study_plot: bytes | None = None


@dataclass(frozen=True)
class CaseResults:
    """Everything a case report shows. ``identifiers`` is empty unless they were asked for."""

    case_id: str
    scan: Volume
    methods: Sequence[MethodResult]
    mask: Volume | None = None
    prediction: str | None = None
    probabilities: Mapping[str, float] = field(default_factory=dict)
    target: str | None = None
    model: ModelSummary | None = None
    segmentation: Segmentation | None = None
    radiomics: Radiomics | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    identifiers: Mapping[str, str] = field(default_factory=dict)
    input_name: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How the report names the case: by its input (:func:`input_name`), else by its case id."""
        return self.input_name or self.case_id


def _json(path: Path) -> dict[str, Any]:
    payload = read_data_file(path, what="JSON record")
    if not isinstance(payload, dict):
        raise InvalidInputError("expected a JSON object", path=path)
    return payload


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidInputError(f"unreadable CSV ({error})", path=path) from None


def is_study_dir(folder: Path) -> bool:
    """A radiomics study output folder (cohort level, attached to every case)."""
    return all((folder / name).is_file() for name in STUDY_FILES)


def _case_ids(folder: Path) -> set[str]:
    ids = set()
    for name in (EXPLANATIONS, SEGMENTATION, "prediction.json", "scan.json"):
        if (folder / name).is_file():
            value = _json(folder / name).get("case_id")
            if isinstance(value, str) and value:
                ids.add(value)
    return ids or {folder.name}


def _methods_record(explanations: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``methods`` of explanations.json: method name -> its record."""
    methods = explanations.get("methods") or {}
    if not isinstance(methods, dict):
        raise InvalidInputError("explanations.json: 'methods' is not a mapping of method names to records")
    return {str(name): dict(record) for name, record in methods.items() if isinstance(record, dict)}


def _heatmap(folder: Path, name: str, record: Mapping[str, Any], scan: Volume) -> Volume:
    path = folder / str(record.get("file") or f"{name}.nii.gz")
    if not path.is_file():
        raise InvalidInputError(f"heatmap of method {name} is missing", path=path)
    heatmap = read_volume(path)
    if not heatmap.same_grid(scan):
        raise InvalidInputError(f"heatmap grid (shape {heatmap.shape}, orientation {heatmap.orientation}) is not the "
                                f"scan's (shape {scan.shape}, orientation {scan.orientation})", path=path)
    return heatmap


def _held_ids(rows: Sequence[Mapping[str, str]]) -> str:
    ids = sorted({str(r.get("case_id") or "") for r in rows} - {""})
    if not ids:
        return "no rows" if not rows else "rows without a case id"
    shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return f"case id{'s' if len(ids) > 1 else ''} {shown}"


def _scores(folders: Sequence[Path], scores_csv: Path | None, case_id: str,
            recorded: str | None) -> tuple[dict[str, dict[str, str]], list[str]]:
    """This case's score rows (by case id, or by the recorded ``input``) and a warning when the given
    ``scores_csv`` holds none of them."""
    def ours(row: Mapping[str, str]) -> bool:
        return row.get("case_id", case_id) == case_id or bool(recorded and row.get("input") == recorded)

    rows: list[dict[str, str]] = []
    warnings: list[str] = []
    for path in [*(f / "scores.csv" for f in folders), *([scores_csv] if scores_csv else [])]:
        if path.is_file():
            found = read_csv_rows(path)
            mine = [r for r in found if ours(r)]
            if path == scores_csv and not mine:
                warnings.append(f"{path}: no scores for case {case_id} (the file holds {_held_ids(found)}): its "
                                "heatmaps are reported as unverified")
            rows += mine
        elif path == scores_csv:
            raise InvalidInputError("no such scores file", path=path)
    return {row["method"]: row for row in rows if row.get("method")}, warnings


def _segmentation(folders: Sequence[Path], scan: Volume) -> Segmentation | None:
    for folder in folders:
        if (folder / SEGMENTATION).is_file() and (folder / "mask.nii.gz").is_file():
            return Segmentation(mask=read_mask_or_empty(folder / "mask.nii.gz", scan), record=_json(folder / SEGMENTATION))
    return None


def read_mask_or_empty(path: Path, scan: Volume) -> Volume:
    """A weakly-supervised mask may be empty (negative prediction); it must still lie on the scan's grid."""
    mask = read_volume(path)
    if not mask.same_grid(scan):
        raise InvalidInputError("mask grid does not match the scan's grid", path=path)
    return scan.with_data((mask.data > 0).astype("uint8"))


def _radiomics(folders: Sequence[Path], studies: Sequence[Path]) -> Radiomics | None:
    rows = [r for f in folders if (f / "features.csv").is_file() for r in read_csv_rows(f / "features.csv")]
    study = studies[0] if studies else None
    if not rows and study is None:
        return None
    return Radiomics(rows=rows, study_auc=read_csv_rows(study / "auc.csv") if study else (),
                     study_plot=(study / "auc_vs_distance.png").read_bytes() if study else None)


def explanation_facts(explanations: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance of ``explanations.json`` (engine record) flattened for the report: hashes, versions, date."""
    inputs = explanations.get("inputs") or []
    model = explanations.get("model") or {}
    return {
        "input_sha256": "; ".join(str(item.get("sha256")) for item in inputs if isinstance(item, dict)) or None,
        "model_sha256": model.get("sha256"), "model_arch": model.get("arch"),
        "versions": explanations.get("versions") or {}, "date": explanations.get("date"),
        "seed": explanations.get("seed"), "device": explanations.get("device"),
        "failed_methods": explanations.get("failed_methods") or {},
    }


def _prediction(explanations: Mapping[str, Any], folders: Sequence[Path]) -> tuple[str | None, dict[str, float]]:
    """The predicted class and probabilities: explanations.json, else a pipeline's prediction.json."""
    recorded = explanations.get("prediction")
    if isinstance(recorded, dict) and isinstance(recorded.get("probabilities"), dict):
        return recorded.get("class"), {str(k): float(v) for k, v in recorded["probabilities"].items()}
    for folder in folders:
        if (folder / "prediction.json").is_file():
            record = _json(folder / "prediction.json")
            if isinstance(record.get("probabilities"), dict):
                return record.get("prediction"), {str(k): float(v) for k, v in record["probabilities"].items()}
    return None, {}


def _target(explanations: Mapping[str, Any], prediction: str | None) -> str | None:
    """The class the heatmaps explain, in words."""
    target = explanations.get("target")
    requested = target.get("requested") if isinstance(target, dict) else target
    if requested == "predicted":
        return f"{prediction} (the predicted class)" if prediction else "the predicted class"
    return str(requested) if requested else None


def load_case(
    case_dirs: Sequence[str | Path], *, scan: str | Path | Volume | None = None, mask: str | Path | Volume | None = None,
    model_dir: str | Path | None = None, scores_csv: str | Path | None = None, methods: Sequence[str] | None = None,
    include_identifiers: bool = False,
) -> CaseResults:
    """Read one case's results from ``case_dirs`` (all about the same case; a radiomics study folder may be
    among them). ``scan``: the explained scan; default: the input ``explanations.json`` (else ``input.json``)
    records, its first channel."""
    folders = [Path(d) for d in case_dirs]
    for folder in folders:
        if not folder.is_dir():
            raise InvalidInputError("no such case folder", path=folder)
    studies = [f for f in folders if is_study_dir(f)]
    folders = [f for f in folders if f not in studies]
    if not folders:
        raise UsageError("give at least one case folder (explain, score, segment or pipeline output)")
    ids = set().union(*(_case_ids(f) for f in folders))
    if len(ids) > 1:
        raise UsageError(f"the folders hold different cases ({', '.join(sorted(ids))}): one report is for one case")
    case_id = ids.pop()
    explained = [f for f in folders if (f / EXPLANATIONS).is_file()]
    explanations = _json(explained[0] / EXPLANATIONS) if explained else {}
    volume, source = _scan(scan, folders, explanations)
    _check_input(volume, source, explanations)
    reference = mask if isinstance(mask, Volume) or mask is None else read_mask(mask, volume)
    records = {name: (folder, record) for folder in explained for name, record in _methods_record(_json(folder / EXPLANATIONS)).items()}
    unknown = sorted(set(methods or ()) - set(records))
    if unknown:
        raise InvalidInputError(f"no heatmap for method(s) {', '.join(unknown)} (found: {', '.join(records) or 'none'})",
                                path=folders[0])
    recorded = _recorded_label(folders, explanations)
    scores, warnings = _scores(folders, Path(scores_csv) if scores_csv else None, case_id, recorded)
    results = [
        MethodResult(name=name, heatmap=_heatmap(folder, name, record, volume), sign=str(record.get("sign", "signed")),
                     params=dict(record.get("parameters", {})), seconds=record.get("wall_s"), scores=scores.get(name, {}))
        for name, (folder, record) in records.items() if methods is None or name in methods
    ]
    prediction, probabilities = _prediction(explanations, folders)
    model = _model(model_dir)
    provenance = explanation_facts(explanations)
    expected = provenance["model_sha256"]
    if model is not None and expected and model.sha256 != expected:
        raise InvalidInputError(f"model weights (sha256 {model.sha256[:12]}...) are not those that produced the "
                                f"explanations ({str(expected)[:12]}...)", path=model.path)
    path = source if source is not None else _first_path(recorded)  # a scan passed already read: the recorded one
    metadata, identifiers = scan_metadata(volume, path, include_identifiers=include_identifiers)
    return CaseResults(
        case_id=case_id, scan=volume, methods=results, mask=reference, prediction=prediction,
        probabilities=probabilities, target=_target(explanations, prediction), model=model,
        segmentation=_segmentation(folders, volume), radiomics=_radiomics(folders, studies),
        provenance=provenance, metadata=metadata, identifiers=identifiers,
        input_name=input_name(path, volume),
        warnings=tuple(warnings),
    )


def _first_path(recorded: str | None) -> Path | None:
    return parse_input_label(recorded)[0][0] if recorded else None


def input_name(source: Path | None, volume: Volume) -> str | None:
    """The case as its input names it: ``folder/file`` for a scan file, the series description and folder
    for a DICOM series (``series "axial" in study/``); None when the scan came without a path."""
    if source is None:
        return None
    where = f"{source.parent.name}/{source.name}" if source.parent.name else source.name
    if source.is_dir():
        where += "/"
    description = str(volume.metadata.get("series_description") or "").strip()
    return f'series "{description}" in {where}' if description else where


def _model(model_dir: str | Path | None) -> ModelSummary | None:
    """The model folder's summary; TorchScript files and MONAI bundles record no validation metrics (None)."""
    if model_dir is None:
        return None
    path = Path(model_dir)
    if not path.exists():
        raise InvalidInputError("no such model folder", path=path)
    return read_model_summary(path) if (path / MODEL_JSON).is_file() else None


def _check_input(volume: Volume, source: Path | None, explanations: Mapping[str, Any]) -> None:
    """Refuse a scan other than the one explained: its hash (of the file, or of the voxels and affine when the
    scan was explained already read, as a pipeline does) differs from the recorded one."""
    from medxai.attribution.provenance import HASHED_VOXELS, input_sha256, volume_sha256

    inputs = explanations.get("inputs") or []
    first = inputs[0] if inputs and isinstance(inputs[0], dict) else {}
    recorded = first.get("sha256")
    if not recorded:
        return
    if first.get("hashed") == HASHED_VOXELS:
        actual = volume_sha256(volume)
    elif source is not None:
        actual = input_sha256(source)
    else:
        return
    if actual != recorded:
        raise InvalidInputError(f"is not the scan these heatmaps explain (sha256 {actual[:12]}..., explanations.json "
                                f"records {str(recorded)[:12]}...)", path=source)


def _recorded_label(folders: Sequence[Path], explanations: Mapping[str, Any]) -> str | None:
    """The input recorded by explain: ``input`` of explanations.json, else of a case folder's input.json."""
    recorded = explanations.get("input")
    if isinstance(recorded, str) and recorded:
        return recorded
    for folder in folders:
        if (folder / INPUT_RECORD).is_file():
            recorded = _json(folder / INPUT_RECORD).get("input")
            if isinstance(recorded, str) and recorded:
                return recorded
    return None


def _recorded_input(folders: Sequence[Path], explanations: Mapping[str, Any]) -> str:
    """:func:`_recorded_label`, which must exist when no scan is given."""
    recorded = _recorded_label(folders, explanations)
    if recorded:
        return recorded
    raise InvalidInputError(f"records no explained scan (no 'input' in {EXPLANATIONS} or {INPUT_RECORD}): "
                            "pass --scan SCAN", path=folders[0])


def _recorded_scan(folders: Sequence[Path], explanations: Mapping[str, Any]) -> tuple[Volume, Path]:
    """Read the first channel of the recorded input (one series of a DICOM folder when a series UID follows)."""
    recorded = _recorded_input(folders, explanations)
    paths, series_uid = parse_input_label(recorded)
    first = paths[0]
    if not first.exists():
        raise InvalidInputError(f"the scan {EXPLANATIONS} records no longer exists (moved or deleted?): "
                                "pass --scan SCAN", path=first)
    return read_volume(first, series_uid=series_uid), first


def _scan(scan: str | Path | Volume | None, folders: Sequence[Path],
          explanations: Mapping[str, Any]) -> tuple[Volume, Path | None]:
    if isinstance(scan, Volume):
        return scan, None
    if scan is None:
        return _recorded_scan(folders, explanations)
    return read_volume(scan), Path(scan)
