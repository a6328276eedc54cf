"""CT tissue masks used to clip peritumoral shells (lung, body)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.readers import read_mask, read_volume
from medxai.radiomics.shells import peritumoral_regions, shell_crop
from medxai.radiomics.tissue import tissue_mask
from medxai.volume import Volume


def _chest() -> tuple[Volume, np.ndarray, np.ndarray]:
    """Air around a soft-tissue body holding two air 'lungs' that reach the first and last slices."""
    shape = (80, 60, 12)
    i, j, _ = np.indices(shape)
    body = ((i - 40) / 36.0) ** 2 + ((j - 30) / 26.0) ** 2 <= 1
    lungs = (((i - 24) / 12.0) ** 2 + ((j - 30) / 16.0) ** 2 <= 1) | (((i - 56) / 12.0) ** 2 + ((j - 30) / 16.0) ** 2 <= 1)
    vessel = ((i - 24) ** 2 + (j - 30) ** 2) <= 2  # a 3-voxel soft-tissue vessel inside the left lung
    data = np.full(shape, -1000.0)
    data[body] = 40.0
    data[lungs] = -850.0
    data[vessel] = 40.0
    affine = np.diag([1.5, -1.5, 5.0, 1.0])  # flipped j, thick slices, k is cranio-caudal
    return Volume(data.astype(np.float32), affine), lungs, vessel


def test_lung_mask_keeps_lungs_and_vessels_not_outside_air() -> None:
    image, lungs, vessel = _chest()
    lung = tissue_mask(image, tissue="lung")
    assert lung[lungs].mean() > 0.99
    assert lung[vessel].all()  # closed over by the 5 mm closing
    outside = image.data < -900
    assert not lung[outside].any()


def test_body_mask_is_the_patient_with_holes_filled() -> None:
    image, lungs, _ = _chest()
    body = tissue_mask(image, tissue="body")
    assert body[lungs].all() and not body[0, 0].any()


def test_lung_clips_shells_of_a_real_nodule(test_data: Path) -> None:
    folder = test_data / "pyradiomics"
    image = read_volume(folder / "lung1_image.nrrd")
    lesion = read_mask(folder / "lung1_label.nrrd", image)
    lung = tissue_mask(image, tissue="lung", within=shell_crop(lesion, 8.0))
    volume_litres = np.count_nonzero(lung) * float(np.prod(image.spacing)) / 1e6
    assert 1.5 < volume_litres < 8.0
    regions = peritumoral_regions(lesion, distances_mm=(0, 8), tissue=lung)
    clipped = next(r for r in regions if r.name == "shell").on_grid()
    free = next(r for r in peritumoral_regions(lesion, distances_mm=(0, 8)) if r.name == "shell").on_grid()
    assert clipped.sum() > 0.5 * free.sum() and not (clipped & ~lung).any()


def test_bad_tissue_requests() -> None:
    image, _, _ = _chest()
    with pytest.raises(ConfigError):
        tissue_mask(image, tissue="liver")
    with pytest.raises(InvalidInputError, match="lung"):
        tissue_mask(image.with_data(np.full(image.shape, 40.0, np.float32)), tissue="lung")
