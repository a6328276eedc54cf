"""Hostile and broken scans at library level: each refused from its header (before any voxel is
allocated) with one InvalidInputError naming the file, and the malformed-but-meaningful ones read exactly.
Every input is built here; expected values come from how the input was built, never from the reader."""
from __future__ import annotations

import gzip
import logging
import os
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medxai.errors import InvalidInputError
from medxai.io import preflight
from medxai.io.readers import read_mask, read_volume
from medxai.io.scan_info import describe_scan
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

# Oblique (rotated about two axes), anisotropic, left-handed: no identity shortcut can pass.
_ROTATION = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
    [[1.0, 0.0, 0.0], [0.0, 0.96, -0.28], [0.0, 0.28, 0.96]])
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = _ROTATION @ np.diag([0.7, 1.3, -2.5])
OBLIQUE[:3, 3] = [-40.0, 12.5, 7.25]
OBLIQUE_RIGHT_HANDED = OBLIQUE @ np.diag([1.0, 1.0, -1.0, 1.0])  # DICOM keeps slice order only for these


def _header(shape: tuple[int, ...], dtype: type = np.float32, affine: np.ndarray | None = None) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4) if affine is None else affine, code=1)
    header.set_qform(np.eye(4), code=0)
    header["vox_offset"] = 352
    return header


def _write_raw(path: Path, header: nib.Nifti1Header, payload: bytes) -> Path:
    """Header + 4-byte extension flag + payload, exactly as given (gzip when the name ends in .gz)."""
    raw = header.binaryblock + b"\0" * 4 + payload
    path.write_bytes(gzip.compress(raw, compresslevel=1) if path.name.endswith(".gz") else raw)
    return path


def _refused(path: Path, fragment: str, reader=read_volume) -> None:
    with pytest.raises(InvalidInputError) as caught:
        reader(path)
    assert caught.value.path == str(path) and fragment in caught.value.problem, caught.value.problem


def test_huge_header_refused_in_well_under_a_second(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "huge.nii.gz", _header((1500, 1500, 1500)), b"")
    assert path.stat().st_size < 120
    tracemalloc.start()
    start = time.perf_counter()
    _refused(path, "header declares 13500000352 bytes of voxel data")
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 8 * 2**20


def test_header_larger_than_memory_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    # A file that could hold its declared voxels (the ratio check passes) but memory cannot.
    path = _write_raw(tmp_path / "big.nii", _header((64, 64, 64)), bytes(64**3 * 4))
    monkeypatch.setattr(preflight, "available_memory", lambda: 3 * 2**19)
    _refused(path, "the volume would need 1.0 MiB as float32 (2.0 MiB to read), only 1.5 MiB of memory is available")


def test_available_memory_honours_the_address_space_limit(monkeypatch) -> None:
    used = preflight.psutil.Process().memory_info().vms  # a full test session may already map several GiB
    soft = used + 2**30
    monkeypatch.setattr(preflight.resource, "getrlimit", lambda _which: (soft, preflight.resource.RLIM_INFINITY))
    assert 0 < preflight.available_memory() <= 2**30 + 2**20


def test_available_memory_honours_the_container_limit(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "memory.max").write_text(f"{2**30}\n")
    (tmp_path / "memory.current").write_text(f"{2**28}\n")
    monkeypatch.setattr(preflight, "CGROUP_MEMORY", tmp_path)
    assert preflight.available_memory() <= 3 * 2**28


def test_gzip_holding_more_than_its_header_declares_reads_only_the_declared_bytes(tmp_path: Path) -> None:
    # The gzip stream inflates to 32 MiB; the header declares 8^3 float32: only those are read.
    data = np.arange(8**3, dtype=np.float32).reshape(8, 8, 8, order="F")
    path = _write_raw(tmp_path / "padded.nii.gz", _header((8, 8, 8)), data.tobytes(order="F") + bytes(32 * 2**20))
    tracemalloc.start()
    volume = read_volume(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(volume.data, data) and peak < 8 * 2**20


def test_uncompressed_file_shorter_than_declared_is_refused(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "short.nii", _header((16, 16, 16)), bytes(100))
    _refused(path, "header declares 16736 bytes of voxel data but the file holds 452 bytes")


def _unblock_fifo_later(path: Path, seconds: float = 5.0) -> None:
    """Should a regressed reader open the FIFO and block, open its writing end after ``seconds`` and close it:
    the reader then sees end-of-file and the test fails on its message instead of hanging the suite."""
    def release() -> None:
        for _attempt in range(4):  # a test may read the FIFO several times
            time.sleep(seconds)
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # nobody is reading it: nothing to release
    threading.Thread(target=release, daemon=True).start()


def _fifo(path: Path) -> None:
    os.mkfifo(path)
    _unblock_fifo_later(path)


@pytest.mark.parametrize("make, fragment", [
    (_fifo, "is a named pipe (FIFO), not a regular file"),
    (lambda path: os.symlink(path, path), "symbolic link loop"),
    (lambda path: os.symlink(path.parent / "gone.nii.gz", path), "dangling symbolic link"),
    (os.mkdir, "is a folder, expected a file"),
])
def test_special_paths_refused_without_opening(tmp_path: Path, make, fragment) -> None:
    path = tmp_path / "scan.nii.gz"
    make(path)
    _refused(path, fragment)
    _refused(path, fragment, lambda p: describe_scan(p))


def test_fifo_mask_refused_without_opening(tmp_path: Path) -> None:
    reference = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4))
    _fifo(tmp_path / "mask.nii.gz")
    _refused(tmp_path / "mask.nii.gz", "named pipe (FIFO)", lambda p: read_mask(p, reference))


def test_unreadable_file(tmp_path: Path, monkeypatch) -> None:
    path = _write_raw(tmp_path / "scan.nii", _header((4, 4, 4)), bytes(256))
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make access() answer as it would for a user
        monkeypatch.setattr(preflight.os, "access", lambda *_args: False)
    _refused(path, "permission denied")


def test_file_vanishing_after_the_checks(tmp_path: Path, monkeypatch) -> None:
    import medxai.io.nifti as nifti

    path = _write_raw(tmp_path / "scan.nii", _header((4, 4, 4)), bytes(256))

    def stat_then_vanish(target: Path):
        info = preflight.check_path(target)
        target.unlink()
        return info
    monkeypatch.setattr(nifti, "check_path", stat_then_vanish)
    _refused(path, "not a readable NIfTI file (FileNotFoundError")


@pytest.mark.parametrize("datatype, fragment", [
    (1, "voxel type binary is not supported (1-bit binary voxels: store masks as uint8)"),
    (32, "voxel type complex64 is not supported (complex voxels"),
    (1792, "voxel type complex128 is not supported"),
    (128, "voxel type RGB is not supported (colour/vector voxels"),
    (2304, "voxel type RGBA is not supported"),
    (1536, "voxel type float128 is not supported"),
    (9999, "unknown NIfTI datatype code 9999"),
])
def test_unsupported_nifti_datatypes(tmp_path: Path, datatype: int, fragment: str) -> None:
    header = _header((4, 4, 4), np.uint8)
    header["datatype"] = datatype
    _refused(_write_raw(tmp_path / "scan.nii", header, bytes(4**3 * 32)), fragment)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_64_bit_integers_narrowed_losslessly(tmp_path: Path, dtype: type) -> None:
    data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 1000).astype(dtype)  # 0 .. 119000: needs 32 bits
    nib.save(nib.Nifti1Image(data, OBLIQUE, dtype=dtype), str(tmp_path / "scan.nii.gz"))
    volume = read_volume(tmp_path / "scan.nii.gz")
    assert volume.data.dtype == np.uint32 and np.array_equal(volume.data, data)


def test_64_bit_values_beyond_32_bits_refused(tmp_path: Path) -> None:
    data = np.full((4, 4, 4), 2**40, dtype=np.int64)
    nib.save(nib.Nifti1Image(data, np.eye(4), dtype=np.int64), str(tmp_path / "scan.nii.gz"))
    _refused(tmp_path / "scan.nii.gz", "int64 voxel values 1099511627776 .. 1099511627776 do not fit 32-bit integers")


@pytest.mark.parametrize("dim, fragment", [
    ([3, 4, -4, 4], "non-positive dimension (shape (4, -4, 4))"),
    ([3, 4, 0, 4], "non-positive dimension"),
    ([9, 4, 4, 4], "not a NIfTI file (no valid NIfTI-1 or NIfTI-2 header"),
    ([4, 4, 4, 4, 3], "expected a 3D volume, found 4D with shape (4, 4, 4, 3)"),
])
def test_bad_dimensions(tmp_path: Path, dim: list[int], fragment: str) -> None:
    header = _header((4, 4, 4))
    header["dim"][: len(dim)] = dim
    _refused(_write_raw(tmp_path / "scan.nii", header, bytes(4**3 * 4 * 3)), fragment)


def _affine_with(column: int, values: list[float]) -> np.ndarray:
    affine = OBLIQUE.copy()
    affine[:3, column] = values
    return affine


@pytest.mark.parametrize("affine, fragment", [
    (_affine_with(1, [0.0, 0.0, 0.0]), "has a zero dimension"),
    (_affine_with(2, [np.nan, 0.0, 1.0]), "holds NaN or infinite values"),
    (_affine_with(0, [np.inf, 0.0, 0.0]), "holds NaN or infinite values"),
    (_affine_with(2, list(OBLIQUE[:3, 0] * 3)), "the affine is singular"),
    (_affine_with(2, [0.0, 0.0, 5000.0]), "voxel size 0.7 x 1.3 x 5000 mm is outside 0.001 .. 1000 mm"),
    (_affine_with(0, [0.0002, 0.0, 0.0]), "is outside 0.001 .. 1000 mm"),
])
def test_bad_geometry_refused_at_read_time(tmp_path: Path, affine: np.ndarray, fragment: str) -> None:
    _refused(_write_raw(tmp_path / "scan.nii", _header((4, 4, 4), affine=affine), bytes(4**3 * 4)), fragment)


def test_zero_qform_voxel_size_is_refused_not_guessed(tmp_path: Path) -> None:
    header = _header((4, 4, 4))
    header.set_sform(np.eye(4), code=0)
    header.set_qform(np.eye(4), code=1)
    header["pixdim"][2] = 0.0  # nibabel would silently make it 1 mm
    _refused(_write_raw(tmp_path / "scan.nii", header, bytes(4**3 * 4)), "voxel size 1 x 0 x 1 mm has a zero dimension")


def _metaimage(path: Path, data_file: str, extra: str = "") -> Path:
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementType = MET_UCHAR\n"
                    f"ElementSpacing = 1 1 1\nElementDataFile = {data_file}\n{extra}")
    return path


@pytest.mark.parametrize("data_file, extra", [
    ("/etc/passwd", ""),
    ("../outside.raw", ""),
    ("sub/../../outside.raw", ""),
    ("LIST 2D", "inside.raw\n/etc/passwd\n"),
    ("../slice%03d.raw 1 2 1", ""),
])
def test_metaimage_data_outside_its_folder(tmp_path: Path, data_file: str, extra: str) -> None:
    (tmp_path / "outside.raw").write_bytes(bytes(32))
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "inside.raw").write_bytes(bytes(16))
    _refused(_metaimage(tmp_path / "scans" / "scan.mhd", data_file, extra), "refers to a data file outside its folder")


def test_metaimage_data_symlinked_out_of_its_folder(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    os.symlink("/etc/passwd", tmp_path / "scans" / "data.raw")
    _refused(_metaimage(tmp_path / "scans" / "scan.mhd", "data.raw"), "refers to a data file outside its folder")


def test_detached_nrrd_outside_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "scan.nhdr"
    path.write_text("NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 2\nencoding: raw\ndata file: /etc/passwd\n")
    _refused(path, "refers to a data file outside its folder ('/etc/passwd')")


def test_metaimage_list_inside_its_folder_reads(tmp_path: Path) -> None:
    (tmp_path / "a.raw").write_bytes(bytes(range(16)))
    (tmp_path / "b.raw").write_bytes(bytes(range(16, 32)))
    volume = read_volume(_metaimage(tmp_path / "scan.mhd", "LIST 2D", "a.raw\nb.raw\n"))
    assert np.array_equal(volume.data, np.arange(32, dtype=np.uint8).reshape(2, 4, 4).transpose(2, 1, 0))


@pytest.mark.parametrize("array, is_vector, fragment", [
    (np.ones((4, 4, 4, 3), np.uint8), True, "found 3 components (vector of 8-bit unsigned integer"),
    (np.ones((4, 4, 4), np.complex64), False, "found 2 components"),
])
def test_itk_colour_and_complex_refused(tmp_path: Path, array: np.ndarray, is_vector: bool, fragment: str) -> None:
    path = tmp_path / "scan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=is_vector), str(path))
    _refused(path, fragment)


def test_itk_huge_header_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.mha"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4000 4000 4000\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    start = time.perf_counter()
    _refused(path, "header declares 4000 x 4000 x 4000 voxels: the volume would need 238.4 GiB as float32")
    assert time.perf_counter() - start < 0.5


def test_itk_zero_spacing_refused(tmp_path: Path) -> None:
    (tmp_path / "a.raw").write_bytes(bytes(32))
    path = _metaimage(tmp_path / "zero.mhd", "a.raw").with_name("zero.mhd")
    path.write_text(path.read_text().replace("ElementSpacing = 1 1 1", "ElementSpacing = 1 0 1"))
    _refused(path, "voxel size 1 x 0 x 1 mm has a zero dimension")


def test_itk_int64_narrowed_losslessly(tmp_path: Path) -> None:
    data = np.arange(-40, 24, dtype=np.int64).reshape(4, 4, 4)
    sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / "scan.nrrd"))
    volume = read_volume(tmp_path / "scan.nrrd")
    assert volume.data.dtype == np.int8 and np.array_equal(volume.data, data.transpose(2, 1, 0))


def _anonymised_series(folder: Path) -> tuple[Volume, list[Path]]:
    volume = Volume(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) * 7 - 100, OBLIQUE_RIGHT_HANDED)
    paths = write_dicom_series(volume, folder)
    for path in paths:  # what anonymisers do: the SOP class UIDs blanked, the pixels kept
        dataset = pydicom.dcmread(path)
        dataset.SOPClassUID = ""
        dataset.file_meta.MediaStorageSOPClassUID = ""
        dataset.save_as(path)
    return volume, paths


def test_dicom_with_empty_sop_class_reads(tmp_path: Path) -> None:
    volume, _paths = _anonymised_series(tmp_path / "ct")
    read = read_volume(tmp_path / "ct")
    assert np.array_equal(read.data, volume.data) and np.allclose(read.affine, OBLIQUE_RIGHT_HANDED, atol=1e-6)
    description = describe_scan(tmp_path / "ct")
    assert description["series"][0]["is_volume"] and "SOPClass" not in description["series"][0]["acquisition"]


def test_dicom_forged_number_of_frames_refused(tmp_path: Path) -> None:
    _volume, paths = _anonymised_series(tmp_path / "ct")
    dataset = pydicom.dcmread(paths[0])
    dataset.NumberOfFrames = 2**31 - 1
    dataset.save_as(paths[0])
    with pytest.raises(InvalidInputError) as caught:
        read_volume(tmp_path / "ct")
    assert caught.value.path == str(paths[0]) and "NumberOfFrames 2147483647 is more than a file of" in caught.value.problem


def test_dicom_larger_than_memory_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    _anonymised_series(tmp_path / "ct")
    monkeypatch.setattr(preflight, "available_memory", lambda: 1000)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda _self: pytest.fail("pixels decoded")))
    _refused(tmp_path / "ct", "header declares 6 x 5 x 4 voxels")


def _labels_on(reference: np.ndarray) -> np.ndarray:
    labels = np.zeros(reference.shape, np.uint8)
    labels[1:4, 2:5, 1:3] = 1
    labels[4, 0, 4] = 2
    labels[0, 6, 0] = 2
    return labels


def _permuted_flipped(labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored with axes (k, i, j) and the middle one reversed: m[a, b, c] = labels[n-1-b, c, a]."""
    n = labels.shape[0]
    data = np.flip(np.transpose(labels, (2, 0, 1)), axis=1)
    index_map = np.array([[0, -1, 0, n - 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return np.ascontiguousarray(data), affine @ index_map


def test_mask_with_permuted_and_flipped_axes_is_reoriented_exactly(tmp_path: Path) -> None:
    reference = Volume(np.zeros((6, 7, 5), np.int16), OBLIQUE)
    labels = _labels_on(reference.data)
    data, affine = _permuted_flipped(labels, OBLIQUE)
    assert data.shape == (5, 6, 7) and data[2, 6 - 1 - 3, 4] == labels[3, 4, 2]  # the construction itself
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "mask.nii.gz"))
    mask = read_mask(tmp_path / "mask.nii.gz", reference, label=1)
    assert np.array_equal(mask.data, (labels == 1).astype(np.uint8))
    assert np.allclose(mask.affine, OBLIQUE, atol=1e-5) and mask.shape == reference.shape
    assert mask.history[-1].name == "reorient_mask"


def test_mask_on_a_truly_different_grid_is_refused(tmp_path: Path) -> None:
    reference = Volume(np.zeros((6, 7, 5), np.int16), OBLIQUE)
    data, affine = _permuted_flipped(_labels_on(reference.data), OBLIQUE)
    shifted = affine.copy()
    shifted[:3, 3] += OBLIQUE[:3, 0] * 0.5  # half a voxel off: no permutation makes it the same grid
    nib.save(nib.Nifti1Image(data, shifted), str(tmp_path / "mask.nii.gz"))
    _refused(tmp_path / "mask.nii.gz", "does not match the image grid", lambda p: read_mask(p, reference))


def test_several_labels_are_merged_with_a_warning(tmp_path: Path, caplog) -> None:
    reference = Volume(np.zeros((6, 7, 5), np.int16), OBLIQUE)
    labels = _labels_on(reference.data)
    nib.save(nib.Nifti1Image(labels, OBLIQUE), str(tmp_path / "brats_seg.nii.gz"))
    with caplog.at_level(logging.WARNING, logger="medxai.io.readers"):
        mask = read_mask(tmp_path / "brats_seg.nii.gz", reference)
    assert np.array_equal(mask.data, (labels > 0).astype(np.uint8)) and mask.metadata["labels"] == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "brats_seg.nii.gz" in warnings[0] and "labels 1, 2 merged" in warnings[0]


def test_single_label_mask_merges_nothing(tmp_path: Path, caplog) -> None:
    reference = Volume(np.zeros((6, 7, 5), np.int16), OBLIQUE)
    labels = (_labels_on(reference.data) == 1).astype(np.uint8)
    nib.save(nib.Nifti1Image(labels, OBLIQUE), str(tmp_path / "mask.nii.gz"))
    with caplog.at_level(logging.WARNING, logger="medxai.io.readers"):
        mask = read_mask(tmp_path / "mask.nii.gz", reference)
    assert mask.metadata["labels"] == [1] and not caplog.records and mask.history == reference.history


def test_empty_file_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.nii.gz").write_bytes(gzip.compress(b""))
    _refused(tmp_path / "empty.nii.gz", "not a readable NIfTI file (WrapStructError")


def test_odd_extension_reads_without_a_warning_on_stderr(tmp_path: Path) -> None:
    header = _header((4, 4, 4), np.uint8)
    header["vox_offset"] = 352 + 32
    extension = np.array([24, 0], dtype="<i4").tobytes() + bytes(16) + bytes(8)  # size 24: not a multiple of 16
    raw = header.binaryblock + b"\x01\0\0\0" + extension + bytes(range(64))
    (tmp_path / "scan.nii").write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nibabel's UserWarning escaping the reader would fail here
        volume = read_volume(tmp_path / "scan.nii")
    assert np.array_equal(volume.data, np.arange(64, dtype=np.uint8).reshape(4, 4, 4, order="F"))


@pytest.mark.parametrize("slope, intercept", [(np.inf, 0.0), (-np.inf, 0.0), (2.0, np.nan), (2.0, np.inf)])
def test_non_finite_scaling_refused(tmp_path: Path, slope: float, intercept: float) -> None:
    header = _header((4, 4, 4), np.int16)
    header["scl_slope"], header["scl_inter"] = slope, intercept
    _refused(_write_raw(tmp_path / "scan.nii", header, bytes(4**3 * 2)), "invalid intensity scaling")


def test_extension_larger_than_memory_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    header = _header((4, 4, 4))
    header["vox_offset"] = 352 + 2**20  # a 1 MiB extension declared before the voxels
    path = _write_raw(tmp_path / "scan.nii", header, bytes(2**20 + 4**3 * 4))
    monkeypatch.setattr(preflight, "available_memory", lambda: 2**19)
    _refused(path, "only 524288 bytes of memory is available")


@pytest.mark.parametrize("field, index, value", [("pixdim", 0, 0.0), ("pixdim", 2, -3.0)])
def test_headers_nibabel_fixes_read_quietly_with_its_affine(tmp_path: Path, caplog, field: str, index: int,
                                                            value: float) -> None:
    """qfac 0 and a negative pixdim are common in old files: read with nibabel's fixed qform, nothing logged."""
    header = _header((4, 4, 4))
    header.set_sform(np.eye(4), code=0)
    header.set_qform(np.diag([2.0, 3.0, 4.0, 1.0]), code=1)
    header[field][index] = value
    with caplog.at_level(logging.DEBUG):
        volume = read_volume(_write_raw(tmp_path / "scan.nii", header, bytes(4**3 * 4)))
    assert np.allclose(volume.affine, np.diag([2.0, 3.0, 4.0, 1.0])) and not caplog.records
