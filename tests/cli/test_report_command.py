"""``medxai report`` through the real entry point: PDF written, errors are one line with the right exit code."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from medxai.attribution.provenance import HASHED_VOXELS, volume_sha256
from medxai.io.naming import input_label
from medxai.io.readers import read_volume
from medxai.testing.dicom_writer import dicom_representable, write_dicom_series
from medxai.testing.report_case import ReportCase, phantom, write_report_case


def _pdf_text(pdf: Path) -> str:
    return " ".join("".join(p.extract_text() or "" for p in PdfReader(str(pdf)).pages).split())


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
    text = _pdf_text(pdf)
    assert "Method: gradcam" in text and "Method: smoothgrad" not in text
    assert "gradcam: Verdict: DO NOT USE" in text  # its scores fail the sanity check


def test_report_without_a_scan_or_a_recorded_input_exits_4(cli, case: ReportCase, tmp_path: Path) -> None:
    result = cli("report", case.case_dir, "-o", tmp_path / "r.pdf")  # this case folder records no input
    assert result.exit_code == 4, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "records no explained scan" in result.stderr
    assert "--scan" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.pdf").exists()


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``medxai explain`` run for real (tiny CNN trained one epoch) on an oblique NIfTI phantom."""
    from medxai.io.nifti import write_nifti
    from medxai.models.train import train_model
    from medxai.synthetic import default_grid, make_cohort, make_spec, render

    root = tmp_path_factory.mktemp("report_explained")
    labels = make_cohort(root / "cohort", cases=6, seed=2, size=24, grid_mix=False)
    train_model(labels, root / "model", arch="tiny", task="classification", epochs=1, batch_size=4,
                spatial_size=24, device="cpu", seed=0)
    spec = make_spec(seed=11, task="presence", label="lesion", size=24)
    affine, shape = default_grid(spec, size=24, kind="oblique")
    scan = write_nifti(render(spec, affine=affine, shape=shape).image, root / "scans" / "patient_042.nii.gz")
    return {"model": root / "model", "scan": Path(scan), "root": root}


def test_report_finds_the_scan_explain_recorded(cli, explained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "explained"
    result = cli("explain", explained["model"], explained["scan"], "-o", out, "-m", "gradcam")
    assert result.exit_code == 0, result.stderr
    pdf = tmp_path / "r.pdf"
    result = cli("report", out / "patient_042", "-o", pdf)
    assert result.exit_code == 0, result.stderr
    assert "case patient_042: gradcam" in result.stderr + result.stdout
    text = _pdf_text(pdf)
    assert "patient_042" in text and "Method: gradcam" in text


def test_report_of_a_moved_scan_is_one_line_exit_4(cli, explained: dict[str, Path], tmp_path: Path) -> None:
    scan = tmp_path / "scans" / "patient_042.nii.gz"
    scan.parent.mkdir()
    shutil.copy(explained["scan"], scan)
    out = tmp_path / "explained"
    assert cli("explain", explained["model"], scan, "-o", out, "-m", "gradcam").exit_code == 0
    scan.rename(tmp_path / "elsewhere.nii.gz")
    pdf = tmp_path / "r.pdf"
    result = cli("report", out / "patient_042", "-o", pdf)
    assert result.exit_code == 4, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert str(scan) in result.stderr and "no longer exists" in result.stderr and "--scan" in result.stderr
    assert not pdf.exists()
    result = cli("report", out / "patient_042", "--scan", tmp_path / "elsewhere.nii.gz", "-o", pdf)
    assert result.exit_code == 0, result.stderr  # --scan still names the moved scan


def test_report_reads_the_recorded_series_of_a_dicom_folder(cli, tmp_path: Path) -> None:
    """A pipeline records ``FOLDER#<SeriesInstanceUID>`` for one series of a folder holding several: the
    report must read that series (the other has another grid, so reading it would be refused)."""
    first, _ = phantom(linear=np.diag([1.0, 1.0, 2.0]), shape=(24, 24, 12), seed=3)
    second, mask = phantom(linear=np.diag([1.0, -1.0, 2.0]), shape=(32, 28, 10), seed=5)
    folder = tmp_path / "study"
    write_dicom_series(dicom_representable(first), folder / "a", series_description="localiser", series_number=1)
    write_dicom_series(dicom_representable(second), folder / "b", series_uid="1.2.826.0.1.3680043.2.1125.77",
                       series_description="axial", series_number=2)
    for sub in ("a", "b"):  # one flat folder holding both series
        for member in (folder / sub).iterdir():
            member.rename(folder / f"{sub}_{member.name}")
        (folder / sub).rmdir()
    volume = read_volume(folder, series_uid="1.2.826.0.1.3680043.2.1125.77")
    assert volume.shape == (32, 28, 10)
    case = write_report_case(tmp_path / "out", volume=volume, mask=mask, methods=("smoothgrad",), failing=())
    record = json.loads((case.case_dir / "explanations.json").read_text())
    record["input"] = input_label([folder], "1.2.826.0.1.3680043.2.1125.77")
    record["inputs"] = [{"channel": 0, "sha256": volume_sha256(volume), "hashed": HASHED_VOXELS}]
    (case.case_dir / "explanations.json").write_text(json.dumps(record))
    pdf = tmp_path / "r.pdf"
    result = cli("report", case.case_dir, "-o", pdf)
    assert result.exit_code == 0, result.stderr
    assert "Method: smoothgrad" in _pdf_text(pdf)


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
