"""The case report PDF: valid, says what matters, renders with visible overlays, leaks no identifier."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from medxai.errors import InvalidInputError
from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.report.pdf import report_case
from medxai.attribution.provenance import input_sha256
from medxai.testing.report_case import ReportCase, phantom, write_model_json, write_report_case

DISCLAIMER = "Research tool, not a diagnostic device"


def _text(pdf: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(str(pdf)).pages)


def _colour_pixels(rgb: np.ndarray) -> int:
    rgb = rgb.astype(np.int32)
    return int(((np.abs(rgb[..., 0] - rgb[..., 1]) > 60) | (np.abs(rgb[..., 0] - rgb[..., 2]) > 60)).sum())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportCase]:
    root = tmp_path_factory.mktemp("report")
    volume, mask = phantom(linear=np.diag([-1.0, -1.1, 2.5]), shape=(48, 44, 20))  # LPS-flipped, anisotropic
    case = write_report_case(root, volume=volume, mask=mask)
    pdf = root / "report.pdf"
    report_case([case.case_dir], pdf, scan=case.scan, mask=case.mask, model_dir=case.model_dir)
    return pdf, case


def test_pdf_is_valid_with_embedded_fonts(report: tuple[Path, ReportCase]) -> None:
    pdf, _ = report
    reader = PdfReader(str(pdf))
    assert len(reader.pages) >= 3  # summary page + one page per method
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            descriptor = font.get_object()["/FontDescriptor"].get_object()
            assert "/FontFile2" in descriptor, f"font {font.get_object()['/BaseFont']} is not embedded"
    if shutil.which("qpdf"):
        checked = subprocess.run(["qpdf", "--check", str(pdf)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not list(pdf.parent.glob(".report.pdf.*")), "temporary file left behind"


def test_pdf_states_prediction_methods_verdicts_and_disclaimer(report: tuple[Path, ReportCase]) -> None:
    pdf, case = report
    text = " ".join(_text(pdf).split())
    assert "Model prediction: lesion" in text and "probability 0.93" in text
    assert "lesion (the predicted class)" in text
    assert "uncalibrated softmax" in text
    assert "AUC 0.91" in text and "macro F1 0.84" in text
    assert "smoothgrad" in text and "integrated_gradients" in text
    # integrated_gradients fails the sanity check: its verdict says so first; smoothgrad passes it but its
    # scores carry no random-map baseline, so it is not trusted either
    assert "integrated_gradients: Verdict: DO NOT USE" in text and "Randomisation check FAILED" in text
    assert "smoothgrad: Verdict: USE WITH CAUTION" in text and "Randomisation check passed" in text
    assert "the strongest voxel lies in the lesion" in text
    assert DISCLAIMER in text
    assert input_sha256(case.scan) in text  # input hash in the provenance
    for absent in ("Patient name", "Patient ID"):
        assert absent not in text


def test_overlays_are_embedded_and_not_blank(report: tuple[Path, ReportCase]) -> None:
    pdf, _ = report
    reader = PdfReader(str(pdf))
    coloured = 0
    for page in reader.pages[1:]:
        for image in page.images:
            rgb = np.asarray(image.image.convert("RGB"))
            assert rgb.std() > 10, "blank figure"
            coloured += _colour_pixels(rgb) > 500
    assert coloured >= 2, "each method page must show a coloured overlay"


def test_pages_render_with_pdftoppm(report: tuple[Path, ReportCase], tmp_path: Path) -> None:
    pdf, _ = report
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm not installed (the pypdf image checks still ran)")
    from matplotlib.image import imread

    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "2", "-l", "2", str(pdf), str(tmp_path / "page")], check=True)
    rendered = sorted(tmp_path.glob("page*.png"))
    assert rendered
    rgb = (imread(rendered[0])[..., :3] * 255).astype(np.uint8)
    assert rgb.std() > 10 and _colour_pixels(rgb) > 200


def test_page_sizes(tmp_path: Path) -> None:
    volume, mask = phantom(linear=np.eye(3), shape=(40, 40, 40), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("gradcam",), failing=())
    sizes = {}
    for name in ("A4", "letter"):
        pdf = tmp_path / f"{name}.pdf"
        report_case([case.case_dir], pdf, scan=case.scan, page_size=name)
        box = PdfReader(str(pdf)).pages[0].mediabox
        sizes[name] = (round(float(box.width)), round(float(box.height)))
    assert sizes == {"A4": (595, 842), "letter": (612, 792)}


def test_identifiers_only_with_the_flag(tmp_path: Path) -> None:
    from pydicom import dcmread

    from medxai.testing.dicom_writer import dicom_representable, write_dicom_series

    volume, mask = phantom(linear=np.diag([0.9, 0.9, 2.0]), shape=(48, 48, 22), seed=5)
    series = tmp_path / "dicom"
    write_dicom_series(dicom_representable(volume.with_data(volume.data * 10)), series, modality="MR",
                       patient_name="Doe^Jane")
    for path in series.iterdir():
        dataset = dcmread(path)
        dataset.PatientID, dataset.StudyDate = "PID-77123", "20240131"
        dataset.save_as(path)
    scan = read_volume(series)
    case = write_report_case(tmp_path, volume=scan, mask=scan.with_data(mask.data), scan_path=series)
    plain, named = tmp_path / "plain.pdf", tmp_path / "named.pdf"
    report_case([case.case_dir], plain, scan=series)
    report_case([case.case_dir], named, scan=series, include_identifiers=True)
    plain_text, named_text = _text(plain), _text(named)
    for secret in ("Doe", "PID-77123", "20240131"):
        assert secret not in plain_text
        assert secret not in str(PdfReader(str(plain)).metadata)
    assert "Doe^Jane" in named_text and "PID-77123" in named_text and "20240131" in named_text
    assert "Modality" in plain_text and "MR" in plain_text  # acquisition facts are not identifiers


def test_heatmap_off_the_scan_grid_is_refused_without_output(tmp_path: Path) -> None:
    volume, mask = phantom(linear=np.eye(3), shape=(40, 40, 40), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("saliency",), failing=())
    shifted = volume.affine.copy()
    shifted[0, 3] += 5.0
    moved = read_volume(case.case_dir / "saliency.nii.gz")
    write_nifti(type(moved)(moved.data, shifted), case.case_dir / "saliency.nii.gz")
    with pytest.raises(InvalidInputError, match="saliency.nii.gz.*not the scan's"):
        report_case([case.case_dir], tmp_path / "out.pdf", scan=case.scan)
    assert not (tmp_path / "out.pdf").exists()


def test_model_that_did_not_make_the_explanations_is_refused(tmp_path: Path) -> None:
    volume, mask = phantom(linear=np.eye(3), shape=(40, 40, 40), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("saliency",), failing=())
    other = write_model_json(tmp_path / "other")
    text = (other / "medxai-model.json").read_text().replace("5" * 64, "6" * 64)
    (other / "medxai-model.json").write_text(text)
    with pytest.raises(InvalidInputError, match="not those that produced the explanations"):
        report_case([case.case_dir], tmp_path / "out.pdf", scan=case.scan, model_dir=other)


def test_calibrated_model_is_reported_as_calibrated(tmp_path: Path) -> None:
    volume, mask = phantom(linear=np.eye(3), shape=(40, 40, 40), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("saliency",), failing=())
    write_model_json(case.model_dir, calibration={"method": "temperature scaling"})
    pdf = tmp_path / "out.pdf"
    report_case([case.case_dir], pdf, scan=case.scan, model_dir=case.model_dir)
    text = " ".join(_text(pdf).split())
    assert "calibrated (temperature scaling)" in text and "uncalibrated" not in text


def test_a_scan_other_than_the_explained_one_is_refused(tmp_path: Path) -> None:
    volume, mask = phantom(linear=np.eye(3), shape=(40, 40, 40), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("saliency",), failing=())
    other = write_nifti(volume.with_data(volume.data + 1.0), tmp_path / "other.nii.gz")
    with pytest.raises(InvalidInputError, match="not the scan these heatmaps explain"):
        report_case([case.case_dir], tmp_path / "out.pdf", scan=other)


def test_a_scan_explained_already_read_is_checked_by_its_voxels(tmp_path: Path) -> None:
    import json

    from medxai.attribution.provenance import HASHED_VOXELS, volume_sha256
    from medxai.report.loader import load_case

    volume, mask = phantom(linear=np.eye(3), shape=(40, 40, 40), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("saliency",), failing=())
    record = json.loads((case.case_dir / "explanations.json").read_text())
    record["inputs"] = [{"channel": 0, "sha256": volume_sha256(read_volume(case.scan)), "hashed": HASHED_VOXELS}]
    (case.case_dir / "explanations.json").write_text(json.dumps(record))  # as a pipeline records it
    assert load_case([case.case_dir], scan=case.scan).case_id == "case_0007"
    with pytest.raises(InvalidInputError, match="not the scan these heatmaps explain"):
        load_case([case.case_dir], scan=read_volume(case.scan).with_data(volume.data + 1.0))


def test_failed_methods_are_named_with_their_reason(tmp_path: Path) -> None:
    import json

    volume, mask = phantom(linear=np.eye(3), shape=(40, 40, 40), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("saliency",), failing=())
    record = json.loads((case.case_dir / "explanations.json").read_text())
    record["failed_methods"] = {"occlusion": "MemoryError: out of memory"}
    (case.case_dir / "explanations.json").write_text(json.dumps(record))
    pdf = tmp_path / "out.pdf"
    report_case([case.case_dir], pdf, scan=case.scan)
    assert "occlusion produced no heatmap: MemoryError: out of memory" in " ".join(_text(pdf).split())


def test_segmentation_and_radiomics_sections(tmp_path: Path) -> None:
    import json

    from matplotlib.figure import Figure

    volume, mask = phantom(linear=np.diag([1.0, 1.0, 2.0]), shape=(40, 40, 20), seed=3)
    case = write_report_case(tmp_path, volume=volume, mask=mask, methods=("saliency",), failing=())
    segmentation = tmp_path / "seg" / case.case_dir.name
    segmentation.mkdir(parents=True)
    write_nifti(mask, segmentation / "mask.nii.gz")
    (segmentation / "segmentation.json").write_text(json.dumps({
        "case_id": case.case_dir.name, "method": "gradcam", "target": "lesion", "threshold": {"rule": "otsu"},
        "mask": {"voxels": int(mask.data.sum()), "volume_ml": 1.234}, "scores": {"dice": 0.81, "iou": 0.68}}))
    (case.case_dir / "features.csv").write_text(
        "case_id,region,distance_mm,original_shape_VoxelVolume,original_firstorder_Mean\n"
        f"{case.case_dir.name},lesion,0,1234,80.5\n{case.case_dir.name},shell,4,2500,60.25\n")
    study = tmp_path / "study"
    study.mkdir()
    (study / "auc.csv").write_text("region,distance_mm,classifier,auc,ci_low,ci_high\nlesion,0,logistic,0.71,0.6,0.8\n"
                                   "shell,4,logistic,0.83,0.75,0.9\n")
    figure = Figure(figsize=(3, 2))
    figure.add_subplot(1, 1, 1).plot([0, 4], [0.71, 0.83])
    figure.savefig(study / "auc_vs_distance.png")
    pdf = tmp_path / "out.pdf"
    report_case([case.case_dir, segmentation, study], pdf, scan=case.scan)
    text = " ".join(_text(pdf).split())
    assert "volume 1.23 mL" in text and "Dice 0.81" in text
    assert "shell" in text and "2.5" in text  # 2500 mm3 shown as 2.5 mL
    assert "best AUC 0.83 with the shell region at 4 mm" in text
