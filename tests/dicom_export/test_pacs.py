"""export-dicom --send against a real Orthanc (Debian orthanc + orthanc-dicomweb) on a loopback port (the
``orthanc`` fixture of conftest.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medxai.dicom_export.export import export_case
from medxai.dicom_export.send import SendError, send_dicomweb
from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

from .conftest import free_port as _free_port, get_json as _get

def _case(tmp_path: Path) -> tuple[Path, Path]:
    affine = np.array([[0.0, 0.0, 2.5, -20.0], [-0.9, 0.0, 0.0, 30.0], [0.0, -1.1, 0.0, 40.0], [0, 0, 0, 1.0]])
    write_dicom_series(Volume(np.arange(16 * 12 * 8, dtype=np.int16).reshape(16, 12, 8), affine), tmp_path / "series",
                       shuffle_seed=1, patient_name="Doe^Jane")
    grid = read_volume(tmp_path / "series")
    case = tmp_path / "case"
    case.mkdir()
    mask = np.zeros(grid.shape, np.uint8)
    mask[4:9, 3:7, 2:5] = 1
    write_nifti(grid.with_data(mask), case / "mask.nii.gz")
    write_nifti(grid.with_data(np.linspace(-1, 1, mask.size, dtype=np.float32).reshape(mask.shape)), case / "saliency.nii.gz")
    (case / "explanations.json").write_text(json.dumps({"methods": {"saliency": {"sign": "positive"}}}))
    (case / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    return case, tmp_path / "series"


def test_round_trip_lands_in_the_source_study_once(orthanc, tmp_path, cli):
    base = orthanc()
    case, series = _case(tmp_path)
    study = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True).StudyInstanceUID
    target = base.replace("http://", "dicomweb://") + "/dicom-web"
    first = cli("export-dicom", case, "--source", series, "-o", tmp_path / "out", "--send", target)
    assert first.exit_code == 0, first.stderr
    assert "sent 4 instance(s); 0 already in the PACS" in first.stdout
    instances = _get(f"{base}/dicom-web/studies/{study}/instances")
    modalities = sorted(item["00080060"]["Value"][0] for item in instances)  # type: ignore[union-attr]
    assert modalities == ["DOC", "OT", "SEG", "SR"]  # PDF, parametric map, SEG, SR: all in the source study
    sop_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in (tmp_path / "out").iterdir()}
    assert {item["00080018"]["Value"][0] for item in instances} == sop_uids  # type: ignore[union-attr]
    again = cli("export-dicom", case, "--source", series, "-o", tmp_path / "out", "--send", target)
    assert again.exit_code == 0, again.stderr
    assert "sent 0 instance(s); 4 already in the PACS" in again.stdout
    assert len(_get(f"{base}/instances")) == 4  # type: ignore[arg-type]


def test_a_refusing_pacs_fails_with_its_reason_and_keeps_the_files(orthanc, tmp_path, cli):
    base = orthanc(refuse=True)
    case, series = _case(tmp_path)
    result = cli("export-dicom", case, "--source", series, "-o", tmp_path / "out", "--send", f"{base}/dicom-web")
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not keep 4 of 4 instance(s)" in lines[0], result.stderr
    assert "the files stay in" in lines[0] and "127.0.0.1" in lines[0]
    assert _get(f"{base}/instances") == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pm-saliency.dcm", "report-pdf.dcm", "seg.dcm", "sr.dcm"]


def test_an_unreachable_pacs_fails_and_keeps_the_files(tmp_path):
    case, series = _case(tmp_path)
    written = export_case(case, series, tmp_path / "out")
    with pytest.raises(SendError, match="did not store .* the files stay in"):
        send_dicomweb(written, f"dicomweb://127.0.0.1:{_free_port()}/dicom-web", attempts=1, timeout_s=5)
    assert all(path.is_file() for path in written) and len(written) == 4


def test_a_malformed_pacs_address_is_refused_before_any_work(tmp_path, cli):
    case, series = _case(tmp_path)
    result = cli("export-dicom", case, "--source", series, "-o", tmp_path / "out", "--send", "ftp://host/x")
    assert result.exit_code == 4 and "not a DICOMweb address" in result.stderr
    assert not (tmp_path / "out").exists()
