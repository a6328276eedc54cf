"""Bad inputs through the real CLI: one line on stderr naming the input and the problem, exit 4, and
no output left behind by ``convert``. Every input is built here from a clean series. Inputs that could
hang or exhaust the machine if a check regressed (FIFO, huge headers) run in a subprocess with an
address-space limit and a timeout."""
from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
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


def _nifti_header(shape: tuple[int, ...], dtype: type = np.float32, affine: np.ndarray = AFFINE) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(affine, code=1)
    header["vox_offset"] = 352
    return header


def _raw_nifti(path: Path, header: nib.Nifti1Header, payload: bytes = b"") -> Path:
    raw = header.binaryblock + b"\0" * 4 + payload
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def _with_datatype(code: int) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        header = _nifti_header((4, 4, 4), np.uint8)
        header["datatype"] = code
        return _raw_nifti(root / "scan.nii", header, bytes(4**3 * 16))
    return build


def _with_affine_column(column: int, values: list[float]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        affine = AFFINE.copy()
        affine[:3, column] = values
        return _raw_nifti(root / "scan.nii.gz", _nifti_header((4, 4, 4), affine=affine), bytes(4**3 * 4))
    return build


def negative_dimension(root: Path) -> Path:
    header = _nifti_header((4, 4, 4))
    header["dim"][2] = -4
    return _raw_nifti(root / "scan.nii", header, bytes(256))


def int64_beyond_32_bits(root: Path) -> Path:
    image = nib.Nifti1Image(np.full((4, 4, 4), 2**40, dtype=np.int64), AFFINE, dtype=np.int64)
    nib.save(image, str(root / "scan.nii.gz"))
    return root / "scan.nii.gz"


def four_d_nifti(root: Path) -> Path:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), AFFINE), str(root / "scan.nii.gz"))
    return root / "scan.nii.gz"


def _metaimage(root: Path, data_file: str, extra: str = "") -> Path:
    (root / "scans").mkdir()
    (root / "scans" / "inside.raw").write_bytes(bytes(32))
    (root / "outside.raw").write_bytes(bytes(32))
    path = root / "scans" / "scan.mhd"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementType = MET_UCHAR\n"
                    f"ElementDataFile = {data_file}\n{extra}")
    return path


def detached_nrrd_outside(root: Path) -> Path:
    path = root / "scan.nhdr"
    path.write_text("NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 2\nencoding: raw\ndata file: /etc/passwd\n")
    return path


def complex_mha(root: Path) -> Path:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 4, 4), np.complex64)), str(root / "scan.mha"))
    return root / "scan.mha"


def dangling_symlink(root: Path) -> Path:
    os.symlink(root / "gone.nii.gz", root / "scan.nii.gz")
    return root / "scan.nii.gz"


def folder_named_nifti(root: Path) -> Path:
    (root / "scan.nii.gz").mkdir()
    return root / "scan.nii.gz"


def forged_number_of_frames(root: Path) -> Path:
    paths = _series(root / "scan")
    _edit(paths[2], lambda d: setattr(d, "NumberOfFrames", 2**31 - 1))
    return root / "scan"


BAD_SCANS.update({
    "bool_nifti": (_with_datatype(1), "voxel type binary is not supported"),
    "complex_nifti": (_with_datatype(32), "voxel type complex64 is not supported (complex voxels"),
    "rgb_nifti": (_with_datatype(128), "voxel type RGB is not supported"),
    "negative_dimension": (negative_dimension, "non-positive dimension (shape (4, -4, 4))"),
    "int64_beyond_32_bits": (int64_beyond_32_bits, "do not fit 32-bit integers"),
    "four_d_nifti": (four_d_nifti, "expected a 3D volume, found 4D with shape (4, 4, 4, 3)"),
    "zero_voxel_size": (_with_affine_column(1, [0.0, 0.0, 0.0]), "has a zero dimension"),
    "nan_affine": (_with_affine_column(0, [np.nan, 0.0, 0.0]), "holds NaN or infinite values"),
    "singular_affine": (_with_affine_column(2, list(AFFINE[:3, 0] * 2)), "the affine is singular"),
    "absurd_spacing": (_with_affine_column(2, [5000.0, 0.0, 0.0]), "is outside 0.001 .. 1000 mm"),
    "micron_spacing": (_with_affine_column(0, [0.0, 0.0002, 0.0]), "is outside 0.001 .. 1000 mm"),
    "mhd_absolute_data_file": (lambda root: _metaimage(root, "/etc/passwd"), "outside its folder ('/etc/passwd')"),
    "mhd_parent_data_file": (lambda root: _metaimage(root, "../outside.raw"), "outside its folder ('../outside.raw')"),
    "mhd_list_leaving_folder": (lambda root: _metaimage(root, "LIST 2D", "inside.raw\n../outside.raw\n"),
                                "outside its folder"),
    "nrrd_detached_outside": (detached_nrrd_outside, "outside its folder ('/etc/passwd')"),
    "complex_mha": (complex_mha, "found 2 components"),
    "dangling_symlink": (dangling_symlink, "dangling symbolic link"),
    "folder_named_nifti": (folder_named_nifti, "is a folder, expected a file"),
    "forged_number_of_frames": (forged_number_of_frames, "NumberOfFrames 2147483647 is more than a file of"),
})


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


def _limited() -> None:
    """In the child: at most 2 GiB of address space, so a regressed check fails instead of eating the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


def huge_header(root: Path) -> Path:
    """79 bytes of gzip whose header claims 1500^3 float32 (12.6 GiB)."""
    return _raw_nifti(root / "scan.nii.gz", _nifti_header((1500, 1500, 1500)))


def memory_bomb(root: Path) -> Path:
    """1024^3 float32 declared, in a file big enough that deflate could hold it: memory must refuse it."""
    return _raw_nifti(root / "scan.nii.gz", _nifti_header((1024, 1024, 1024)), os.urandom(5 * 2**20))


def fifo(root: Path) -> Path:
    os.mkfifo(root / "scan.nii.gz")
    return root / "scan.nii.gz"


def symlink_loop(root: Path) -> Path:
    os.symlink("scan.nii.gz", root / "scan.nii.gz")
    return root / "scan.nii.gz"


HOSTILE = {
    "huge_header": (huge_header, "header declares 13500000352 bytes of voxel data but the file holds at most"),
    "memory_bomb": (memory_bomb, "header declares 1024 x 1024 x 1024 voxels: the volume would need 4.0 GiB as float32"),
    "fifo": (fifo, "is a named pipe (FIFO), not a regular file"),
    "symlink_loop": (symlink_loop, "symbolic link loop"),
}


@pytest.mark.parametrize("command", ["info", "convert"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_scan_refused_in_a_bounded_subprocess(tmp_path, case, command):
    build, fragment = HOSTILE[case]
    scan = build(tmp_path)
    out = tmp_path / "converted"
    args = [sys.executable, "-m", "medxai", command, str(scan)] + (["-o", str(out)] if command == "convert" else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, preexec_fn=_limited, cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medxai: error: {scan}: ") and fragment in lines[0], result.stderr
    assert result.stdout == "" and not out.exists()


def test_anonymised_series_with_empty_sop_class_converts(cli, tmp_path):
    volume = _volume()
    for path in write_dicom_series(volume, tmp_path / "scan"):
        def blank(dataset: pydicom.Dataset) -> None:
            dataset.SOPClassUID = ""
            dataset.file_meta.MediaStorageSOPClassUID = ""
        _edit(path, blank)
    info = cli("info", tmp_path / "scan")
    assert info.exit_code == 0 and "shape 10 x 9 x 6" in info.stdout, info.stderr
    result = cli("convert", tmp_path / "scan", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    converted = nib.load(result.stdout.strip())
    assert np.array_equal(np.asanyarray(converted.dataobj), volume.data) and np.allclose(converted.affine, AFFINE, atol=1e-5)


def test_int64_nifti_converts_losslessly(cli, tmp_path):
    data = np.arange(10 * 9 * 6, dtype=np.int64).reshape(10, 9, 6) * 100 - 2000
    nib.save(nib.Nifti1Image(data, AFFINE, dtype=np.int64), str(tmp_path / "scan.nii.gz"))
    result = cli("convert", tmp_path / "scan.nii.gz", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    converted = nib.load(result.stdout.strip())
    assert converted.get_data_dtype() == np.int32 and np.array_equal(np.asanyarray(converted.dataobj), data)


def test_mask_with_permuted_flipped_axes_is_used(cli, tmp_path):
    image = write_nifti(_volume(), tmp_path / "image.nii.gz")
    labels = np.zeros((10, 9, 6), np.uint8)
    labels[2:5, 3:7, 1:4] = 1  # 36 voxels
    labels[8, 0, 5] = 2
    flipped_axes = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, 5], [0, 0, 0, 1]], dtype=float)  # m[a,b,c] = labels[b, c, 5-a]
    data = np.flip(np.transpose(labels, (2, 0, 1)), axis=0)
    mask = write_nifti(Volume(np.ascontiguousarray(data), AFFINE @ flipped_axes), tmp_path / "mask.nii.gz")
    result = cli("info", image, "--mask", mask, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["mask"]
    assert summary["voxels"] == 37 and summary["labels"] == [1, 2]
    assert "labels 1, 2 merged" in result.stderr and "mask.nii.gz" in result.stderr
