"""``medxai demo``: the whole chain on generated phantoms, by library calls only.

Sample cohort (presence task) -> held-out split -> small 3D CNN (validation AUC) -> predictions on the
held-out cases -> heatmaps of several methods for a few held-out lesion cases (NIfTI on each scan's grid)
-> explanation scores against the phantom lesion masks -> weakly-supervised masks (post-hoc heatmaps of the
classifier, thresholded) -> radiomics of the lesions with peritumoral expansions -> a PDF report per
explained case and the one-page cohort summary. Every step is seeded: the same seed gives the same outputs.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medxai import __version__
from medxai.errors import ConfigError
from medxai.demo_steps import DemoSettings
from medxai.io.atomic import write_text_atomic

ProgressCallback = Callable[[str, int, int], None]
MARKER = ".medxai-demo"
STEPS = ("cohort", "training", "prediction", "explanations", "scores", "segmentation", "radiomics", "reports")


@dataclass
class DemoResult:
    """What the demo wrote (label -> path), its headline figures and the seconds each step took."""

    out_dir: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    explained: list[str] = field(default_factory=list)


def _prepare(out: Path) -> None:
    """An empty output folder; a previous demo's folder (marked) is replaced, anything else is refused."""
    if out.exists() and not out.is_dir():
        raise ConfigError("exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError("exists, is not empty and is not a medxai demo folder; choose another -o DIR", path=out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(f"medxai {__version__} demo output; replaced by the next demo run\n", encoding="utf-8")


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


def _write_rows(rows: Sequence[dict[str, str]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def split_cohort(labels_csv: Path, *, test_fraction: float, seed: int) -> tuple[Path, Path]:
    """``train.csv`` (training + validation) and ``test.csv`` (held out) next to ``labels_csv``, stratified
    by label and seeded; both keep the image/mask paths relative to the same folder."""
    rows = _read_rows(labels_csv)
    rng = np.random.default_rng([seed, 8])
    test: set[str] = set()
    for label in sorted({row["label"] for row in rows}):
        members = sorted(row["case_id"] for row in rows if row["label"] == label)
        count = max(1, int(round(test_fraction * len(members))))
        test.update(members[int(i)] for i in rng.permutation(len(members))[:count])
    train_csv, test_csv = labels_csv.with_name("train.csv"), labels_csv.with_name("test.csv")
    _write_rows([r for r in rows if r["case_id"] not in test], train_csv)
    _write_rows([r for r in rows if r["case_id"] in test], test_csv)
    return train_csv, test_csv


def pick_cases(test_rows: Sequence[dict[str, str]], predictions: dict[str, str], *, count: int) -> list[dict[str, str]]:
    """Held-out lesion cases to explain: correctly predicted ones first, then the others, in case-id order."""
    lesions = sorted((r for r in test_rows if r["mask"]), key=lambda r: r["case_id"])
    ordered = [r for r in lesions if predictions.get(r["case_id"]) == r["label"]]
    ordered += [r for r in lesions if r not in ordered]
    return ordered[:count]


def _timed(result: DemoResult, step: str, started: float, progress: ProgressCallback | None) -> float:
    result.seconds[step] = round(time.perf_counter() - started, 2)
    if progress is not None:
        progress("medxai demo", STEPS.index(step) + 1, len(STEPS))
    return time.perf_counter()


def run_demo(out_dir: str | Path, *, settings: DemoSettings, progress: ProgressCallback | None = None) -> DemoResult:
    """Run every step into ``out_dir`` (replacing a previous demo there) and return what was written."""
    from medxai.demo_steps import (
        explain_cases,
        predict_held_out,
        radiomics_cases,
        score_cases,
        segment_cases,
        train,
        write_reports,
    )
    from medxai.synthetic import make_cohort

    out = Path(out_dir)
    _prepare(out)
    result = DemoResult(out_dir=out)
    if progress is not None:
        progress("medxai demo", 0, len(STEPS))
    clock = time.perf_counter()
    labels_csv = make_cohort(out / "data", cases=settings.cases, seed=settings.seed, size=settings.size,
                             task="presence", progress=progress)
    train_csv, test_csv = split_cohort(labels_csv, test_fraction=settings.test_fraction, seed=settings.seed)
    result.outputs.update({"cohort (labels.csv)": labels_csv, "held-out cases": test_csv})
    clock = _timed(result, "cohort", clock, progress)
    model_dir = out / "model"
    result.metrics.update(train(train_csv, model_dir, settings=settings, progress=progress))
    result.outputs["model"] = model_dir
    clock = _timed(result, "training", clock, progress)
    test_rows = _read_rows(test_csv)
    predictions, figures = predict_held_out(model_dir, test_rows, out / "preds.csv", progress=progress)
    result.metrics.update(figures)
    result.outputs["predictions (held-out)"] = out / "preds.csv"
    clock = _timed(result, "prediction", clock, progress)
    chosen = pick_cases(test_rows, {p.case_id: p.prediction for p in predictions}, count=settings.explain_cases)
    result.explained = [row["case_id"] for row in chosen]
    result.metrics["failed_methods"], explanations = explain_cases(model_dir, chosen, out / "explanations",
                                                                   settings=settings, progress=progress)
    result.outputs["heatmaps (NIfTI)"] = out / "explanations"
    clock = _timed(result, "explanations", clock, progress)
    score_rows = score_cases(model_dir, chosen, out / "explanations", explanations, settings=settings, progress=progress)
    del explanations  # scored: the heatmaps are on disk
    result.outputs["explanation scores"] = out / "scores.csv"
    clock = _timed(result, "scores", clock, progress)
    result.metrics["segmentation"] = segment_cases(model_dir, chosen, out / "segmentation", settings=settings,
                                                   progress=progress, validation=_read_rows(train_csv))
    result.outputs["weakly-supervised masks"] = out / "segmentation"
    clock = _timed(result, "segmentation", clock, progress)
    radiomics_cases(chosen[: settings.radiomics_cases], out / "radiomics", settings=settings, progress=progress)
    result.outputs["radiomics features"] = out / "radiomics"
    clock = _timed(result, "radiomics", clock, progress)
    reports = write_reports(out, model_dir, chosen, test_rows, predictions, score_rows, settings=settings,
                            metrics=result.metrics)
    result.outputs.update(reports)
    _timed(result, "reports", clock, progress)
    record = {"medxai": __version__, "settings": asdict(settings), "explained": result.explained,
              "metrics": result.metrics, "seconds": result.seconds,
              "outputs": {label: str(path.relative_to(out)) for label, path in result.outputs.items()}}
    write_text_atomic(out / "demo.json", json.dumps(record, indent=2, default=str) + "\n")
    result.outputs["this run (demo.json)"] = out / "demo.json"
    return result
