"""medxai convert against dcm2niix (the PyPI ``dcm2niix`` executable) run here on the same series.

Both outputs are reoriented to the closest canonical (RAS) orientation, then affines must agree within
1e-3 mm and voxel values must be equal (float series: within float32 rounding).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from medxai.io.convert import convert_scan
from medxai.testing.dicom_enhanced_writer import write_enhanced_series
from medxai.testing.dicom_writer import dicom_representable, write_dicom_series, write_localizer
from medxai.volume import Volume


def _dcm2niix() -> str:
    candidate = Path(sys.executable).parent / "dcm2niix"
    found = str(candidate) if candidate.exists() else shutil.which("dcm2niix")
    if not found:
        pytest.skip("dcm2niix executable not installed (pip install dcm2niix)")
    return found


def _run_dcm2niix(folder: Path, out: Path) -> list[nib.Nifti1Image]:
    out.mkdir(parents=True)
    subprocess.run([_dcm2niix(), "-b", "n", "-z", "n", "-f", "%s_%j", "-o", str(out), str(folder)],
                   check=True, capture_output=True, text=True, timeout=120)
    images = [nib.load(str(p)) for p in sorted(out.glob("*.nii"))]
    return [image for image in images if len(image.shape) == 3 and min(image.shape) > 1]  # 3D volumes only


def _canonical(image: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    canonical = nib.as_closest_canonical(image)
    return canonical.get_fdata(), canonical.affine


def _compare_with_dcm2niix(folder: Path, tmp_path: Path) -> float:
    ours = convert_scan(folder, tmp_path / "medxai").written
    theirs = _run_dcm2niix(folder, tmp_path / "dcm2niix")
    assert len(ours) == len(theirs) == 1
    a, a_affine = _canonical(nib.load(str(ours[0].image)))
    b, b_affine = _canonical(theirs[0])
    assert a.shape == b.shape
    difference = float(np.abs(a_affine - b_affine).max())
    assert difference < 1e-3
    assert np.allclose(a, b, rtol=1e-6, atol=0), f"max voxel difference {np.abs(a - b).max()}"
    return difference


def _affine(linear: np.ndarray, origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, origin
    return affine


OBLIQUE = Rotation.from_euler("xyz", [17.0, -23.0, 8.0], degrees=True).as_matrix() @ np.diag([0.7, 1.3, 2.9])
WRITTEN = {
    "oblique_anisotropic": _affine(OBLIQUE, (12.3, -45.6, 78.9)),
    "lps_flipped": _affine(np.diag([-0.8, -0.8, 2.0]), (50.0, 60.0, -70.0)),
    "las_left_handed": _affine(np.diag([-1.1, 0.9, 2.5]), (5.0, 6.0, 7.0)),
    "coronal": _affine(np.array([[1.0, 0, 0], [0, 0, 1.5], [0, -1.2, 0]]), (-5.0, 3.0, 40.0)),
}


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_written_series_match_dcm2niix(tmp_path, name):
    data = np.random.default_rng(0).normal(100.0, 30.0, size=(18, 13, 7)).astype(np.float32)
    volume = dicom_representable(Volume(data, WRITTEN[name]), rescale_slope=0.5, rescale_intercept=-10.0)
    write_dicom_series(volume, tmp_path / "in", modality="MR", rescale_slope=0.5, rescale_intercept=-10.0)
    write_localizer(tmp_path / "in")  # a 2D image to both converters: medxai skips it
    _compare_with_dcm2niix(tmp_path / "in", tmp_path)


REAL = {
    "dicom2nifti_plain": "dicom2nifti/generic/anatomical/001",
    "dicom2nifti_jpeg2000": "dicom2nifti/generic/compressed_j2k/001",
    "dicom2nifti_jpeg_ls": "dicom2nifti/generic/compressed_jpegls/001",
    "dicom2nifti_oblique": "dicom2nifti/generic/anatomical/002_non_isotropic",
    "ibsi_ct": "ibsi_sts/dicom/STS_002/CT/image",
    "ibsi_mr": "ibsi_sts/dicom/STS_002/MR_T1/image",
    "ibsi_pet": "ibsi_sts/dicom/STS_002/PET/image",
    "ct_5_slices": "small_dicom/pydicom/dicomdirtests/98892001/CT5N",
    "ct_3_slices": "small_dicom/dcmqi/ct-3slice",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_series_match_dcm2niix(test_data, tmp_path, name):
    _compare_with_dcm2niix(test_data / REAL[name], tmp_path)


def test_enhanced_ct_matches_dcm2niix(test_data, tmp_path):
    folder = tmp_path / "enhanced"
    folder.mkdir()
    shutil.copy(test_data / "small_dicom" / "pydicom" / "eCT_Supplemental.dcm", folder)
    _compare_with_dcm2niix(folder, tmp_path)


def test_written_enhanced_oblique_mr_matches_dcm2niix(tmp_path):
    data = np.random.default_rng(1).normal(300.0, 60.0, size=(16, 11, 9)).astype(np.float32)
    volume = dicom_representable(Volume(data, WRITTEN["oblique_anisotropic"]), rescale_slope=0.25, rescale_intercept=-100.0)
    (tmp_path / "in").mkdir()
    write_enhanced_series(volume, tmp_path / "in" / "enhanced.dcm", rescale_slope=0.25, rescale_intercept=-100.0)
    _compare_with_dcm2niix(tmp_path / "in", tmp_path)
