"""The one-page cohort summary of a run folder (manifest + per-case predictions + scores.csv)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pypdf import PdfReader

from medxai.pipeline.manifest import ManifestRow, write_manifest
from medxai.report.cohort import Cohort, CohortCase, collect_run, write_cohort_summary

METHODS = ("smoothgrad", "gradcam")


def _run_folder(out: Path, *, cases: int = 12) -> Path:
    rng = np.random.default_rng(1)
    rows, scores = [], ["case_id,method,infidelity,max_sensitivity,sanity_spearman,sanity_pass,mass_in_mask,auroc"]
    for index in range(cases):
        case_id = f"case_{index:03d}"
        if index == 3:
            rows.append(ManifestRow(case_id, "failed", error="case_003.nii.gz: contains 12 NaN or infinite voxel values"))
            continue
        folder = out / case_id
        folder.mkdir(parents=True)
        label = "lesion" if index % 2 else "normal"
        predicted = label if index != 5 else "normal"
        (folder / "prediction.json").write_text(json.dumps(
            {"case_id": case_id, "prediction": predicted, "probabilities": {"lesion": 0.8, "normal": 0.2}}))
        (folder / "scan.json").write_text(json.dumps({"case_id": case_id, "label": label}))
        rows.append(ManifestRow(case_id, "done", outputs=(f"{case_id}/prediction.json",)))
        for method in METHODS:
            passed = method == "smoothgrad"
            scores.append(f"{case_id},{method},{rng.random():.3f},{rng.random():.3f},{0.1 if passed else 0.9},"
                          f"{'true' if passed else 'false'},{rng.random():.3f},{rng.random():.3f}")
    write_manifest(out, rows)
    (out / "scores.csv").write_text("\n".join(scores) + "\n")
    return out


def test_run_summary_is_one_page_with_failures_predictions_and_scores(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    pdf = write_cohort_summary(run, tmp_path / "summary.pdf", page_size="letter")
    reader = PdfReader(str(pdf))
    assert len(reader.pages) == 1
    text = " ".join((reader.pages[0].extract_text() or "").split())
    assert "contains 12 NaN or infinite voxel values" in text and "case_003" in text
    assert "Research tool, not a diagnostic device" in text
    assert "smoothgrad" in text and "gradcam" in text
    assert "10 of 11 labelled cases" in text  # case_005 is mispredicted
    # verdicts per method (trusted, caution, do-not-use, inconclusive): smoothgrad passes the sanity check but
    # has no random-map baseline in these scores (caution) unless its AUROC is under 0.6 (do-not-use); gradcam
    # fails the sanity check (do-not-use)
    low = sum(float(line.split(",")[-1]) < 0.6 for line in (run / "scores.csv").read_text().splitlines()[1:]
              if ",smoothgrad," in line)
    assert f"smoothgrad 0 of 11 {11 - low} of 11 {low} of 11 0 of 11" in text
    assert "gradcam 0 of 11 0 of 11 11 of 11 0 of 11" in text
    images = [np.asarray(image.image.convert("RGB")) for image in reader.pages[0].images]
    assert len(images) >= 2 and all(image.std() > 5 for image in images)


def test_collect_run_reads_status_and_predictions(tmp_path: Path) -> None:
    cohort = collect_run(_run_folder(tmp_path / "run", cases=4))
    by_id = {case.case_id: case for case in cohort.cases}
    assert by_id["case_003"].status == "failed" and by_id["case_003"].prediction is None
    assert by_id["case_001"].prediction == "lesion" and by_id["case_001"].probability == 0.8
    assert by_id["case_001"].label == "lesion"
    assert len(cohort.scores) == 6


def test_many_failures_still_fit_one_page(tmp_path: Path) -> None:
    cases = [CohortCase(f"c{i}", "failed", error="scan unreadable: " + "x" * 80) for i in range(40)]
    pdf = write_cohort_summary(Cohort("big", cases), tmp_path / "s.pdf")
    reader = PdfReader(str(pdf))
    assert len(reader.pages) == 1
    assert "32 more" in " ".join((reader.pages[0].extract_text() or "").split())


def test_summary_names_the_model_segmentation_quality_and_only_the_metrics_shown(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run", cases=4)
    rows = [ManifestRow("case_000", "done", segmentation="ok"),
            ManifestRow("case_001", "done", segmentation="failed: the mask covers 97% of the body"),
            ManifestRow("case_002", "done"),
            ManifestRow("case_003", "failed", error="unreadable")]
    write_manifest(run, rows)
    (run / "case_002" / "segmentation.json").write_text(json.dumps(
        {"case_id": "case_002", "status": "failed", "reason": "the threshold is the map's minimum"}))
    (run / "run.json").write_text(json.dumps({"pipeline": {"name": "weakseg", "model": {"path": "/models/tiny_cnn"}},
                                              "model_sha256": "ab12" * 16}))
    pdf = write_cohort_summary(run, tmp_path / "summary.pdf")
    text = " ".join((PdfReader(str(pdf)).pages[0].extract_text() or "").split())
    assert "Model: tiny_cnn (weights sha256 ab12ab12ab12…)" in text
    assert "1 of 3 masks are usable segmentations; 2 failed" in text
    assert "the mask covers 97% of the body" in text and "the threshold is the map's minimum" in text
    # the scores hold infidelity, max-sensitivity, randomisation Spearman, mass in mask and AUROC, no distance
    assert "infidelity: lower is better" in text and "lesion-vs-background AUROC: higher is better" in text
    assert "centre-of-mass" not in text


def test_a_summary_without_a_model_record_says_so(tmp_path: Path) -> None:
    pdf = write_cohort_summary(Cohort("no model", [CohortCase("c0", "done", prediction="lesion")]), tmp_path / "s.pdf")
    assert "Model: not recorded" in " ".join((PdfReader(str(pdf)).pages[0].extract_text() or "").split())


def test_count_axis_has_whole_number_ticks() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from medxai.report.figures import bar_figure

    figure = bar_figure({"lesion": 2, "normal": 1}, title="cases per predicted class")
    FigureCanvasAgg(figure).draw()
    ticks = figure.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)  # matplotlib's default: 0, 0.25, 0.5 ...
