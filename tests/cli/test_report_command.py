"""``medxai report`` through the real entry point: PDF written, errors are one line with the right exit code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from medxai.testing.report_case import ReportCase, phantom, write_report_case


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> ReportCase:
    volume, mask = phantom(linear=np.diag([1.0, -1.0, 2.0]), shape=(40, 40, 20), seed=11)
    return write_report_case(tmp_path_factory.mktemp("cli_report"), volume=volume, mask=mask,
                             methods=("smoothgrad", "gradcam"), failing=("gradcam",))


def test_report_writes_the_pdf(cli, case: ReportCase, tmp_path: Path) -> None:
    pdf = tmp_path / "out" / "report.pdf"
    result = cli("report", case.case_dir, "--scan", case.scan, "--mask", case.mask, "--model", case.model_dir,
                 "--methods", "gradcam", "--page-size", "letter", "-o", pdf)
    assert result.exit_code == 0, result.stderr
    assert str(pdf) in result.stdout
    text = " ".join("".join(p.extract_text() or "" for p in PdfReader(str(pdf)).pages).split())
    assert "Method: gradcam" in text and "Method: smoothgrad" not in text
    assert "gradcam: Verdict: DO NOT USE" in text  # its scores fail the sanity check


def test_report_without_a_scan_is_a_usage_error(cli, case: ReportCase, tmp_path: Path) -> None:
    result = cli("report", case.case_dir, "-o", tmp_path / "r.pdf")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "--scan" in result.stderr
    assert not (tmp_path / "r.pdf").exists()


@pytest.mark.parametrize("args, message", [
    (("--page-size", "A5"), "unknown page size"),
    (("--methods", "lrp"), "no heatmap for method(s) lrp"),
    (("--percentile", "100"), "percentile"),
])
def test_bad_options_exit_4_with_one_line(cli, case: ReportCase, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = cli("report", case.case_dir, "--scan", case.scan, *args, "-o", tmp_path / "r.pdf")
    assert result.exit_code == 4, result.stderr
    assert message in result.stderr and result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "r.pdf").exists()


def test_two_different_cases_are_refused(cli, case: ReportCase, tmp_path: Path) -> None:
    other = tmp_path / "case_0099"
    other.mkdir()
    (other / "scores.csv").write_text("case_id,method\ncase_0099,gradcam\n")
    result = cli("report", case.case_dir, other, "--scan", case.scan, "-o", tmp_path / "r.pdf")
    assert result.exit_code == 2 and "different cases" in result.stderr


def test_summary_of_a_folder_without_manifest_is_refused(cli, tmp_path: Path) -> None:
    result = cli("report", "--summary", tmp_path, "-o", tmp_path / "s.pdf")
    assert result.exit_code == 4 and "manifest.csv" in result.stderr
