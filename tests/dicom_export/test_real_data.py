"""export-dicom on the shared real DICOM data: the sarcoma CT with its RTSTRUCT, and compressed transfer syntaxes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medxai.dicom_export.export import export_case
from medxai.io.nifti import write_nifti
from medxai.io.readers import read_mask, read_volume


def test_sarcoma_ct_seg_matches_the_rtstruct_and_the_nifti_mask(test_data, tmp_path, checks):
    folder = test_data / "ibsi_sts"
    series = folder / "dicom" / "STS_002" / "CT" / "image"
    nifti_mask = read_volume(folder / "nifti" / "STS_002" / "CT_mask.nii.gz")  # the mask as a user has it
    case = tmp_path / "STS_002"
    case.mkdir()
    write_nifti(nifti_mask, case / "mask.nii.gz")
    export_case(case, series, tmp_path / "out")
    back = checks.frames_on_grid(tmp_path / "out" / "seg.dcm", nifti_mask.affine, nifti_mask.shape, segment=1)
    assert nifti_mask.data.sum() > 1000
    assert checks.dice(back, nifti_mask.data) == 1.0
    ct = read_volume(series)
    rtstruct = read_mask(folder / "dicom" / "STS_002" / "CT" / "mask" / "RS.dcm", ct, label="GTV_Mass_CT")
    on_ct = checks.frames_on_grid(tmp_path / "out" / "seg.dcm", ct.affine, ct.shape, segment=1)
    assert checks.dice(on_ct, rtstruct.data) == 1.0
    source = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    for path in sorted((tmp_path / "out").iterdir()):
        assert checks.dciodvfy_errors(path) == [], path.name
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        assert dataset.StudyInstanceUID == source.StudyInstanceUID
        assert dataset.PatientID == source.PatientID
        assert "StudyDescription" not in dataset  # Type 3: not copied


def _with_frame_of_reference(series: Path, copy: Path) -> Path:
    """A copy of a series that lacks FrameOfReferenceUID (Type 1, which SEG and Parametric Map must reference),
    with one added; the pixel data stay in their compressed transfer syntax."""
    copy.mkdir()
    for path in sorted(series.iterdir()):
        dataset = pydicom.dcmread(path)
        dataset.FrameOfReferenceUID = "2.25.1234567890"
        dataset.save_as(copy / path.name)
    return copy


def test_series_without_frame_of_reference_is_refused(test_data, tmp_path, cli):
    folder = test_data / "dicom2nifti" / "generic" / "compressed_j2k"
    case = tmp_path / "case"
    case.mkdir()
    write_nifti(read_volume(folder / "001_ground_truth.nii.gz"), case / "mask.nii.gz")
    result = cli("export-dicom", case, "--source", folder / "001", "-o", tmp_path / "out")
    assert result.exit_code == 4 and "FrameOfReferenceUID" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("syntax", ["compressed_j2k", "compressed_jpegls", "compressed_rle", "compressed_jpeg"])
def test_compressed_series_on_a_reoriented_grid(test_data, tmp_path, checks, syntax):
    folder = test_data / "dicom2nifti" / "generic" / syntax
    series = _with_frame_of_reference(folder / "001", tmp_path / "series")
    assert pydicom.dcmread(next(series.iterdir())).file_meta.TransferSyntaxUID.is_compressed
    image = read_volume(folder / "001_ground_truth_reoriented.nii.gz")  # same voxels, axes reordered
    mask = image.with_data((image.data > np.percentile(image.data, 90)).astype(np.uint8))
    heatmap = image.with_data((image.data.astype(np.float32) / np.float32(7.0)))
    case = tmp_path / "case"
    case.mkdir()
    write_nifti(mask, case / "mask.nii.gz")
    write_nifti(heatmap, case / "smoothgrad.nii.gz")
    (case / "explanations.json").write_text(json.dumps({"methods": {"smoothgrad": {"sign": "positive"}}}))
    export_case(case, series, tmp_path / "out")
    assert checks.dice(checks.frames_on_grid(tmp_path / "out" / "seg.dcm", mask.affine, mask.shape, segment=1), mask.data) == 1.0
    back = checks.frames_on_grid(tmp_path / "out" / "pm-smoothgrad.dcm", heatmap.affine, heatmap.shape)
    np.testing.assert_array_equal(back, heatmap.data)
    for path in sorted((tmp_path / "out").iterdir()):
        assert checks.dciodvfy_errors(path) == [], path.name
