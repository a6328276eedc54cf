"""The steps of ``medxai demo`` (:mod:`medxai.demo`), each a thin call into the library that does the work.

Rows are ``labels.csv`` rows (``case_id,image,mask,label``, paths relative to the cohort folder ``data/``).
"""
from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from medxai.errors import ConfigError

if TYPE_CHECKING:
    from medxai.models.predict import Prediction

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. The defaults fit in about five minutes on a 2-core CPU; :meth:`quick` in seconds.

    Phantoms are ``size``^3 at 1 mm; the model sees them resized to ``model_size``^3 (its preprocessing), and
    every heatmap is mapped back onto each phantom's own grid."""

    cases: int = 160
    size: int = 48
    model_size: int = 48
    arch: str = "small"
    seed: int = 0
    epochs: int = 30
    lr: float = 2e-3
    test_fraction: float = 0.2
    explain_cases: int = 3
    methods: tuple[str, ...] = ("smoothgrad", "integrated_gradients", "gradcam", "occlusion")
    segment_method: str = "smoothgrad"
    sweep_cases: int = 4  # training lesion cases the segmentation threshold is chosen on
    radiomics_cases: int = 3
    expansions_mm: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
    score_light: bool = False

    @classmethod
    def quick(cls, *, seed: int = 0, cases: int | None = None) -> "DemoSettings":
        """Tiny sizes for a smoke run: every step and every output, in seconds rather than minutes."""
        return cls(cases=cases or 12, size=24, model_size=24, arch="tiny", seed=seed, epochs=1, explain_cases=1,
                   methods=("smoothgrad", "gradcam"), radiomics_cases=1, expansions_mm=(0.0, 2.0, 4.0), score_light=True,
                   sweep_cases=2)

    def __post_init__(self) -> None:
        if self.cases < 8:
            raise ConfigError(f"the demo needs at least 8 cases (train, validation and held-out), got {self.cases}")
        if not 0 < self.test_fraction < 0.5:
            raise ConfigError(f"test fraction must be in (0, 0.5), got {self.test_fraction}")


def _data(row: Mapping[str, str], key: str, data_dir: Path) -> Path:
    return data_dir / row[key]


def method_options(settings: DemoSettings) -> dict[str, dict[str, Any]]:
    """Per-method options of the demo (lighter for ``--quick``); explain and score use the same ones."""
    options: dict[str, dict[str, Any]] = {"integrated_gradients": {"n_steps": 16, "max_steps": 64}}
    if settings.score_light:
        options.update({"smoothgrad": {"n_samples": 4}, "integrated_gradients": {"n_steps": 4, "max_steps": 8}})
    return {name: value for name, value in options.items() if name in settings.methods}


def train(train_csv: Path, model_dir: Path, *, settings: DemoSettings, progress: ProgressCallback | None) -> dict[str, Any]:
    """A small 3D CNN on the training cases (validation split inside); its validation figures."""
    from medxai.models.train import train_model

    summary = train_model(train_csv, model_dir, arch=settings.arch, epochs=settings.epochs, lr=settings.lr, seed=settings.seed,
                          spatial_size=settings.model_size, device="cpu", patience=settings.epochs, progress=progress)
    keys = ("val_auc", "val_f1_macro", "val_accuracy", "val_n", "best_epoch", "epochs_run", "n_train", "n_val")
    return {"model": settings.arch, **{key: summary[key] for key in keys}}


def predict_held_out(model_dir: Path, rows: Sequence[Mapping[str, str]], out_csv: Path, *,
                     progress: ProgressCallback | None) -> tuple[list["Prediction"], dict[str, Any]]:
    """Predict the held-out cases into ``preds.csv`` and measure AUC/F1/accuracy on them."""
    from medxai.models.evaluation import classification_metrics
    from medxai.models.model_dir import load_model
    from medxai.models.predict import predict, write_predictions

    model = load_model(model_dir, device="cpu")
    data_dir = out_csv.parent / "data"
    predictions = predict([model], [_data(row, "image", data_dir) for row in rows], progress=progress)
    write_predictions(predictions, model.classes, out_csv)
    probabilities = np.array([[p.probabilities[name] for name in model.classes] for p in predictions])
    targets = [model.classes.index(row["label"]) for row in rows]
    scores = classification_metrics(probabilities, targets, classes=model.classes)
    return predictions, {"test_auc": scores["auc"], "test_f1_macro": scores["f1_macro"],
                         "test_accuracy": scores["accuracy"], "test_n": scores["n"]}


def explain_cases(model_dir: Path, rows: Sequence[Mapping[str, str]], out: Path, *, settings: DemoSettings,
                  progress: ProgressCallback | None) -> tuple[dict[str, str], dict[str, Any]]:
    """Heatmaps of every demo method for each case: ``out/<case_id>/<method>.nii.gz`` + ``explanations.json``.
    Returns the methods that failed (``case_id/method -> reason``; none is expected) and each case's
    explanation (``case_id -> CaseExplanation``), which the score step scores instead of computing it again."""
    from medxai.attribution.engine import explain_case
    from medxai.attribution.writer import write_case
    from medxai.io.naming import input_label
    from medxai.models.model_dir import load_model

    model = load_model(model_dir, device="cpu")
    data_dir = out.parent / "data"
    failed: dict[str, str] = {}
    explanations: dict[str, Any] = {}
    for number, row in enumerate(rows, start=1):
        image = _data(row, "image", data_dir)
        explained = explain_case(model, image, methods=list(settings.methods),
                                 target="predicted", seed=settings.seed, method_options=method_options(settings),
                                 case_id=row["case_id"])
        write_case(explained, out, source=input_label([image]))
        failed.update({f"{row['case_id']}/{name}": reason for name, reason in explained.failed.items()})
        explanations[row["case_id"]] = explained
        if progress is not None:
            progress("Explaining cases", number, len(rows))
    return failed, explanations


def score_cases(model_dir: Path, rows: Sequence[Mapping[str, str]], out: Path, explanations: Mapping[str, Any], *,
                settings: DemoSettings, progress: ProgressCallback | None) -> list[dict[str, str]]:
    """Faithfulness, robustness, sanity and localisation (against the phantom lesion mask) of the heatmaps in
    ``explanations`` (the explain step's) per case x method: ``out/<case_id>/scores.csv`` and
    ``<demo>/scores.csv``; returns the rows as written."""
    from medxai.io.readers import read_mask, read_volume
    from medxai.metrics.model_grid import ScoreSettings
    from medxai.metrics.scoring import score_columns, score_explained, write_scores_csv
    from medxai.models.model_dir import load_model

    model = load_model(model_dir, device="cpu")
    data_dir = out.parent / "data"
    light = dict(n_infidelity=2, n_sensitivity=1, sanity_steps=1, deletion_steps=4) if settings.score_light else \
        dict(n_infidelity=8, n_sensitivity=2, sanity_steps=2, deletion_steps=8)
    score_settings = ScoreSettings(**light)  # type: ignore[arg-type]
    columns = score_columns(score_settings, with_mask=True)
    rows_out: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        image = read_volume(_data(row, "image", data_dir))
        scored = score_explained(model, [image], explanations[row["case_id"]],
                                 mask=read_mask(_data(row, "mask", data_dir), image), seed=settings.seed,
                                 settings=score_settings, method_options=method_options(settings))
        write_scores_csv(scored, out / row["case_id"] / "scores.csv", columns=columns)
        rows_out += scored
        if progress is not None:
            progress("Scoring explanations", number, len(rows))
    combined = write_scores_csv(rows_out, out.parent / "scores.csv", columns=columns)
    with combined.open(newline="", encoding="utf-8") as handle:
        return [dict(r) for r in csv.DictReader(handle)]


# Candidate thresholds for the demo's post-hoc maps: the paper's multi-Otsu offsets assume a GP model's own map
# and keep the whole volume on an absolute-gradient map (its top Otsu class lies below the offset); the
# demo's phantom lesions cover 0.1-1 % of the volume, so the top percentiles are candidates too.
SWEEP_GRID = "multiotsu-offset:0.1,multiotsu-offset:0.2,multiotsu-offset:0.3,percentile:98,percentile:99,percentile:99.5,percentile:99.8"


def segment_cases(model_dir: Path, rows: Sequence[Mapping[str, str]], out: Path, *, settings: DemoSettings,
                  progress: ProgressCallback | None, validation: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    """Weakly-supervised masks: the classifier's post-hoc heatmap of the predicted class, thresholded on each
    scan's grid; Dice against the phantom masks. The threshold is chosen by median Dice on ``validation`` rows
    with masks (training cases, never the explained ones; ``out/threshold_sweep``), else Chatterjee et al.'s
    multi-Otsu offset rule. A failed segmentation (``status`` failed in its segmentation.json) is listed."""
    from medxai.segmentation.segment import PAPER_SWEEP, SegmentInput, SegmentSettings, segment_scans
    from medxai.segmentation.threshold import parse_threshold, parse_threshold_list

    data_dir = out.parent / "data"

    def inputs(chosen: Sequence[Mapping[str, str]]) -> list[SegmentInput]:
        return [SegmentInput(row["case_id"], (_data(row, "image", data_dir),), _data(row, "mask", data_dir), row["label"])
                for row in chosen]

    segment = SegmentSettings(method=settings.segment_method, seed=settings.seed)
    chosen_on = "the multi-Otsu offset rule (no validation cases)"
    sweep_rows = sorted((r for r in validation if r["mask"]), key=lambda r: r["case_id"])[: settings.sweep_cases]
    if sweep_rows:
        grid = parse_threshold_list(SWEEP_GRID, paper=PAPER_SWEEP)
        swept = segment_scans(model_dir, inputs(sweep_rows), out / "threshold_sweep", settings=segment, sweep=grid)
        segment = replace(segment, rule=parse_threshold(swept["threshold"]))
        chosen_on = f"chosen by median Dice on {len(sweep_rows)} training cases"
    summary = segment_scans(model_dir, inputs(rows), out, settings=segment, progress=progress)
    return {"kind": f"post-hoc {settings.segment_method} heatmap of the classifier, thresholded ({segment.rule}, "
                    f"{chosen_on})",
            "median_dice": summary.get("median_dice"), "failed_cases": summary["failed"],
            "failed_segmentations": summary["failed_segmentations"]}


def radiomics_cases(rows: Sequence[Mapping[str, str]], out: Path, *, settings: DemoSettings,
                    progress: ProgressCallback | None) -> None:
    """PyRadiomics features of each lesion and its peritumoral shells/expansions: ``out/<case_id>/features.csv``."""
    from medxai.radiomics.batch import run_extraction
    from medxai.radiomics.cases import CaseSpec, ExtractionOptions

    data_dir = out.parent / "data"
    options = ExtractionOptions(params="mr", distances_mm=tuple(settings.expansions_mm), seed=settings.seed)
    work = out / ".parts"
    for number, row in enumerate(rows, start=1):
        case = CaseSpec(row["case_id"], _data(row, "image", data_dir), mask=_data(row, "mask", data_dir))
        run_extraction([case], out / row["case_id"] / "features.csv", options=options, work_dir=work)
        if progress is not None:
            progress("Radiomics", number, len(rows))
    shutil.rmtree(work, ignore_errors=True)


def write_reports(out: Path, model_dir: Path, chosen: Sequence[Mapping[str, str]], test_rows: Sequence[Mapping[str, str]],
                  predictions: Sequence["Prediction"], score_rows: Sequence[Mapping[str, str]], *,
                  settings: DemoSettings, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """A PDF per explained case (``reports/<case_id>.pdf``) and the one-page summary (``summary.pdf``)."""
    from medxai.report.cohort import Cohort, CohortCase, model_line, write_cohort_summary
    from medxai.report.pdf import report_case
    from medxai.report.provenance import read_model_summary

    data_dir = out / "data"
    written: dict[str, Path] = {}
    for row in chosen:
        case_id = row["case_id"]
        folders = [out / name / case_id for name in ("explanations", "segmentation", "radiomics")]
        pdf = out / "reports" / f"{case_id}.pdf"
        report_case([f for f in folders if f.is_dir()], pdf, scan=_data(row, "image", data_dir),
                    mask=_data(row, "mask", data_dir), model_dir=model_dir)
        written[f"report {case_id}"] = pdf
    labels = {row["case_id"]: row["label"] for row in test_rows}
    failed_segmentations = dict(metrics["segmentation"].get("failed_segmentations") or [])
    explained = {row["case_id"] for row in chosen}

    def segmentation(case_id: str) -> str:
        if case_id not in explained:
            return ""
        return f"failed: {failed_segmentations[case_id]}" if case_id in failed_segmentations else "ok"

    cases = [CohortCase(p.case_id, "done", prediction=p.prediction, probability=p.probabilities[p.prediction],
                        label=labels.get(p.case_id), segmentation=segmentation(p.case_id)) for p in predictions]
    notes = [
        f"Model: {metrics['model']} 3D CNN trained on {metrics['n_train']} phantoms, validation AUC "
        f"{metrics['val_auc']:.2f} ({metrics['n_val']} cases); held-out AUC {metrics['test_auc']:.2f} "
        f"({metrics['test_n']} cases). Explained and scored: {', '.join(r['case_id'] for r in chosen)}.",
        f"Weakly-supervised masks: {metrics['segmentation']['kind']}. Seed {settings.seed}.",
    ]
    failed = metrics["segmentation"].get("failed_segmentations") or []
    if failed:
        notes.append(f"The weakly-supervised segmentation FAILED in {len(failed)} of {len(chosen)} explained cases "
                     f"({failed[0][0]}: {failed[0][1]}): no lesion volume is reported for them.")
    model = model_line(metrics["model"], read_model_summary(model_dir).sha256)
    summary = write_cohort_summary(Cohort(title=f"medxai demo: {len(cases)} held-out phantoms", cases=cases,
                                          scores=score_rows, notes=notes, model=model), out / "summary.pdf")
    written["cohort summary"] = summary
    return written
