"""Series discovery in a messy folder: shuffled files, a localizer, non-image objects, several series."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medxai.errors import InvalidInputError
from medxai.io.convert import convert_scan
from medxai.io.dicom import is_dicom_file, read_dicom_volume
from medxai.io.dicom_series import discover_series
from medxai.testing.dicom_mask_writer import write_rtstruct
from medxai.testing.dicom_writer import write_dicom_series, write_localizer
from medxai.volume import Volume

PATIENT = "Doe^Jane"


def _volume(seed: int = 0, shape: tuple[int, int, int] = (12, 10, 6)) -> Volume:
    affine = np.array([[0.0, -0.9, 0.0, 30.0], [0.0, 0.0, 2.5, -12.0], [-1.2, 0.0, 0.0, 44.0], [0, 0, 0, 1]])
    data = np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.int16)
    return Volume(data=data, affine=affine)


@pytest.fixture
def messy_folder(tmp_path):
    """A 3D series (files shuffled, in a sub-folder), a localizer, an RTSTRUCT and non-DICOM files."""
    folder = tmp_path / "study"
    volume = _volume()
    write_dicom_series(volume, folder / "a" / "b", shuffle_seed=3, series_description="T1 axial", patient_name=PATIENT,
                       series_number=4)
    write_localizer(folder, plane="coronal", patient_name=PATIENT)
    points = volume.index_to_world(np.array([[2.0, 2.0, 1.0], [6.0, 2.0, 1.0], [6.0, 6.0, 1.0]]))
    write_rtstruct(folder / "rs.dcm", {"GTV": [points]}, patient_name=PATIENT)
    (folder / "README.txt").write_text("not dicom\n")
    (folder / "DICOMDIR").write_bytes(b"\0" * 200)
    return folder, volume


def test_discovery_lists_image_series_only(messy_folder):
    folder, volume = messy_folder
    series = discover_series(folder)
    assert len(series) == 2  # the RTSTRUCT, the text file and the fake DICOMDIR are not image series
    by_number = {s.number: s for s in series}
    main, localizer = by_number[4], by_number[99]
    assert main.is_volume and main.problem is None and main.n_files == volume.shape[2]
    assert main.description == "T1 axial" and main.modality == "CT"
    assert not localizer.is_volume and localizer.skippable and "single 2D image" in localizer.problem
    assert localizer.orientation == "coronal"
    assert not is_dicom_file(folder / "README.txt")
    assert is_dicom_file(folder / "rs.dcm")


def test_reader_picks_the_3d_series_and_ignores_order(messy_folder):
    folder, volume = messy_folder
    back = read_dicom_volume(folder)
    assert np.array_equal(back.data, volume.data)
    assert np.abs(back.affine - volume.affine).max() < 1e-4


def test_convert_writes_one_nifti_and_skips_the_localizer(messy_folder, tmp_path):
    folder, volume = messy_folder
    report = convert_scan(folder, tmp_path / "out")
    assert [w.name for w in report.written] == ["4_T1_axial"]
    assert len(report.skipped) == 1 and "Localizer" in report.skipped[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["4_T1_axial.json", "4_T1_axial.nii.gz"]
    image = nib.load(str(tmp_path / "out" / "4_T1_axial.nii.gz"))
    assert np.abs(image.affine - volume.affine).max() < 1e-4
    assert np.array_equal(np.asanyarray(image.dataobj), volume.data)
    sidecar = json.loads((tmp_path / "out" / "4_T1_axial.json").read_text())
    assert sidecar["modality"] == "CT" and sidecar["acquisition"]["SeriesDescription"] == "T1 axial"
    assert sidecar["geometry"]["shape"] == list(volume.shape)
    for item in (tmp_path / "out").iterdir():
        assert b"Doe" not in item.read_bytes() if item.suffix == ".json" else b"Doe" not in nib.load(str(item)).header.binaryblock


def test_several_3d_series_need_a_choice(tmp_path):
    first, second = _volume(1), _volume(2, shape=(8, 8, 5))
    write_dicom_series(first, tmp_path, series_description="first", patient_name=PATIENT, series_number=2)
    write_dicom_series(second, tmp_path, series_description="second", patient_name=PATIENT, series_number=3)
    with pytest.raises(InvalidInputError) as caught:
        read_dicom_volume(tmp_path)
    message = str(caught.value)
    uids = {s.description: s.uid for s in discover_series(tmp_path)}
    assert "2 3D series found" in message and uids["first"] in message and uids["second"] in message
    assert "Doe" not in message and "\n" not in message
    chosen = read_dicom_volume(tmp_path, series_uid=uids["second"])
    assert np.array_equal(chosen.data, second.data)
    report = convert_scan(tmp_path, tmp_path / "out")
    assert sorted(w.name for w in report.written) == ["2_first", "3_second"]


def test_series_names_fall_back_to_a_uid_hash_and_never_use_patient_tags(tmp_path):
    write_dicom_series(_volume(), tmp_path / "in", series_description="", patient_name=PATIENT)
    report = convert_scan(tmp_path / "in", tmp_path / "out")
    assert report.written[0].name == "1"  # SeriesNumber alone
    from medxai.io.convert import series_name

    assert series_name(None, "", "1.2.3").startswith("series_")
    hostile = series_name(None, "../../etc/passwd", "1.2.3")
    assert "/" not in hostile and not hostile.startswith(".")
    assert series_name(7, "T2 FLAIR", "1.2.3") == "7_T2_FLAIR"
