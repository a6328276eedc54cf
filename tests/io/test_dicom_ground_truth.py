"""The converter against ground-truth NIfTI, compared in world space (both reoriented to closest RAS).

dicom2nifti/: the upstream converter's expected NIfTI for a plain series, the same series in four
compressed transfer syntaxes, and an oblique anisotropic series. ibsi_sts/: the IBSI reference NIfTI of
the same CT, MR and PET DICOM series. small_dicom/: enhanced multi-frame, compressed and edge cases.
"""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medxai.errors import InvalidInputError
from medxai.io.convert import convert_scan
from medxai.io.dicom import read_dicom_volume
from medxai.io.dicom_series import discover_series
from medxai.io.readers import read_volume


def _canonical(image: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    canonical = nib.as_closest_canonical(image)
    return canonical.get_fdata(), canonical.affine


def _assert_same_in_world(ours: nib.Nifti1Image, truth: nib.Nifti1Image, *, affine_mm: float = 1e-4) -> None:
    a, a_affine = _canonical(ours)
    b, b_affine = _canonical(truth)
    assert a.shape == b.shape
    assert np.abs(a_affine - b_affine).max() < affine_mm
    assert np.allclose(a, b, rtol=1e-6, atol=0), f"max voxel difference {np.abs(a - b).max()}"


def _converted(folder, tmp_path) -> nib.Nifti1Image:
    report = convert_scan(folder, tmp_path / "out")
    assert len(report.written) == 1
    return nib.load(str(report.written[0].image))


DICOM2NIFTI = {
    "plain": "generic/anatomical/001",
    "jpeg2000": "generic/compressed_j2k/001",
    "jpeg_ls": "generic/compressed_jpegls/001",
    "rle": "generic/compressed_rle/001",
    "jpeg_lossless": "generic/compressed_jpeg/001",
    "oblique_anisotropic": "generic/anatomical/002_non_isotropic",
}


@pytest.mark.parametrize("case", sorted(DICOM2NIFTI))
def test_dicom2nifti_series_equal_ground_truth(test_data, tmp_path, case):
    folder = test_data / "dicom2nifti" / DICOM2NIFTI[case]
    truth = nib.load(str(folder.parent / f"{folder.name}_ground_truth.nii.gz"))
    _assert_same_in_world(_converted(folder, tmp_path), truth)


def test_dicom2nifti_single_slice_series_is_refused(test_data, tmp_path):
    # The upstream expectation needs 1-slice volumes allowed; medxai needs 3D, so it refuses clearly.
    folder = test_data / "dicom2nifti" / "ge" / "anatomical" / "001_single_slice"
    with pytest.raises(InvalidInputError, match="single 2D image"):
        read_dicom_volume(folder)
    with pytest.raises(InvalidInputError, match="no 3D series to convert"):
        convert_scan(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("modality", ["CT", "MR_T1", "PET"])
def test_ibsi_dicom_equals_reference_nifti(test_data, tmp_path, modality):
    ours = _converted(test_data / "ibsi_sts" / "dicom" / "STS_002" / modality / "image", tmp_path)
    truth = nib.load(str(test_data / "ibsi_sts" / "nifti" / "STS_002" / f"{modality}_image.nii.gz"))
    _assert_same_in_world(ours, truth)


def test_enhanced_multiframe_ct(test_data, tmp_path):
    source = test_data / "small_dicom" / "pydicom" / "eCT_Supplemental.dcm"
    header = pydicom.dcmread(source)
    volume = read_volume(source)  # one enhanced file is a whole series
    assert volume.shape == (512, 512, 2)
    # Geometry straight from the functional groups: IOP (-1,0,0, 0,1,0) so the normal is -z (LPS); 0.388672 mm
    # pixels; frames at z -159 and -149, so along the normal the first slice is z = -149 and k steps 10 mm down.
    expected = np.diag([0.388672, -0.388672, -10.0, 1.0])
    expected[:3, 3] = (-99.5, 301.5, -149.0)
    assert np.abs(volume.affine - expected).max() < 1e-4
    stored = header.pixel_array  # frame 1 is at z = -149, frame 2 at z = -159
    assert np.array_equal(volume.data[:, :, 0], stored[1].T.astype(np.int32) - 1024)
    assert np.array_equal(volume.data[:, :, 1], stored[0].T.astype(np.int32) - 1024)
    folder = tmp_path / "ect"
    folder.mkdir()
    shutil.copy(source, folder)
    assert convert_scan(folder, tmp_path / "out").written[0].shape == (512, 512, 2)


def test_enhanced_mr_without_frame_geometry_is_refused(test_data):
    with pytest.raises(InvalidInputError, match="no ImagePositionPatient"):
        read_volume(test_data / "small_dicom" / "pydicom" / "emri_small.dcm")


def test_compressed_syntaxes_decode_to_the_same_pixels(test_data, tmp_path):
    """MR_small in six encodings (explicit/implicit LE, big endian, RLE, JPEG 2000, JPEG-LS) as one series."""
    source = test_data / "small_dicom" / "pydicom"
    names = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
             "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
    reference = pydicom.dcmread(source / "MR_small.dcm").pixel_array
    for k, name in enumerate(names):
        dataset = pydicom.dcmread(source / name)
        dataset.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + 5.0 * k]
        dataset.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[name])
        dataset.InstanceNumber = 10 - k
        dataset.save_as(tmp_path / f"slice_{(k * 7) % 6}.dcm")
    volume = read_dicom_volume(tmp_path)
    assert volume.shape == (64, 64, 6)
    for k in range(6):
        assert np.array_equal(volume.data[:, :, k], reference.T), names[k]
    assert abs(volume.affine[2, 2] - 5.0) < 1e-6


def test_small_dicom_edge_cases(test_data):
    small = test_data / "small_dicom"
    # A real 5-slice CT, and the 2-image localizer series beside it skipped as mixed orientations.
    volume = read_dicom_volume(small / "pydicom" / "dicomdirtests" / "98892001")
    assert volume.shape == (16, 16, 5) and abs(volume.spacing[2] - 2.5) < 1e-6
    # Non-uniform slice positions (-99.5, 103.0, 104.3, 105.5 mm): a gap, not a volume.
    with pytest.raises(InvalidInputError, match="inconsistent slice spacing"):
        read_dicom_volume(small / "monai" / "CT_DICOM")
    # Siemens mosaics need de-mosaicing, which medxai does not do: refused, not misread.
    mosaic = discover_series(small / "dcm_qa_ts" / "In")
    assert len(mosaic) == 1 and not mosaic[0].is_volume and "mosaic" in mosaic[0].problem
    # An RTSTRUCT or single image passed as a scan.
    with pytest.raises(InvalidInputError, match="not an image"):
        read_volume(small / "pydicom" / "rtstruct.dcm")
    with pytest.raises(InvalidInputError, match="single 2D image"):
        read_volume(small / "pydicom" / "CT_small.dcm")
