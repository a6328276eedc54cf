"""Bad inputs through the real CLI: one line on stderr naming the input and the problem, exit 4, and
no output left behind by ``convert``. Every input is built here from a clean series."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid

from medxai.io.nifti import write_nifti
from medxai.testing.dicom_mask_writer import write_rtstruct
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

AFFINE = np.array([[0.0, 0.0, 2.0, -20.0], [-0.9, 0.0, 0.0, 15.0], [0.0, -0.9, 0.0, 30.0], [0, 0, 0, 1]])


def _volume(slices: int = 6) -> Volume:
    return Volume(np.random.default_rng(0).integers(0, 500, size=(10, 9, slices)).astype(np.int16), AFFINE)


def _series(folder: Path, slices: int = 6) -> list[Path]:
    """A clean series; paths in slice order (file names too, to make targeted damage easy)."""
    return write_dicom_series(_volume(slices), folder, shuffle_seed=None)


def _edit(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    dataset = pydicom.dcmread(path)
    change(dataset)
    dataset.save_as(path)


def truncated_dicom(root: Path) -> Path:
    paths = _series(root / "scan")
    paths[2].write_bytes(paths[2].read_bytes()[:-40])  # the last element is the pixel data
    return root / "scan"


def truncated_header(root: Path) -> Path:
    paths = _series(root / "scan")
    paths[3].write_bytes(paths[3].read_bytes()[:700])  # ends before Rows/Columns
    return root / "scan"


def non_image_file(root: Path) -> Path:
    (root / "notes.txt").write_text("patient notes, not an image\n")
    return root / "notes.txt"


def folder_without_images(root: Path) -> Path:
    (root / "scan").mkdir()
    (root / "scan" / "notes.txt").write_text("hello\n")
    write_rtstruct(root / "scan" / "rs.dcm", {"GTV": [np.array([[0.0, 0, 0], [5, 0, 0], [5, 5, 0]])]})
    return root / "scan"


def missing_slice(root: Path) -> Path:
    _series(root / "scan")[3].unlink()
    return root / "scan"


def duplicate_slice(root: Path) -> Path:
    paths = _series(root / "scan")
    copy = root / "scan" / "copy.dcm"
    shutil.copy(paths[2], copy)
    _edit(copy, lambda d: setattr(d, "SOPInstanceUID", generate_uid(entropy_srcs=["copy"])))
    return root / "scan"


def gantry_tilt(root: Path) -> Path:
    for k, path in enumerate(_series(root / "scan")):
        def tilt(dataset: pydicom.Dataset, k: int = k) -> None:
            position = np.asarray(dataset.ImagePositionPatient, dtype=float)
            dataset.ImagePositionPatient = list(position + np.asarray(dataset.ImageOrientationPatient[3:], dtype=float) * 0.7 * k)
        _edit(path, tilt)
    return root / "scan"


def mixed_orientation(root: Path) -> Path:
    path = _series(root / "scan")[4]
    angle = np.deg2rad(10.0)

    def rotate(dataset: pydicom.Dataset) -> None:
        cosines = np.asarray(dataset.ImageOrientationPatient, dtype=float)
        row, column = cosines[:3], cosines[3:]
        rotated_row = np.cos(angle) * row + np.sin(angle) * column
        rotated_column = np.cos(angle) * column - np.sin(angle) * row
        dataset.ImageOrientationPatient = [*rotated_row, *rotated_column]
    _edit(path, rotate)
    return root / "scan"


def single_slice(root: Path) -> Path:
    _series(root / "scan", slices=1)
    return root / "scan"


def four_d(root: Path) -> Path:
    volume = _volume()
    write_dicom_series(volume, root / "scan" / "t1", series_uid="1.2.826.0.1.3680043.8.498.1")
    write_dicom_series(volume.with_data(volume.data * 2), root / "scan" / "t2", series_uid="1.2.826.0.1.3680043.8.498.1")
    return root / "scan"


def undecodable_compressed(root: Path) -> Path:
    path = _series(root / "scan")[1]

    def corrupt(dataset: pydicom.Dataset) -> None:
        dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
        dataset.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream" * 4])
    _edit(path, corrupt)
    return root / "scan"


def truncated_nifti(root: Path) -> Path:
    path = write_nifti(_volume(), root / "scan.nii.gz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def nan_volume(root: Path) -> Path:
    data = np.ones((8, 8, 8), dtype=np.float32)
    data[2, 3, 4] = np.nan
    return write_nifti(Volume(data, AFFINE), root / "scan.nii.gz")


def nifti_2d(root: Path) -> Path:
    nib.save(nib.Nifti1Image(np.zeros((16, 16), dtype=np.float32), np.eye(4)), str(root / "scan.nii.gz"))
    return root / "scan.nii.gz"


BAD_SCANS = {
    "truncated_dicom": (truncated_dicom, "cannot decode the pixel data of"),
    "truncated_header": (truncated_header, "truncated or unreadable DICOM file"),
    "non_image_file": (non_image_file, "unsupported file type"),
    "folder_without_images": (folder_without_images, "no DICOM image series found"),
    "missing_slice": (missing_slice, "(missing slice?)"),
    "duplicate_slice": (duplicate_slice, "duplicate slice position"),
    "gantry_tilt": (gantry_tilt, "gantry tilt"),
    "mixed_orientation": (mixed_orientation, "mixed slice orientations"),
    "single_slice": (single_slice, "single 2D image"),
    "four_d": (four_d, "4D series: 2 frames at each of 6 slice positions"),
    "undecodable_compressed": (undecodable_compressed, "(transfer syntax JPEG 2000 Image Compression (Lossless Only))"),
    "truncated_nifti": (truncated_nifti, "not a readable NIfTI file"),
    "nan_volume": (nan_volume, "1 NaN or infinite voxel values"),
    "nifti_2d": (nifti_2d, "expected a 3D volume, found 2D"),
}


def _assert_one_line_error(result, fragment: str, scan: Path) -> None:
    assert result.exit_code == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("medxai: error: ") and str(scan) in lines[0]
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("case", sorted(BAD_SCANS))
def test_convert_refuses_bad_scan_and_writes_nothing(cli, tmp_path, case):
    build, fragment = BAD_SCANS[case]
    scan = build(tmp_path)
    out = tmp_path / "converted"
    result = cli("convert", scan, "-o", out)
    _assert_one_line_error(result, fragment, scan)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case", sorted(BAD_SCANS))
def test_info_refuses_bad_scan(cli, tmp_path, case):
    build, fragment = BAD_SCANS[case]
    scan = build(tmp_path)
    _assert_one_line_error(cli("info", scan), fragment, scan)


def test_mask_on_a_mismatched_grid(cli, tmp_path):
    image = write_nifti(_volume(), tmp_path / "image.nii.gz")
    mask = write_nifti(Volume(np.ones((10, 9, 5), np.uint8), AFFINE), tmp_path / "mask.nii.gz")
    _assert_one_line_error(cli("info", image, "--mask", mask), "does not match the image grid", mask)


def test_mask_needs_a_single_series(cli, tmp_path):
    write_dicom_series(_volume(), tmp_path / "scan", series_description="a")
    write_dicom_series(_volume(5), tmp_path / "scan", series_description="b")
    mask = write_nifti(_volume(), tmp_path / "mask.nii.gz")
    _assert_one_line_error(cli("info", tmp_path / "scan", "--mask", mask), "2 3D series: a mask needs a single image series",
                           tmp_path / "scan")


def test_unknown_series_uid(cli, tmp_path):
    _series(tmp_path / "scan")
    _assert_one_line_error(cli("info", tmp_path / "scan", "--series", "1.2.3.4"), "no series with SeriesInstanceUID 1.2.3.4",
                           tmp_path / "scan")
