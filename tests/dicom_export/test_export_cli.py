"""``medxai export-dicom`` through the real entry point: success, stable UIDs, and one-line refusals (exit 4)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom

from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

AFFINE = np.array([[0.0, 0.0, 2.5, -20.0], [-0.9, 0.0, 0.0, 30.0], [0.0, -1.1, 0.0, 40.0], [0, 0, 0, 1.0]])  # sagittal


def _series_and_scan(tmp_path: Path) -> Volume:
    data = np.arange(16 * 12 * 8, dtype=np.int16).reshape(16, 12, 8)
    write_dicom_series(Volume(data, AFFINE), tmp_path / "series", shuffle_seed=2)
    return read_volume(tmp_path / "series")


def _segment_case(folder: Path, grid: Volume) -> Path:
    folder.mkdir()
    mask = np.zeros(grid.shape, np.uint8)
    mask[4:9, 3:7, 2:5] = 1
    write_nifti(grid.with_data(mask), folder / "mask.nii.gz")
    (folder / "segmentation.json").write_text(json.dumps({"case_id": "c1", "status": "ok"}))
    return folder


def test_export_writes_seg_and_sr_with_stable_uids(tmp_path, cli):
    scan = _series_and_scan(tmp_path)
    case = _segment_case(tmp_path / "c1", scan)
    first = cli("export-dicom", case, "--source", tmp_path / "series", "-o", tmp_path / "out1")
    assert first.exit_code == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "out1").iterdir()) == ["seg.dcm", "sr.dcm"]
    assert "seg.dcm" in first.stdout
    again = cli("export-dicom", case, "--source", tmp_path / "series", "--out", tmp_path / "out2")
    assert again.exit_code == 0, again.stderr
    for name in ("seg.dcm", "sr.dcm"):
        uids = [pydicom.dcmread(tmp_path / out / name, stop_before_pixels=True).SOPInstanceUID for out in ("out1", "out2")]
        assert uids[0] == uids[1]  # a PACS receiving both keeps one instance


def _refused(result, *fragments: str) -> str:
    assert result.exit_code == 4, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medxai: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def test_mask_on_another_grid_is_refused_without_output(tmp_path, cli):
    scan = _series_and_scan(tmp_path)
    shifted = AFFINE.copy()
    shifted[:3, 3] += (0.5, 0.0, 0.0)  # half a voxel off
    case = _segment_case(tmp_path / "c1", Volume(np.zeros(scan.shape, np.uint8), shifted))
    result = cli("export-dicom", case, "--source", tmp_path / "series", "-o", tmp_path / "out")
    _refused(result, "mask.nii.gz", "is not the source series' grid")
    assert not (tmp_path / "out").exists()


def test_nifti_source_without_identifiers_is_refused(tmp_path, cli):
    scan = _series_and_scan(tmp_path)
    case = _segment_case(tmp_path / "c1", scan)
    write_nifti(scan, tmp_path / "scan.nii.gz")
    result = cli("export-dicom", case, "--source", tmp_path / "scan.nii.gz", "-o", tmp_path / "out")
    _refused(result, "scan.nii.gz", "not a DICOM series", "--patient-id, --patient-name, --modality")
    result = cli("export-dicom", case, "--source", tmp_path / "scan.nii.gz", "-o", tmp_path / "out", "--patient-id", "P1")
    line = _refused(result, "give --patient-name, --modality")
    assert "--patient-id" not in line
    assert not (tmp_path / "out").exists()


def test_identifiers_for_a_dicom_source_are_refused(tmp_path, cli):
    scan = _series_and_scan(tmp_path)
    case = _segment_case(tmp_path / "c1", scan)
    result = cli("export-dicom", case, "--source", tmp_path / "series", "-o", tmp_path / "out", "--patient-id", "P1")
    _refused(result, "--patient-id", "only for a NIfTI")
    assert not (tmp_path / "out").exists()


def test_case_folder_with_nothing_to_export_is_refused(tmp_path, cli):
    _series_and_scan(tmp_path)
    (tmp_path / "empty").mkdir()
    result = cli("export-dicom", tmp_path / "empty", "--source", tmp_path / "series", "-o", tmp_path / "out")
    _refused(result, "nothing to export")
    assert not (tmp_path / "out").exists()


def test_missing_heatmap_is_refused(tmp_path, cli):
    _series_and_scan(tmp_path)
    case = tmp_path / "c1"
    case.mkdir()
    (case / "explanations.json").write_text(json.dumps({"methods": {"gradcam": {"file": "gradcam.nii.gz", "sign": "positive"}}}))
    result = cli("export-dicom", case, "--source", tmp_path / "series", "-o", tmp_path / "out")
    _refused(result, "gradcam.nii.gz", "missing")


def test_an_empty_mask_exports_an_empty_segment(tmp_path, cli):
    scan = _series_and_scan(tmp_path)
    case = tmp_path / "negative"
    case.mkdir()
    write_nifti(scan.with_data(np.zeros(scan.shape, np.uint8)), case / "mask.nii.gz")  # a case predicted normal
    result = cli("export-dicom", case, "--source", tmp_path / "series", "-o", tmp_path / "out")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    seg = pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert seg.NumberOfFrames == scan.shape[2] and not seg.pixel_array.any()
