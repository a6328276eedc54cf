"""``--refine``: a weakly-supervised mask re-drawn from the image around the map's peak."""
from __future__ import annotations

import numpy as np
import pytest

from medxai.errors import ConfigError, InvalidInputError
from medxai.segmentation.overlap import dice
from medxai.segmentation.refine import refine_mask
from medxai.volume import Volume

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _scene() -> tuple[Volume, Volume, Volume, np.ndarray]:
    """A bright sphere and a brighter distractor; a blurry map peaking 2 voxels off the sphere's centre."""
    grid = np.indices((40, 40, 20)).astype(float)
    centre, other = np.array([15.0, 15.0, 10.0]), np.array([32.0, 32.0, 10.0])
    scale = np.array([1.0, 1.0, 2.0])[:, None, None, None]
    distance = np.sqrt((((grid - centre[:, None, None, None]) * scale) ** 2).sum(0))
    lesion = distance <= 6.0
    far = np.sqrt((((grid - other[:, None, None, None]) * scale) ** 2).sum(0)) <= 3.0
    rng = np.random.default_rng(0)
    image = 100.0 + 80.0 * lesion + 150.0 * far + rng.normal(0, 5, lesion.shape)
    heat = np.exp(-np.sum(((grid - (centre + [2, 0, 0])[:, None, None, None]) * scale) ** 2, axis=0) / (2 * 4.0**2))
    heat = heat + 0.6 * far  # the map also lights up the distractor, less than the lesion
    mask = heat > 0.5 * heat.max()
    return Volume(image, AFFINE), Volume(heat.astype(np.float32), AFFINE), Volume(mask.astype(np.uint8), AFFINE), lesion


def test_refinement_takes_the_margin_from_the_image_at_the_peak_component() -> None:
    image, heat, mask, lesion = _scene()
    before = dice(mask.data, lesion)
    refined, info = refine_mask(mask, heat, image, method="otsu", margin_mm=3.0)
    assert refined.same_grid(image) and refined.data.dtype == np.uint8
    assert dice(refined.data, lesion) > 0.9 > before
    assert not refined.data[30:, 30:].any()  # the distractor's component is not the one refined
    assert info["method"] == "otsu" and info["fallback"] is None and info["box"]["anchor"] == [17, 15, 10]
    assert refined.history[-1].name == "refine"


def test_empty_masks_stay_empty_and_bad_requests_are_refused() -> None:
    image, heat, mask, _ = _scene()
    empty = mask.with_data(np.zeros_like(mask.data))
    same, info = refine_mask(empty, heat, image, method="otsu")
    assert not same.data.any() and info["box"] is None
    with pytest.raises(ConfigError):
        refine_mask(mask, heat, image, method="watershed")
    moved = AFFINE.copy()
    moved[0, 3] = 5.0
    shifted = Volume(image.data, moved)
    with pytest.raises(InvalidInputError):
        refine_mask(mask, heat, shifted, method="otsu")


def test_a_dark_lesion_is_the_class_the_map_points_at() -> None:
    """The lesion class is the one with the higher mean heatmap, not the brighter one."""
    image, heat, mask, lesion = _scene()
    dark = Volume(np.where(lesion, 60.0, 100.0) + np.random.default_rng(1).normal(0, 5, lesion.shape), AFFINE)
    refined, info = refine_mask(mask, heat, dark, method="gmm", margin_mm=3.0)
    assert dice(refined.data, lesion) > 0.9 and info["fallback"] is None
