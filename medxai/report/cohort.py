"""The one-page cohort summary of a batch: the model, cases and their status, predictions, failures with
their reasons, the weakly-supervised segmentation's quality, and the distribution of each explanation score
per method (box plots, captioned with the metrics they show).

Input is a run folder (``medxai run`` output: ``manifest.csv``, ``scores.csv``, per-case ``prediction.json``
/ ``explanations.json`` / ``scan.json``) or a :class:`Cohort` built by the caller (the demo).
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from reportlab.platypus import Flowable, KeepInFrame, Paragraph, Spacer, Table, TableStyle

from medxai.errors import InvalidInputError
from medxai.report import layout
from medxai.report.figures import bar_counts, box_plots, shown_metrics
from medxai.report.layout import Styles, text
from medxai.metrics.verdict import VERDICTS
from medxai.report.verdicts import number, row_verdict

BOX_METRICS = ("infidelity", "max_sensitivity", "sanity_spearman", "mass_in_mask", "auroc", "com_distance_mm")
# metric -> (panel title, what a reader should know: better direction)
METRIC_WORDS = {
    "infidelity": ("infidelity ↓", "infidelity: lower is better"),
    "max_sensitivity": ("max-sensitivity ↓", "max-sensitivity: lower is better"),
    "sanity_spearman": ("randomisation Spearman ↓", "randomisation Spearman (rank correlation with the randomised "
                        "model's map): lower is better"),
    "mass_in_mask": ("mass in lesion ↑", "mass in lesion (share of positive attribution inside the lesion): higher "
                     "is better"),
    "auroc": ("lesion AUROC ↑", "lesion-vs-background AUROC: higher is better"),
    "com_distance_mm": ("centre-of-mass distance (mm) ↓", "centre-of-mass distance to the lesion, mm: lower is better"),
}
MAX_FAILURES_LISTED = 8


@dataclass(frozen=True)
class CohortCase:
    """One case of a batch: its status (done, failed, skipped), why it failed, what the model said."""

    case_id: str
    status: str = "done"
    error: str = ""
    prediction: str | None = None
    probability: float | None = None
    label: str | None = None
    segmentation: str = ""  # "ok", "failed: <reason>" or "" (not segmented), as in the run's manifest


@dataclass(frozen=True)
class Cohort:
    """A batch to summarise: cases, ``scores.csv`` rows (one per case x method) and free-text notes."""

    title: str
    cases: Sequence[CohortCase]
    scores: Sequence[Mapping[str, str]] = ()
    notes: Sequence[str] = field(default_factory=tuple)
    model: str | None = None  # which model: its name and a short hash of its weights


def _json_or_empty(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"unreadable JSON ({error})", path=path) from None
    return payload if isinstance(payload, dict) else {}


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [dict(r) for r in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidInputError(f"unreadable CSV ({error})", path=path) from None


def _predicted(folder: Path) -> tuple[str | None, float | None]:
    for name in ("prediction.json", "explanations.json", "segmentation.json"):
        record = _json_or_empty(folder / name)
        source = record.get("provenance", record) if name == "explanations.json" else record
        prediction = source.get("prediction") or source.get("predicted")
        probabilities = source.get("probabilities")
        if prediction:
            p = probabilities.get(prediction) if isinstance(probabilities, dict) else None
            return str(prediction), (float(p) if p is not None else None)
    return None, None


def _segmentation_status(row: Mapping[str, str], folder: Path) -> str:
    """The manifest's ``segmentation`` cell, else the case's ``segmentation.json`` status."""
    if row.get("segmentation"):
        return str(row["segmentation"])
    record = _json_or_empty(folder / "segmentation.json")
    if not record:
        return ""
    return f"failed: {record.get('reason') or 'no reason recorded'}" if record.get("status") == "failed" else "ok"


def model_line(name: str | None, sha256: str | None) -> str | None:
    """``<name> (weights sha256 0123456789ab…)``, or None when neither is known."""
    if not name and not sha256:
        return None
    return f"{name or 'unnamed model'} (weights sha256 {sha256[:12]}…)" if sha256 else str(name)


def collect_run(run_dir: str | Path) -> Cohort:
    """A :class:`Cohort` from a ``medxai run`` output folder (its ``manifest.csv`` lists every case)."""
    out = Path(run_dir)
    manifest = _rows(out / "manifest.csv")
    if not manifest:
        raise InvalidInputError("no manifest.csv: not a medxai run folder", path=out)
    cases = []
    for row in manifest:
        folder = out / row["case_id"]
        prediction, probability = _predicted(folder) if row.get("status") == "done" else (None, None)
        label = _json_or_empty(folder / "scan.json").get("label")
        segmentation = _segmentation_status(row, folder) if row.get("status") == "done" else ""
        cases.append(CohortCase(row["case_id"], row.get("status", ""), row.get("error", ""), prediction, probability,
                                str(label) if label else None, segmentation))
    record = _json_or_empty(out / "run.json")
    pipeline = record.get("pipeline") if isinstance(record.get("pipeline"), dict) else {}
    title = f"Run summary: {pipeline.get('name') or out.name}"
    model = pipeline.get("model") if isinstance(pipeline.get("model"), dict) else {}
    name = Path(str(model["path"])).name if model.get("path") else None
    return Cohort(title=title, cases=cases, scores=_rows(out / "scores.csv"),
                  model=model_line(name, record.get("model_sha256")))


def _score_values(scores: Sequence[Mapping[str, str]]) -> dict[str, dict[str, list[float]]]:
    values: dict[str, dict[str, list[float]]] = {metric: {} for metric in BOX_METRICS}
    for row in scores:
        for metric in BOX_METRICS:
            value = number(row, metric)
            if value is not None:
                values[metric].setdefault(row.get("method", "?"), []).append(value)
    return values


def _verdict_table(scores: Sequence[Mapping[str, str]], styles: Styles) -> Table | None:
    """Per method: how many of its cases got each verdict (:func:`medxai.report.verdicts.row_verdict`)."""
    by_method: dict[str, Counter[str]] = {}
    for row in scores:
        by_method.setdefault(row.get("method", "?"), Counter())[row_verdict(row).label] += 1
    if not by_method:
        return None
    rows = [["method", *VERDICTS]]
    for method, counts in by_method.items():
        total = sum(counts.values())
        rows.append([method, *(f"{counts.get(verdict, 0)} of {total}" for verdict in VERDICTS)])
    return layout.grid_table(rows, styles=styles)


def _status_table(cohort: Cohort, styles: Styles) -> Table:
    status = Counter(case.status for case in cohort.cases)
    rows = [["cases", "done", "failed", "skipped"],
            [str(len(cohort.cases)), str(status.get("done", 0)), str(status.get("failed", 0)), str(status.get("skipped", 0))]]
    return layout.grid_table(rows, styles=styles)


def _prediction_rows(cohort: Cohort, styles: Styles) -> list[Flowable]:
    done = [c for c in cohort.cases if c.prediction is not None]
    if not done:
        return [Paragraph("No predictions recorded.", styles.body)]
    counts = Counter(c.prediction for c in done)
    story: list[Flowable] = []
    labelled = [c for c in done if c.label is not None]
    if labelled:
        agree = sum(c.label == c.prediction for c in labelled)
        story.append(Paragraph(f"Prediction equals the known label in {agree} of {len(labelled)} labelled cases "
                               f"({100 * agree / len(labelled):.0f}%).", styles.body))
    chart = layout.png_image(bar_counts(dict(sorted(counts.items())), title="cases per predicted class"), width=190)
    return [chart, *story]


def _failures(cohort: Cohort, styles: Styles) -> list[Flowable]:
    failed = [c for c in cohort.cases if c.status == "failed"]
    if not failed:
        return [Paragraph("No case failed.", styles.body)]
    rows = [["case", "reason"]] + [[c.case_id, c.error or "unknown"] for c in failed[:MAX_FAILURES_LISTED]]
    story: list[Flowable] = [layout.grid_table(rows, styles=styles, widths=[90, 420])]
    if len(failed) > MAX_FAILURES_LISTED:
        story.append(Paragraph(f"… and {len(failed) - MAX_FAILURES_LISTED} more (see manifest.csv).", styles.small))
    return story


def _segmentations(cohort: Cohort, styles: Styles) -> list[Flowable]:
    """How many weakly-supervised masks are segmentations, and why the others failed (nothing without one)."""
    segmented = [c for c in cohort.cases if c.segmentation]
    if not segmented:
        return []
    failed = [c for c in segmented if c.segmentation.startswith("failed")]
    story: list[Flowable] = [
        Paragraph("Weakly-supervised segmentation", styles.heading),
        Paragraph(f"{len(segmented) - len(failed)} of {len(segmented)} masks are usable segmentations; "
                  f"{len(failed)} failed (no lesion volume is reported for them).", styles.body)]
    if failed:
        rows = [["case", "why the segmentation failed"]]
        rows += [[c.case_id, c.segmentation.partition(":")[2].strip() or "no reason recorded"]
                 for c in failed[:MAX_FAILURES_LISTED]]
        story.append(layout.grid_table(rows, styles=styles, widths=[90, 420]))
        if len(failed) > MAX_FAILURES_LISTED:
            story.append(Paragraph(f"… and {len(failed) - MAX_FAILURES_LISTED} more (see manifest.csv).", styles.small))
    return story


def _score_plots(cohort: Cohort, styles: Styles, width: float) -> list[Flowable]:
    """The box plots and a caption naming exactly the metrics they show."""
    values = _score_values(cohort.scores)
    shown = shown_metrics(values, BOX_METRICS)
    plot = layout.png_image(box_plots(values, metrics=shown, titles={m: METRIC_WORDS[m][0] for m in shown}), width=width)
    if not shown:
        return [plot]
    caption = "One box per method, one point per case. " + "; ".join(METRIC_WORDS[m][1] for m in shown) + "."
    return [plot, Paragraph(text(caption), styles.small)]


def cohort_story(cohort: Cohort, *, size: tuple[float, float]) -> list[Flowable]:
    """The flowables of the summary, shrunk to fit one page."""
    styles = Styles.make()
    width = layout.frame_width(size)
    left: list[Flowable] = [Paragraph("Cases", styles.heading), _status_table(cohort, styles), Spacer(1, 4),
                            *_prediction_rows(cohort, styles)]
    verdicts = _verdict_table(cohort.scores, styles)
    right: list[Flowable] = [Paragraph("Can the explanations be trusted? Verdicts per method", styles.heading),
                             verdicts if verdicts is not None else Paragraph("No explanation scores.", styles.body)]
    columns = Table([[left, right]], colWidths=[0.45 * width, 0.55 * width], hAlign="LEFT")
    columns.setStyle(TableStyle([layout.FONT_COMMAND, ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    content: list[Flowable] = [
        Paragraph(text(cohort.title), styles.title),
        Paragraph(f"<b>Model</b>: {text(cohort.model or 'not recorded')}", styles.body),
        Paragraph(text(layout.DISCLAIMER), styles.warning), Spacer(1, 4), columns,
        Paragraph("Failures", styles.heading), *_failures(cohort, styles),
        *_segmentations(cohort, styles),
        Paragraph("Explanation scores per method", styles.heading),
        *_score_plots(cohort, styles, width),
        *(Paragraph(text(note), styles.small) for note in cohort.notes),
    ]
    return [KeepInFrame(width, layout.frame_height(size), content, mode="shrink")]


def write_cohort_summary(source: str | Path | Cohort, out_pdf: str | Path, *, page_size: str = "A4") -> Path:
    """Write the one-page summary of a run folder or a :class:`Cohort` to ``out_pdf`` atomically."""
    cohort = source if isinstance(source, Cohort) else collect_run(source)
    size = layout.page_size(page_size)
    return layout.build_pdf(cohort_story(cohort, size=size), out_pdf, size=size, title=cohort.title,
                            running="medxai cohort summary")
