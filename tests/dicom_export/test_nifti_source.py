"""export-dicom with a NIfTI scan as source: the scan written as a DICOM series on its exact grid, with only the
identifiers the user gave, and the SEG / Parametric Map / SR on that series."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy.spatial.transform import Rotation

from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume, reoriented_onto
from medxai.volume import Volume

SHAPE = (14, 11, 7)
OBLIQUE = Rotation.from_euler("xyz", [21.0, -13.0, 34.0], degrees=True).as_matrix()
GRIDS = {  # linear part (right-handed ones come back with the same affine; DICOM stores a left-handed one k-reversed)
    "oblique_anisotropic_flipped": OBLIQUE @ np.diag([-0.7, -1.3, 2.9]),
    "left_handed_oblique": OBLIQUE @ np.diag([0.9, -1.1, 1.7]),
}
IDENTIFIERS = ("--patient-id", "PX-1", "--patient-name", "ROE^RICHARD", "--modality", "CT")


def _grid(name: str) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = GRIDS[name], (12.5, -40.0, 65.0)
    return affine


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:9, 2:6, 1:4] = 1
    mask[12, 9, 6] = 1  # far from the box: catches a flip of any axis
    return mask


def _case(tmp_path: Path, scan: Volume) -> Path:
    """A NIfTI scan and a case folder on its grid: mask, one heatmap, scores."""
    write_nifti(scan, tmp_path / "scan.nii.gz")
    case = tmp_path / "case1"
    case.mkdir()
    write_nifti(scan.with_data(_mask()), case / "mask.nii.gz")
    heatmap = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
    write_nifti(scan.with_data(heatmap), case / "saliency.nii.gz")
    (case / "explanations.json").write_text(json.dumps({
        "case_id": "case1", "target": {"requested": "predicted", "resolved": {"class": "lesion"}},
        "methods": {"saliency": {"file": "saliency.nii.gz", "sign": "positive"}}}))
    (case / "scores.csv").write_text("case_id,method,infidelity,max_sensitivity,sanity_spearman,verdict,verdict_reason\n"
                                     "case1,saliency,0.25,0.5,0.125,trusted,all checks pass\n")
    return case


def _export(cli, tmp_path: Path, case: Path, out: str, *options: str):
    result = cli("export-dicom", case, "--source", tmp_path / "scan.nii.gz", "-o", tmp_path / out, *options)
    assert result.exit_code == 0, result.stderr
    return sorted((tmp_path / out).iterdir())


def _person_names(dataset: pydicom.Dataset) -> set[str]:
    names = set()
    dataset.walk(lambda ds, element: names.add(str(element.value)) if element.VR == "PN" and element.value else None)
    return names


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_nifti_scan_becomes_a_series_on_its_grid_with_the_seg_on_it(tmp_path, cli, checks, grid):
    data = np.random.default_rng(0).integers(-1024, 3000, size=SHAPE).astype(np.int16)
    scan = Volume(data, _grid(grid))
    case = _case(tmp_path, scan)
    files = _export(cli, tmp_path, case, "out", *IDENTIFIERS)
    names = [path.name for path in files]
    assert names == ["pm-saliency.dcm", *[f"scan-{k:04d}.dcm" for k in range(1, SHAPE[2] + 1)], "seg.dcm", "sr.dcm"]

    back = read_volume(tmp_path / "out")  # medxai's own DICOM reader picks the image series among the objects
    assert back.shape == SHAPE
    if np.linalg.det(scan.affine) > 0:
        assert np.abs(back.affine - scan.affine).max() < 1e-4
        assert back.data.dtype.kind == "i" and np.array_equal(back.data, data)
    else:  # same voxels in world space, k stored reversed
        assert np.array_equal(reoriented_onto(back, scan), data)
        assert np.abs(back.affine[:3, :3] @ np.diag([1, 1, -1]) - scan.affine[:3, :3]).max() < 1e-4

    assert checks.dice(checks.frames_on_grid(tmp_path / "out" / "seg.dcm", scan.affine, SHAPE, segment=1), _mask()) == 1.0
    heatmap = read_volume(case / "saliency.nii.gz").data
    assert np.array_equal(checks.frames_on_grid(tmp_path / "out" / "pm-saliency.dcm", scan.affine, SHAPE), heatmap)
    for path in files:
        assert checks.dciodvfy_errors(path) == [], path.name


def test_only_the_given_identifiers_appear_and_uids_are_stable(tmp_path, cli):
    scan = Volume(np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE), _grid("oblique_anisotropic_flipped"))
    case = _case(tmp_path, scan)
    first = _export(cli, tmp_path, case, "out1", *IDENTIFIERS)
    again = _export(cli, tmp_path, case, "out2", *IDENTIFIERS)
    study_uid = "1.2.826.0.1.3680043.2.1125.42"
    joined = _export(cli, tmp_path, case, "out3", *IDENTIFIERS, "--study-uid", study_uid)
    study_uids = set()
    for path in first:
        dataset = pydicom.dcmread(path)
        assert dataset.PatientID == "PX-1" and dataset.PatientName == "ROE^RICHARD", path.name
        assert _person_names(dataset) == {"ROE^RICHARD"}, path.name  # no other person (physician, operator...)
        for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                        "ReferringPhysicianName"):
            assert dataset.get(keyword, "") == "", (path.name, keyword)  # Type 2, empty: nothing made up
        for keyword in ("OtherPatientIDs", "PatientAge", "PatientWeight", "InstitutionName", "StudyDescription"):
            assert keyword not in dataset, (path.name, keyword)
        assert "scan.nii" not in str(dataset), path.name  # a file name may be a patient's name: never copied
        study_uids.add(dataset.StudyInstanceUID)
        uid = dataset.SOPInstanceUID
        assert uid == pydicom.dcmread(tmp_path / "out2" / path.name, stop_before_pixels=True).SOPInstanceUID
        assert uid != pydicom.dcmread(tmp_path / "out3" / path.name, stop_before_pixels=True).SOPInstanceUID
    assert len(study_uids) == 1 and [p.name for p in again] == [p.name for p in first]
    assert {pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID for path in joined} == {study_uid}


def test_float_scan_on_a_rescale_ladder_is_stored_exactly(tmp_path, cli):
    steps = np.random.default_rng(2).integers(0, 4000, size=SHAPE)
    data = (np.float32(-1024.5) + np.float32(0.25) * steps).astype(np.float32)
    scan = Volume(data, _grid("oblique_anisotropic_flipped"))
    _export(cli, tmp_path, _case(tmp_path, scan), "out", *IDENTIFIERS)
    first = pydicom.dcmread(tmp_path / "out" / "scan-0001.dcm")
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (0.25, float(data.min()))
    assert np.array_equal(read_volume(tmp_path / "out").data, data)


def _refused(result, *fragments: str) -> str:
    assert result.exit_code == 4, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medxai: error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_float_scan_that_would_be_quantised_is_refused(tmp_path, cli):
    data = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
    case = _case(tmp_path, Volume(data, _grid("oblique_anisotropic_flipped")))
    result = cli("export-dicom", case, "--source", tmp_path / "scan.nii.gz", "-o", tmp_path / "out", *IDENTIFIERS)
    _refused(result, "scan.nii.gz", "cannot be stored exactly")
    assert not (tmp_path / "out").exists()


def test_non_integer_mr_scan_is_refused(tmp_path, cli):
    data = np.full(SHAPE, 0.5, np.float32)
    case = _case(tmp_path, Volume(data, _grid("oblique_anisotropic_flipped")))
    result = cli("export-dicom", case, "--source", tmp_path / "scan.nii.gz", "-o", tmp_path / "out",
                 "--patient-id", "PX-1", "--patient-name", "ROE^RICHARD", "--modality", "MR")
    _refused(result, "scan.nii.gz", "DICOM MR image")
    assert not (tmp_path / "out").exists()


def test_mr_scan_is_written_as_mr_images(tmp_path, cli, checks):
    data = np.random.default_rng(4).integers(0, 4000, size=SHAPE).astype(np.uint16)
    case = _case(tmp_path, Volume(data, _grid("oblique_anisotropic_flipped")))
    _export(cli, tmp_path, case, "out", "--patient-id", "PX-1", "--patient-name", "ROE^RICHARD", "--modality", "mr")
    image = tmp_path / "out" / "scan-0003.dcm"
    assert pydicom.dcmread(image).SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert np.array_equal(read_volume(tmp_path / "out").data, data)
    assert checks.dciodvfy_errors(image) == []


def test_bad_identifier_is_refused(tmp_path, cli):
    case = _case(tmp_path, Volume(np.zeros(SHAPE, np.int16), _grid("oblique_anisotropic_flipped")))
    result = cli("export-dicom", case, "--source", tmp_path / "scan.nii.gz", "-o", tmp_path / "out",
                 "--patient-id", "PX-1", "--patient-name", "ROE^RICHARD", "--modality", "PT")
    _refused(result, "--modality", "CT, MR")
    result = cli("export-dicom", case, "--source", tmp_path / "scan.nii.gz", "-o", tmp_path / "out",
                 *IDENTIFIERS, "--study-uid", "not.a.uid")
    _refused(result, "--study-uid")
    assert not (tmp_path / "out").exists()
