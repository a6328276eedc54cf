"""The radiologist's case report: one PDF from a :class:`~medxai.report.loader.CaseResults`.

Page 1 answers the questions in the order a reader asks them: what is this (case, scan, model), what did
the model say (prediction, how far its probability can be trusted, validation performance), can the
explanations be trusted (scores table and plain-language verdicts). Then one page per method with
tri-planar overlays, the weakly-supervised segmentation and radiomics when present, and provenance.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reportlab.platypus import CondPageBreak, Flowable, PageBreak, Paragraph, Spacer

from medxai import __version__
from medxai.errors import ConfigError
from medxai.report import layout
from medxai.report.figures import Colouring, view_grid
from medxai.report.layout import Styles, text
from medxai.report.loader import CaseResults, MethodResult, load_case
from medxai.report.verdicts import method_sentences, short_cell
from medxai.report.views import (Reorientation, mask_centre, obliquity_note, peak_index, projection_views, slice_views,
                                 threshold_overlay)
from medxai.report.windows import Window, choose_window, parse_window

DEFAULT_PERCENTILE = 95.0
MIP_PERCENTILE = 90.0
SCORE_COLUMNS = (("verdict", "verdict"), ("sanity_status", "randomisation"), ("infidelity", "infidelity ↓"),
                 ("max_sensitivity", "max-sens. ↓"), ("deletion_auc", "deletion AUC ↓"))
MASK_COLUMNS = (("pointing_game", "peak in lesion"), ("mass_in_mask", "mass in lesion"), ("auroc", "AUROC"))
SIGN_WORDS = {"positive": "positive map (larger = more important)",
              "signed": "signed map (red raises the class score, blue lowers it)"}


@dataclass(frozen=True)
class Display:
    """How every image of the case is drawn: the scan's body (thresholds and peaks are taken inside it),
    the grey window, the canonical orientation, and the heatmap display percentile."""

    body: np.ndarray
    window: Window
    reorientation: Reorientation
    percentile: float

    @classmethod
    def of(cls, results: CaseResults, *, percentile: float, window: str | None) -> "Display":
        from medxai.metrics.sanity import foreground_array

        scan = results.scan
        body = foreground_array(np.asarray(scan.data, dtype=np.float64))
        metadata = results.metadata
        chosen = choose_window(scan.data, body, modality=metadata.get("modality"), option=window,
                               hints=(metadata.get("body_part"), metadata.get("series_description"), metadata.get("protocol")))
        return cls(body=body, window=chosen, reorientation=Reorientation.of(scan), percentile=percentile)


def _header(results: CaseResults, window: Window, styles: Styles, width: float) -> list[Flowable]:
    scan = results.scan
    pairs: list[tuple[str, Any]] = [("Case", results.name)]
    if results.input_name:
        pairs.append(("Case id", results.case_id))
    if "patient_name" in results.identifiers or "patient_id" in results.identifiers:
        pairs += [("Patient name", results.identifiers.get("patient_name", "–")),
                  ("Patient ID", results.identifiers.get("patient_id", "–"))]
    for key, label in (("study_date", "Study date"), ("modality", "Modality"), ("series_description", "Series"),
                       ("body_part", "Body part")):
        if key in results.metadata:
            pairs.append((label, results.metadata[key]))
    grid = (f"{' x '.join(map(str, scan.shape))} voxels, "
            f"{' x '.join(f'{s:.2f}' for s in scan.spacing)} mm, orientation {scan.orientation}")
    pairs.append(("Scan grid", grid))
    pairs.append(("Grey scale of every image", window.label))
    model = results.model
    model_hash = model.sha256 if model else results.provenance.get("model_sha256")
    if model is not None:
        pairs.append(("Model", f"{model.arch} (classes: {', '.join(model.classes)}; trained with medxai {model.version or '?'})"))
    pairs.append(("Model weights sha256", (model_hash or "unknown")[:16] + ("…" if model_hash else "")))
    return [Paragraph(f"Explanation report · {text(results.name)}", styles.title),
            layout.boxed([Paragraph(text(layout.DISCLAIMER), styles.warning)], width=width, border="#9b1c1c", fill="#fdecec"),
            Spacer(1, 4), layout.key_value_table(pairs, styles=styles, width=width)]


def _prediction(results: CaseResults, styles: Styles, width: float) -> list[Flowable]:
    kind = results.model.probability_kind() if results.model else "uncalibrated softmax (no model folder given)"
    lines = []
    if results.prediction is not None and results.probabilities:
        p = results.probabilities.get(results.prediction)
        shown = f" with probability {p:.2f}" if p is not None else ""
        lines.append(f"<b>Model prediction: {text(results.prediction)}</b>{shown} ({text(kind)}).")
        others = ", ".join(f"{text(k)} {v:.2f}" for k, v in results.probabilities.items())
        lines.append(f"All class probabilities: {others}.")
    else:
        lines.append("<b>Model prediction: not recorded</b> in the given folders.")
    if results.target:
        lines.append(f"The heatmaps explain the class <b>{text(results.target)}</b>.")
    performance = results.model.performance() if results.model else "not available (pass --model MODEL_DIR)"
    lines.append(f"Model validation performance: {text(performance)}.")
    if not (results.model and results.model.calibration):
        lines.append("The probability is an uncalibrated softmax output: read it as a ranking score, not as a "
                     "probability of disease.")
    return [Spacer(1, 6), layout.boxed([Paragraph(line, styles.body) for line in lines], width=width,
                                       border="#1f4e79", fill="#eef4fb")]


def _scores(results: CaseResults, styles: Styles, width: float) -> list[Flowable]:
    story: list[Flowable] = [Paragraph("Can these explanations be trusted?", styles.heading)]
    rows = [dict(m.scores, method=m.name) for m in results.methods if m.scores]
    if not rows:
        return story + [Paragraph("No explanation scores were found (run <i>medxai score</i> or a pipeline with the "
                                  "score stage): the heatmaps below are unverified.", styles.body)]
    with_mask = any(r.get("pointing_game") not in (None, "") for r in rows)
    columns = SCORE_COLUMNS + (MASK_COLUMNS if with_mask else ())
    table = [["method", *(label for _, label in columns)]]
    table += [[r["method"], *(short_cell(r, key) for key, _ in columns)] for r in rows]
    story.append(layout.grid_table(table, styles=styles))
    story.append(Paragraph("Verdict: trusted, caution, do-not-use or inconclusive, from the evidence below (the "
                           "rules: docs/verdicts.md). Faithfulness: infidelity (Yeh et al. 2019) and deletion AUC, lower "
                           "is better, each compared with a random map of the same values. Robustness: max-sensitivity, "
                           "lower is better. Randomisation: does the map's top-5 % region survive the randomisation of "
                           "the model's weights (Adebayo et al. 2018, repaired)." + (" Localisation against the reference lesion mask." if with_mask else ""),
                           styles.small))
    for method, sentences in method_sentences(rows).items():
        story.append(Paragraph(f"<b>{text(method)}</b>: " + " ".join(text(s) for s in sentences), styles.body))
    return story


def _failed_methods(results: CaseResults, styles: Styles) -> list[Flowable]:
    failed = results.provenance.get("failed_methods") or {}
    return [Paragraph(f"<b>{text(name)} produced no heatmap</b>: {text(reason)}", styles.warning)
            for name, reason in failed.items()]


def _lesion(results: CaseResults) -> tuple[str, Any] | None:
    if results.mask is not None and results.mask.data.any():
        return "through the lesion (reference mask)", results.mask.data
    if results.segmentation is not None and results.segmentation.mask.data.any():
        return "through the segmented lesion", results.segmentation.mask.data
    return None


def _explained_class(results: CaseResults) -> str:
    if results.target and results.target.endswith("(the predicted class)") and results.prediction:
        return results.prediction
    return results.target or "the explained class"


def _colouring(method: MethodResult, results: CaseResults, level: float) -> Colouring:
    """The overlay's colours and a colour bar label that says what they mean (units, sign, threshold)."""
    data = method.heatmap.data
    signed = method.sign == "signed" and bool(np.any(np.asarray(data) < 0))
    meaning = (f"red: evidence for {_explained_class(results)}, blue: against" if signed
               else "magnitude (larger = more important)")
    hidden = f"hatched: |value| < {level:.3g}, not drawn" if signed else f"below {level:.3g} (the lower end): not drawn"
    label = f"{method.name}, raw attribution units\n{meaning}\n{hidden}"
    return Colouring.for_map(data, signed=signed, label=label, threshold=level, meaning=meaning)


def _peak_note(results: CaseResults, method: MethodResult, peak: tuple[int, int, int]) -> str:
    """A sentence when the map's strongest voxel is not the one the views go through."""
    strongest = np.unravel_index(int(np.argmax(np.abs(np.nan_to_num(method.heatmap.data)))), method.heatmap.shape)
    if tuple(int(i) for i in strongest) == peak:
        return ""
    where = results.scan.index_to_world(np.array([strongest], dtype=float))[0]
    return (" The map's strongest voxel overall lies outside the body or at the edge of the field of view "
            f"(x {where[0]:+.0f}, y {where[1]:+.0f}, z {where[2]:+.0f} mm, RAS); the first row goes through the "
            "strongest voxel inside the body, away from the edge.")


def _window_caption(display: Display, bars: Sequence[float]) -> str:
    lengths = " / ".join(f"{length:g} mm" for length in sorted(set(bars)))
    return (f"Grey scale on every image: {display.window.label}. Scale bar (lower left of each image): {lengths}. "
            "Radiological convention: patient's right on the image's left (axial, coronal), anterior up (axial), "
            "superior up (coronal, sagittal), anterior on the left (sagittal).")


def _method_page(method: MethodResult, results: CaseResults, display: Display, styles: Styles,
                 size: tuple[float, float], sentences: Sequence[str]) -> list[Flowable]:
    width = layout.frame_width(size)
    data = method.heatmap.data
    reorientation, scan = display.reorientation, results.scan.data
    shown, level = threshold_overlay(data, percentile=display.percentile, body=display.body)
    outline = results.mask.data if results.mask is not None else None
    peak = peak_index(data, body=display.body)
    rows = [("through the heatmap peak", slice_views(reorientation, scan, point=peak, overlay=shown, mask=outline))]
    lesion = _lesion(results)
    if lesion is not None:
        centre = mask_centre(lesion[1])
        rows.append((lesion[0], slice_views(reorientation, scan, point=centre, overlay=shown, mask=lesion[1])))
    rows.append((f"MIP (top {100 - MIP_PERCENTILE:.0f}%)", projection_views(reorientation, scan, data,
                                                                           percentile=MIP_PERCENTILE)))
    colouring = _colouring(method, results, level)
    grid = view_grid(rows, colouring=colouring, window=display.window)
    caption = (f"Colours: {colouring.meaning}. Coloured: voxels whose |attribution| is at least {level:.3g}, the "
               f"{display.percentile:g}th percentile of |attribution| inside the body; weaker voxels are not drawn "
               "(the scan shows through unchanged), outside the body too. MIP: per ray, the voxel of largest "
               f"|attribution|, top {100 - MIP_PERCENTILE:.0f}% of rays. " + _window_caption(display, grid.scale_bars_mm))
    if outline is not None:
        caption += " Green outline: reference lesion mask."
    caption += _peak_note(results, method, peak)
    story: list[Flowable] = [PageBreak(), Paragraph(f"Method: {text(method.name)}", styles.heading),
                             Paragraph(text(SIGN_WORDS.get(method.sign, method.sign)) + ". "
                                       + " ".join(text(s) for s in sentences), styles.body), Spacer(1, 4),
                             layout.png_image(grid.png, width=width, max_height=layout.frame_height(size) - 140),
                             Paragraph(text(caption), styles.small)]
    return story


def _segmentation(results: CaseResults, display: Display, styles: Styles, size: tuple[float, float]) -> list[Flowable]:
    segmentation = results.segmentation
    if segmentation is None:
        return []
    record = segmentation.record
    volume = segmentation.volume_ml
    method = record.get("method", "?")
    source = (f"Weakly-supervised lesion mask from the {text(method)} heatmap of class {text(record.get('target', '?'))}, "
              f"threshold {text(record.get('threshold', {}).get('rule', '?'))}")
    if record.get("status") == "failed":
        reason = record.get("reason") or "no reason recorded"
        return [CondPageBreak(layout.frame_height(size) * 0.3), Paragraph("Weakly-supervised segmentation", styles.heading),
                layout.boxed([Paragraph(f"<b>The segmentation FAILED</b>: {text(reason)}. No lesion volume is reported "
                                        f"and no mask is drawn. ({source}.)", styles.warning)],
                             width=layout.frame_width(size), border="#9b1c1c", fill="#fdecec")]
    summary = source + ": " + (f"<b>volume {volume:.2f} mL</b>." if volume is not None else "volume not recorded.")
    if record.get("empty_reason"):
        summary += f" The mask is empty: {text(record['empty_reason'])}."
    scores = record.get("scores") or {}
    if scores.get("dice") is not None:
        summary += f" Against the reference mask: Dice {scores['dice']:.2f}, IoU {scores.get('iou', float('nan')):.2f}."
    story: list[Flowable] = [CondPageBreak(layout.frame_height(size) * 0.6),
                             Paragraph("Weakly-supervised segmentation", styles.heading), Paragraph(summary, styles.body)]
    centre = mask_centre(segmentation.mask.data)
    if centre is not None:
        views = slice_views(display.reorientation, results.scan.data, point=centre, mask=segmentation.mask.data)
        grid = view_grid([("through the mask centre", views)], colouring=None, window=display.window)
        story += [layout.png_image(grid.png, width=layout.frame_width(size)),
                  Paragraph(text("Green outline: the weakly-supervised mask. " + _window_caption(display, grid.scale_bars_mm)),
                            styles.small)]
    return story


def _radiomics(results: CaseResults, styles: Styles, size: tuple[float, float]) -> list[Flowable]:
    radiomics = results.radiomics
    if radiomics is None:
        return []
    width = layout.frame_width(size)
    story: list[Flowable] = [CondPageBreak(layout.frame_height(size) * 0.5), Paragraph("Radiomics", styles.heading)]
    if radiomics.rows:
        table = [["region", "distance (mm)", "volume (mL)", "first-order mean"]]
        for row in radiomics.rows:
            volume = row.get("original_shape_VoxelVolume", "")
            table.append([row.get("region", ""), row.get("distance_mm", ""),
                          short_cell({"v": str(float(volume) / 1000.0) if volume not in ("", "nan") else ""}, "v"),
                          short_cell(row, "original_firstorder_Mean")])
        story += [Paragraph("PyRadiomics features of the lesion and its peritumoral shells (full table in features.csv).",
                            styles.body), layout.grid_table(table, styles=styles, widths=[0.25 * width] * 4)]
    if radiomics.study_plot is not None:
        best = max(radiomics.study_auc, key=lambda r: float(r.get("auc", "nan") or "nan"), default=None)
        if best is not None:
            story.append(Paragraph(
                f"Cohort study (cross-validated): best AUC {float(best['auc']):.2f} with the {text(best.get('region'))} "
                f"region at {text(best.get('distance_mm'))} mm ({text(best.get('classifier'))}).", styles.body))
        story.append(layout.png_image(radiomics.study_plot, width=width * 0.8))
    return story


def _provenance(results: CaseResults, styles: Styles, width: float) -> list[Flowable]:
    provenance = results.provenance
    versions = provenance.get("versions") or {}
    pairs: list[tuple[str, Any]] = [
        ("Input sha256", provenance.get("input_sha256", "not recorded")),
        ("Model sha256", provenance.get("model_sha256") or (results.model.sha256 if results.model else "not recorded")),
        ("Versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded"),
        ("Explained on", provenance.get("date", "not recorded")),
        ("Report written", f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} by medxai {__version__}"),
    ]
    for method in results.methods:
        timing = f"; {method.seconds:.1f} s" if isinstance(method.seconds, (int, float)) else ""
        pairs.append((f"Parameters: {method.name}", json.dumps(dict(method.params), sort_keys=True, default=str) + timing))
    return [CondPageBreak(120), Paragraph("Provenance", styles.heading), layout.key_value_table(pairs, styles=styles, width=width),
            Spacer(1, 6), Paragraph(text(layout.DISCLAIMER), styles.warning)]


def case_story(results: CaseResults, *, size: tuple[float, float], percentile: float = DEFAULT_PERCENTILE,
               window: str | None = None) -> list[Flowable]:
    """The flowables of one case report; ``window``: a CT window name or ``W,L`` (default: from the scan)."""
    styles = Styles.make()
    width = layout.frame_width(size)
    display = Display.of(results, percentile=percentile, window=window)
    story = _header(results, display.window, styles, width) + _prediction(results, styles, width)
    story += _scores(results, styles, width)
    story += _failed_methods(results, styles)
    note = obliquity_note(display.reorientation)
    if note:
        story.append(Paragraph(text(note), styles.small))
    scored = method_sentences([dict(m.scores, method=m.name) for m in results.methods if m.scores])
    for method in results.methods:
        story += _method_page(method, results, display, styles, size, scored.get(method.name, []))
    if not results.methods:
        story.append(Paragraph("No heatmaps were found in the given folders.", styles.body))
    story += _segmentation(results, display, styles, size)
    story += _radiomics(results, styles, size)
    story += _provenance(results, styles, width)
    return story


def write_case_report(results: CaseResults, out_pdf: str | Path, *, page_size: str = "A4",
                      percentile: float = DEFAULT_PERCENTILE, window: str | None = None) -> Path:
    """Write the case report PDF atomically; return its path."""
    size = layout.page_size(page_size)
    story = case_story(results, size=size, percentile=percentile, window=window)
    return layout.build_pdf(story, out_pdf, size=size, title=f"medxai report {results.name}",
                            running=f"medxai explanation report · {results.name}")


def report_case(
    case_dirs: Sequence[str | Path], out_pdf: str | Path, *, scan: str | Path | None = None, mask: str | Path | None = None,
    model_dir: str | Path | None = None, scores_csv: str | Path | None = None, methods: Sequence[str] | None = None,
    include_identifiers: bool = False, page_size: str = "A4", percentile: float = DEFAULT_PERCENTILE,
    window: str | None = None,
) -> CaseResults:
    """``medxai report``: gather one case's results from ``case_dirs`` and write its PDF; return what it showed
    (its ``warnings`` say what the caller should tell the user, e.g. a ``scores_csv`` without this case)."""
    layout.page_size(page_size)  # a bad page size or window fails before anything is read
    if window:
        parse_window(window)
    if not 0 <= percentile < 100:
        raise ConfigError(f"the display percentile must be in [0, 100), got {percentile}")
    results = load_case(case_dirs, scan=scan, mask=mask, model_dir=model_dir, scores_csv=scores_csv, methods=methods,
                        include_identifiers=include_identifiers)
    write_case_report(results, out_pdf, page_size=page_size, percentile=percentile, window=window)
    return results
