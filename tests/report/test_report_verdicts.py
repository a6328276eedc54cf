"""The report reads the verdicts of ``scores.csv`` and says plainly when the segmentation failed."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from pypdf import PdfReader

from medxai.io.nifti import write_nifti
from medxai.report.cohort import Cohort, CohortCase, write_cohort_summary
from medxai.report.pdf import report_case
from medxai.testing.report_case import phantom, write_report_case


def _text(pdf: Path) -> str:
    return " ".join(" ".join(page.extract_text() or "" for page in PdfReader(str(pdf)).pages).split())


def _case(root: Path):
    volume, mask = phantom(linear=np.diag([1.0, 1.0, 1.5]), shape=(32, 32, 20))
    return write_report_case(root, volume=volume, mask=mask, methods=("smoothgrad", "gradcam"), failing=())


def _add_columns(scores: Path, values: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    with scores.open(newline="") as handle:
        rows = [dict(row, **values[row["method"]]) for row in csv.DictReader(handle)]
    with scores.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_the_recorded_verdicts_and_reasons_are_what_the_report_says(tmp_path: Path) -> None:
    case = _case(tmp_path)
    rows = _add_columns(case.case_dir / "scores.csv", {
        "smoothgrad": {"verdict": "trusted", "verdict_reason": "Trusted: it follows the model here.",
                       "sanity_status": "pass", "sanity_detail": ""},
        "gradcam": {"verdict": "inconclusive", "verdict_reason": "Cannot tell whether this map reflects the model.",
                    "sanity_status": "inconclusive", "sanity_detail": "the randomised model's map is constant",
                    "sanity_pass": ""},
    })
    pdf = tmp_path / "report.pdf"
    report_case([case.case_dir], pdf, scan=case.scan, mask=case.mask)
    text = _text(pdf)
    assert "smoothgrad: Verdict: TRUSTED. Trusted: it follows the model here." in text
    assert "gradcam: Verdict: INCONCLUSIVE. Cannot tell whether this map reflects the model." in text
    assert "Randomisation check inconclusive: the randomised model's map is constant" in text
    assert "Passes the sanity check" not in text  # the old wording that called a flat map a pass is gone
    summary = write_cohort_summary(Cohort(title="two maps", cases=[CohortCase("case_0007")], scores=rows),
                                   tmp_path / "summary.pdf")
    cohort = _text(summary)
    assert "Verdicts per method" in cohort and "usable" not in cohort
    assert "smoothgrad 1 of 1 0 of 1 0 of 1 0 of 1" in cohort  # trusted, caution, do-not-use, inconclusive
    assert "gradcam 0 of 1 0 of 1 0 of 1 1 of 1" in cohort


def test_a_failed_segmentation_is_said_plainly_and_no_volume_is_printed(tmp_path: Path) -> None:
    case = _case(tmp_path)
    whole = case.volume.with_data(np.ones(case.volume.shape, dtype=np.uint8))
    write_nifti(whole, case.case_dir / "mask.nii.gz")
    reason = "the threshold (level 0) lies at the heatmap's minimum, so it keeps every voxel the map covers"
    record = {"case_id": "case_0007", "status": "failed", "reason": reason, "method": "smoothgrad",
              "target": "lesion", "threshold": {"rule": "fixed:0"}, "mask": {"voxels": int(whole.data.size),
                                                                             "volume_ml": 112.39}}
    (case.case_dir / "segmentation.json").write_text(json.dumps(record), encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    report_case([case.case_dir], pdf, scan=case.scan, mask=case.mask)
    text = _text(pdf)
    assert "The segmentation FAILED: " + reason in text
    assert "No lesion volume is reported" in text
    assert "112.39" not in text and "Green outline: the weakly-supervised mask" not in text
    ok = dict(record, status="ok", reason=None)
    (case.case_dir / "segmentation.json").write_text(json.dumps(ok), encoding="utf-8")
    report_case([case.case_dir], pdf, scan=case.scan, mask=case.mask)
    assert "volume 112.39 mL" in _text(pdf)  # the same record, not failed: its volume is shown
