"""export-dicom on what the real commands write: explain, segment and report on an oblique DICOM series."""
from __future__ import annotations

import numpy as np
import pydicom

from medxai.io.readers import read_volume
from medxai.synthetic import default_grid, make_cohort, make_spec, render
from medxai.testing.dicom_writer import dicom_representable, write_dicom_series


def test_explain_segment_report_then_export(tmp_path, cli, checks):
    from medxai.models.train import train_model

    labels = make_cohort(tmp_path / "cohort", cases=6, seed=2, size=24, grid_mix=False)
    train_model(labels, tmp_path / "model", arch="tiny", task="classification", epochs=1, batch_size=4,
                spatial_size=24, device="cpu", seed=0)
    spec = make_spec(seed=11, task="presence", label="lesion", size=24)
    affine, shape = default_grid(spec, size=24, kind="oblique")
    write_dicom_series(dicom_representable(render(spec, affine=affine, shape=shape).image, rescale_slope=0.1),
                       tmp_path / "series", modality="MR", rescale_slope=0.1)
    out = tmp_path / "run"
    assert cli("explain", tmp_path / "model", tmp_path / "series", "-o", out, "-m", "saliency", "-m", "gradcam").exit_code == 0
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    segmented = cli("segment", tmp_path / "model", tmp_path / "series", "-o", out, "--method", "gradcam",
                    "--target", "lesion", "--negative-class", "none")
    assert segmented.exit_code == 0, segmented.stderr
    reported = cli("report", folder, "--scan", tmp_path / "series", "-o", folder / "report.pdf")
    assert reported.exit_code == 0, reported.stderr
    result = cli("export-dicom", folder, "--source", tmp_path / "series", "-o", tmp_path / "dicom")
    assert result.exit_code == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "dicom").iterdir())
    assert written == ["pm-gradcam.dcm", "pm-saliency.dcm", "report-pdf.dcm", "seg.dcm", "sr.dcm"]
    series = read_volume(tmp_path / "series")
    mask = read_volume(folder / "mask.nii.gz")
    assert mask.data.any()
    assert checks.dice(checks.frames_on_grid(tmp_path / "dicom" / "seg.dcm", mask.affine, mask.shape, segment=1), mask.data) == 1.0
    heatmap = read_volume(folder / "gradcam.nii.gz")
    np.testing.assert_array_equal(checks.frames_on_grid(tmp_path / "dicom" / "pm-gradcam.dcm", series.affine, series.shape),
                                  heatmap.data)
    pdf = pydicom.dcmread(tmp_path / "dicom" / "report-pdf.dcm")
    assert pdf.EncapsulatedDocument[: int(pdf.EncapsulatedDocumentLength)] == (folder / "report.pdf").read_bytes()
    for path in sorted((tmp_path / "dicom").iterdir()):
        assert checks.dciodvfy_errors(path) == [], path.name
