"""``medxai info`` and ``medxai convert`` through the real entry point."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from scipy.spatial.transform import Rotation

from medxai.io.nifti import write_nifti
from medxai.testing.dicom_mask_writer import write_rtstruct
from medxai.testing.dicom_writer import write_dicom_series, write_localizer
from medxai.volume import Volume

PATIENT = "Doe^Jane"
AFFINE = np.eye(4)
AFFINE[:3, :3] = Rotation.from_euler("xz", [15.0, -20.0], degrees=True).as_matrix() @ np.diag([0.75, 0.8, 2.5])
AFFINE[:3, 3] = (-40.0, 22.5, 13.0)


def _volume() -> Volume:
    data = np.random.default_rng(4).integers(-1000, 1500, size=(14, 12, 6)).astype(np.int16)
    return Volume(data, AFFINE)


def _study(folder):
    volume = _volume()
    write_dicom_series(volume, folder, series_description="CT chest", patient_name=PATIENT, series_number=3)
    write_localizer(folder, plane="sagittal", patient_name=PATIENT)
    return volume


def test_info_json_on_a_dicom_folder(cli, tmp_path):
    volume = _study(tmp_path / "study")
    result = cli("info", tmp_path / "study", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["format"] == "dicom"
    series = {s["number"]: s for s in payload["series"]}
    assert set(series) == {3, 99}
    main = series[3]
    assert main["is_volume"] and main["files"] == 6 and main["modality"] == "CT" and main["description"] == "CT chest"
    assert main["volume"]["shape"] == [14, 12, 6]
    assert np.allclose(main["volume"]["spacing_mm"], [0.75, 0.8, 2.5], atol=1e-5)
    assert np.abs(np.array(main["volume"]["affine"]) - AFFINE).max() < 1e-5
    assert main["volume"]["intensity"]["min"] == float(volume.data.min())
    assert main["volume"]["intensity"]["max"] == float(volume.data.max())
    assert not series[99]["is_volume"] and "single 2D image" in series[99]["problem"]
    assert "Doe" not in result.stdout and "Doe" not in result.stderr


def test_info_text_and_mask_summary(cli, tmp_path):
    volume = _study(tmp_path / "study")
    corners = volume.index_to_world(np.array([[1.5, 1.5, 2.0], [5.5, 1.5, 2.0], [5.5, 4.5, 2.0], [1.5, 4.5, 2.0]]))
    write_rtstruct(tmp_path / "rs.dcm", {"GTV": [corners]}, patient_name=PATIENT)
    result = cli("info", tmp_path / "study", "--mask", tmp_path / "rs.dcm", "--label", "GTV")
    assert result.exit_code == 0, result.stderr
    assert "shape 14 x 12 x 6" in result.stdout and "not a 3D volume: single 2D image" in result.stdout
    assert "mask rs.dcm: 12 voxels" in result.stdout  # i 2..5 x j 2..4 on slice 2
    json_result = json.loads(cli("info", tmp_path / "study", "--mask", tmp_path / "rs.dcm", "--json").stdout)
    assert json_result["mask"]["voxels"] == 12 and json_result["mask"]["roi_name"] == "GTV"
    assert abs(json_result["mask"]["volume_ml"] - 12 * 0.75 * 0.8 * 2.5 / 1000) < 1e-4


def test_info_on_nifti(cli, tmp_path):
    path = write_nifti(_volume(), tmp_path / "scan.nii.gz")
    payload = json.loads(cli("info", path, "--json").stdout)
    assert payload["format"] == "nifti" and payload["volume"]["shape"] == [14, 12, 6]
    assert payload["volume"]["orientation"] == _volume().orientation


def test_convert_folder(cli, tmp_path):
    volume = _study(tmp_path / "study")
    out = tmp_path / "nifti"
    result = cli("convert", tmp_path / "study", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / "3_CT_chest.nii.gz")
    assert "skipped series #99 'Localizer sagittal'" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["3_CT_chest.json", "3_CT_chest.nii.gz"]
    image = nib.load(str(out / "3_CT_chest.nii.gz"))
    assert np.abs(image.affine - AFFINE).max() < 1e-4
    assert np.array_equal(np.asanyarray(image.dataobj), volume.data)
    sidecar = json.loads((out / "3_CT_chest.json").read_text())
    assert sidecar["acquisition"]["Modality"] == "CT" and sidecar["acquisition"]["TransferSyntax"] == "Explicit VR Little Endian"
    assert sidecar["geometry"]["shape"] == [14, 12, 6]
    text = (out / "3_CT_chest.json").read_text()
    for identifier in ("Doe", "PatientName", "PatientID", "anon", "BirthDate", "AccessionNumber", "Institution"):
        assert identifier not in text


def test_convert_json_and_nifti_input(cli, tmp_path):
    path = write_nifti(_volume(), tmp_path / "case 01.nii.gz")
    result = cli("convert", path, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [w["name"] for w in payload["written"]] == ["case_01"] and payload["skipped"] == []
    assert np.abs(nib.load(payload["written"][0]["image"]).affine - AFFINE).max() < 1e-4


def test_help_lists_the_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0 and "info" in result.stdout and "convert" in result.stdout
    assert cli("convert", "--help").exit_code == 0
