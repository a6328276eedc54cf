"""What a batch runs over: scan folders (NIfTI, NRRD, DICOM series), CSV manifests, nnU-Net datasets."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medxai.errors import InvalidInputError
from medxai.pipeline.inputs import discover_cases
from medxai.testing.dicom_writer import write_dicom_series, write_localizer
from medxai.volume import Volume


def oblique_volume(seed: int, shape=(12, 10, 6)) -> Volume:
    rng = np.random.default_rng(seed)
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-10, 4, 30]
    return Volume(data=rng.integers(0, 500, size=shape).astype(np.int16), affine=affine)


def write_nifti_file(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = oblique_volume(seed)
    nib.save(nib.Nifti1Image(volume.data, volume.affine), str(path))
    return path


def by_id(cases):
    return {case.case_id: case for case in cases}


def test_a_scan_folder_lists_files_and_dicom_series_recursively(tmp_path):
    root = tmp_path / "in"
    write_nifti_file(root / "a" / "scan.nii.gz", 1)
    write_nifti_file(root / "b" / "scan.nii.gz", 2)          # same name elsewhere: ids name the folders
    write_nifti_file(root / "top.nii", 3)
    (root / "top.json").write_text("{}")                      # sidecar: not a case
    (root / ".hidden.nii.gz").write_text("x")                 # hidden: not a case
    (root / "notes.dat").write_text("not an image")           # unsupported: listed, will fail
    series = root / "study" / "ct"
    write_dicom_series(oblique_volume(4), series, series_number=3)
    write_localizer(series)                                   # a non-3D series in the same folder
    two = root / "mr"
    write_dicom_series(oblique_volume(5), two, series_number=1, series_description="t1")
    write_dicom_series(oblique_volume(6), two, series_number=2, series_description="t2")

    cases = by_id(discover_cases(root))
    assert set(cases) == {"a_scan", "b_scan", "top", "notes_dat", "ct_s3", "ct_s99", "mr_s1", "mr_s2"}
    assert cases["a_scan"].image == root / "a" / "scan.nii.gz"
    assert cases["b_scan"].image == root / "b" / "scan.nii.gz"
    assert cases["ct_s3"].image == series and cases["ct_s3"].series_uid and cases["ct_s3"].skip_reason is None
    assert cases["ct_s99"].skip_reason                        # the localizer is listed, as skipped
    assert cases["mr_s1"].series_uid != cases["mr_s2"].series_uid
    assert all(case.mask is None for case in cases.values())


def test_case_ids_are_deterministic_whatever_the_listing_order(tmp_path):
    root = tmp_path / "in"
    for folder in ("z", "a", "m"):
        write_nifti_file(root / folder / "ct.nii.gz")
    first = [(c.case_id, c.image) for c in discover_cases(root)]
    assert first == [("a_ct", root / "a" / "ct.nii.gz"), ("m_ct", root / "m" / "ct.nii.gz"), ("z_ct", root / "z" / "ct.nii.gz")]
    assert [(c.case_id, c.image) for c in discover_cases(root)] == first


def test_a_single_dicom_series_folder_is_one_case(tmp_path):
    folder = tmp_path / "series"
    write_dicom_series(oblique_volume(7), folder)
    (case,) = discover_cases(folder)
    assert case.case_id == "series" and case.image == folder


def test_csv_manifest_paths_are_relative_to_the_csv_and_ids_made_safe(tmp_path):
    write_nifti_file(tmp_path / "images" / "one.nii.gz")
    write_nifti_file(tmp_path / "masks" / "one.nii.gz")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("case_id,image,mask,label\n"
                        "../evil/id,images/one.nii.gz,masks/one.nii.gz,lesion\n"
                        ",images/one.nii.gz,,normal\n"
                        "dup,images/missing.nii.gz,,\n"
                        "two,images/one.nii.gz;images/two.nii.gz,,\n")
    cases = discover_cases(manifest)
    assert [c.case_id for c in cases] == ["evil_id", "one", "dup", "two"]
    assert cases[3].image == tmp_path / "images" / "one.nii.gz"
    assert cases[3].extra_channels == (tmp_path / "images" / "two.nii.gz",)
    assert "/" not in cases[0].case_id and ".." not in cases[0].case_id
    assert cases[0].image == tmp_path / "images" / "one.nii.gz"
    assert cases[0].mask == tmp_path / "masks" / "one.nii.gz" and cases[0].label == "lesion"
    assert cases[1].mask is None and cases[1].label == "normal"
    assert cases[2].image == tmp_path / "images" / "missing.nii.gz"   # listed; fails when the case runs
    # a folder holding labels.csv is that manifest (the sample-data layout)
    assert [c.case_id for c in discover_cases(tmp_path)] == [c.case_id for c in cases]


def test_a_csv_without_an_image_column_is_refused(tmp_path):
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,scan\na,b.nii.gz\n")
    with pytest.raises(InvalidInputError, match=f"^{manifest}: CSV manifest needs an 'image' column"):
        discover_cases(manifest)


def test_nnunet_dataset_channels_and_labels(tmp_path):
    root = tmp_path / "Dataset001_Test"
    write_nifti_file(root / "imagesTr" / "brain_001_0000.nii.gz")
    write_nifti_file(root / "labelsTr" / "brain_001.nii.gz")
    write_nifti_file(root / "imagesTr" / "brain_002_0000.nii.gz")
    write_nifti_file(root / "imagesTr" / "brain_002_0001.nii.gz")
    write_nifti_file(root / "imagesTs" / "brain_101_0000.nii.gz")
    (root / "dataset.json").write_text("{}")
    cases = by_id(discover_cases(root))
    assert set(cases) == {"brain_001", "brain_002", "brain_101"}
    assert cases["brain_001"].mask == root / "labelsTr" / "brain_001.nii.gz"
    assert cases["brain_002"].mask is None and cases["brain_002"].extra_channels == (root / "imagesTr" / "brain_002_0001.nii.gz",)
    assert cases["brain_101"].mask is None and cases["brain_101"].image == root / "imagesTs" / "brain_101_0000.nii.gz"


def test_empty_or_missing_inputs_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="no such input"):
        discover_cases(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no scans found"):
        discover_cases(tmp_path / "empty")
