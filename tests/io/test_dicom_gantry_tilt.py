"""Gantry-tilted stacks: refused by default, resampled onto the orthogonal grid only when asked."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medxai.io.dicom import read_dicom_volume
from medxai.errors import InvalidInputError
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

AFFINE = np.array([[-0.8, 0.0, 0.0, 40.0], [0.0, -0.9, 0.0, 25.0], [0.0, 0.0, 2.0, -60.0], [0, 0, 0, 1]])


@pytest.fixture
def tilted(tmp_path):
    """A series whose slice k is moved one row (0.9 mm) per slice along the column direction."""
    volume = Volume(np.random.default_rng(8).integers(100, 900, size=(12, 10, 5)).astype(np.int16), AFFINE)
    for path in write_dicom_series(volume, tmp_path / "tilted", shuffle_seed=None):
        dataset = pydicom.dcmread(path)
        k = round((float(dataset.ImagePositionPatient[2]) - AFFINE[2, 3]) / AFFINE[2, 2])
        column = np.asarray(dataset.ImageOrientationPatient[3:], dtype=float) * float(dataset.PixelSpacing[0])
        dataset.ImagePositionPatient = list(np.asarray(dataset.ImagePositionPatient, dtype=float) + column * k)
        dataset.save_as(path)
    return tmp_path / "tilted", volume


def test_tilted_series_is_refused_by_default(tilted):
    folder, _ = tilted
    with pytest.raises(InvalidInputError, match="gantry tilt .* 3.600 mm in-plane drift"):
        read_dicom_volume(folder)


def test_tilted_series_is_resampled_when_asked(tilted):
    folder, volume = tilted
    resampled = read_dicom_volume(folder, resample_tilt=True)
    assert np.abs(resampled.affine - AFFINE).max() < 1e-6  # orthogonal grid through the first slice
    expected = np.full(volume.shape, float(volume.data.min()), dtype=np.float32)
    for k in range(volume.shape[2]):
        expected[:, k:, k] = volume.data[:, : volume.shape[1] - k, k]  # slice k sits k rows further along j
    assert resampled.data.dtype == np.float32
    assert np.allclose(resampled.data, expected, atol=1e-3)
    assert [step.name for step in resampled.history] == ["read_dicom", "resample_gantry_tilt"]


def test_convert_resamples_only_with_the_option(cli, tilted, tmp_path):
    folder, _ = tilted
    refused = cli("convert", folder, "-o", tmp_path / "out")
    assert refused.exit_code == 4 and "--resample-tilt" in refused.stderr
    accepted = cli("convert", folder, "-o", tmp_path / "out", "--resample-tilt")
    assert accepted.exit_code == 0, accepted.stderr
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 1
