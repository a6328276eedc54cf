"""Enhanced multi-frame objects: geometry and rescale from functional groups, frames in any order."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from medxai.errors import InvalidInputError
from medxai.io.dicom_series import discover_series
from medxai.io.readers import read_volume
from medxai.testing.dicom_enhanced_writer import write_enhanced_series
from medxai.testing.dicom_writer import dicom_representable
from medxai.volume import Volume

AFFINE = np.eye(4)
AFFINE[:3, :3] = Rotation.from_euler("yz", [-14.0, 25.0], degrees=True).as_matrix() @ np.diag([0.9, 1.2, 3.0])
AFFINE[:3, 3] = (7.0, -60.0, 25.0)


@pytest.mark.parametrize("modality", ["MR", "CT"])
def test_oblique_enhanced_object_round_trips(tmp_path, modality):
    raw = Volume(np.random.default_rng(5).normal(200.0, 50.0, size=(16, 11, 9)).astype(np.float32), AFFINE)
    volume = dicom_representable(raw, rescale_slope=0.25, rescale_intercept=-100.0)
    path = write_enhanced_series(volume, tmp_path / "enhanced.dcm", modality=modality, shuffle_seed=3,
                                 rescale_slope=0.25, rescale_intercept=-100.0)
    back = read_volume(path)
    assert np.abs(back.affine - AFFINE).max() < 1e-4
    assert back.data.dtype == np.float32 and np.array_equal(back.data, volume.data)
    (info,) = discover_series(path)
    assert info.n_files == 1 and info.n_frames == 9 and info.orientation.startswith("oblique")


def test_enhanced_object_with_several_temporal_positions_is_4d(tmp_path):
    volume = Volume(np.random.default_rng(6).integers(0, 300, size=(8, 7, 5)).astype(np.int16), AFFINE)
    path = write_enhanced_series(volume, tmp_path / "dynamic.dcm", temporal_positions=3)
    with pytest.raises(InvalidInputError, match="4D series: 3 frames at each of 5 slice positions"):
        read_volume(path)
