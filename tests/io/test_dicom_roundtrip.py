"""Geometry round trips: oblique, anisotropic and flipped volumes through NIfTI and through DICOM."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from scipy.spatial.transform import Rotation

from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.testing.dicom_writer import dicom_representable, write_dicom_series
from medxai.volume import Volume


def _affine(linear: np.ndarray, origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, origin
    return affine


OBLIQUE = Rotation.from_euler("xyz", [17.0, -23.0, 8.0], degrees=True).as_matrix()
SAGITTAL = Rotation.from_euler("z", 31, degrees=True).as_matrix() @ np.array([[0, 0, 2.0], [1.1, 0, 0], [0, 1.1, 0]])
# Right-handed grids (det > 0): DICOM keeps array order exactly.
RIGHT_HANDED = {
    "ras_isotropic": _affine(np.eye(3), (-10.0, 20.0, -30.0)),
    "anisotropic": _affine(np.diag([0.7, 0.9, 3.3]), (12.5, -7.25, 100.0)),
    "lps_flipped": _affine(np.diag([-0.8, -0.8, 2.0]), (50.0, 60.0, -70.0)),
    "oblique_anisotropic": _affine(OBLIQUE @ np.diag([0.7, 1.3, 2.9]), (12.3, -45.6, 78.9)),
    "coronal_slices": _affine(np.array([[1.0, 0, 0], [0, 0, 1.5], [0, -1.2, 0]]), (-5.0, 3.0, 40.0)),
    "sagittal_oblique": _affine(SAGITTAL, (1.0, 2.0, 3.0)),
}
# Left-handed grids (det < 0, e.g. LAS as FSL writes): same world geometry, slice order set by the normal.
LEFT_HANDED = {
    "las": _affine(np.diag([-1.1, 0.9, 2.5]), (5.0, 6.0, 7.0)),
    "oblique_mirrored": _affine(OBLIQUE @ np.diag([0.9, -1.0, 1.7]), (-3.0, 4.0, -5.0)),
}


def _integer_volume(affine: np.ndarray, seed: int = 0) -> Volume:
    data = np.random.default_rng(seed).integers(-1024, 3000, size=(19, 14, 7)).astype(np.int16)
    return Volume(data=data, affine=affine)


@pytest.mark.parametrize("name", sorted(RIGHT_HANDED) + sorted(LEFT_HANDED))
def test_nifti_round_trip_keeps_affine_and_data(tmp_path, name):
    volume = _integer_volume({**RIGHT_HANDED, **LEFT_HANDED}[name])
    back = read_volume(write_nifti(volume, tmp_path / f"{name}.nii.gz"))
    assert np.abs(back.affine - volume.affine).max() < 1e-4
    assert np.array_equal(back.data, volume.data)


@pytest.mark.parametrize("name", sorted(RIGHT_HANDED))
def test_dicom_round_trip_keeps_affine_and_array(tmp_path, name):
    volume = _integer_volume(RIGHT_HANDED[name], seed=1)
    assert np.linalg.det(volume.affine[:3, :3]) > 0
    paths = write_dicom_series(volume, tmp_path / "series", modality="MR", shuffle_seed=7)
    back = read_volume(tmp_path / "series")
    assert np.abs(back.affine - volume.affine).max() < 1e-4
    assert back.shape == volume.shape
    assert np.array_equal(back.data, volume.data)
    assert back.metadata["modality"] == "MR"
    # The writer really scrambled names and InstanceNumbers, so the reader cannot have relied on them.
    instance_numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in paths]
    assert instance_numbers != sorted(instance_numbers)
    assert [p.name for p in paths] != sorted(p.name for p in paths)


@pytest.mark.parametrize("name", sorted(LEFT_HANDED))
def test_dicom_left_handed_grid_is_equal_in_world_space(tmp_path, name):
    volume = _integer_volume(LEFT_HANDED[name], seed=2)
    write_dicom_series(volume, tmp_path / "series")
    back = read_volume(tmp_path / "series")
    # DICOM stores no slice order: the reader orders slices along the normal, i.e. k reversed here.
    flip_k = np.eye(4)
    flip_k[2, 2], flip_k[2, 3] = -1.0, volume.shape[2] - 1
    assert np.abs(back.affine - volume.affine @ flip_k).max() < 1e-4
    assert np.array_equal(back.data, volume.data[:, :, ::-1])
    assert np.linalg.det(back.affine[:3, :3]) > 0


def test_dicom_round_trip_of_float_values_through_rescale(tmp_path):
    values = np.random.default_rng(3).normal(0.0, 40.0, size=(12, 10, 6)).astype(np.float32)
    raw = Volume(values, RIGHT_HANDED["oblique_anisotropic"])
    volume = dicom_representable(raw, rescale_slope=0.01, rescale_intercept=-2.5)
    assert volume.data.dtype == np.float32
    assert np.abs(volume.data - raw.data).max() <= 0.005 + 1e-4  # quantised to half a slope step
    write_dicom_series(volume, tmp_path / "pet", modality="PT", rescale_slope=0.01, rescale_intercept=-2.5)
    back = read_volume(tmp_path / "pet")
    assert back.data.dtype == np.float32
    assert np.array_equal(back.data, volume.data)
    assert np.abs(back.affine - volume.affine).max() < 1e-4


def test_writer_refuses_values_the_rescale_cannot_hold_and_sheared_grids(tmp_path):
    floats = Volume(np.full((4, 4, 3), 0.5, dtype=np.float32), np.eye(4))
    with pytest.raises(ValueError, match="dicom_representable"):
        write_dicom_series(floats, tmp_path / "a")
    sheared = np.eye(4)
    sheared[0, 2] = 0.5
    with pytest.raises(ValueError, match="sheared"):
        write_dicom_series(Volume(np.zeros((4, 4, 3), np.int16), sheared), tmp_path / "b")
