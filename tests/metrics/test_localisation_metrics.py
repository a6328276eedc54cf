"""Localisation scores on tiny hand-checkable heatmaps, on anisotropic, oblique and flipped grids."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medxai.errors import InvalidInputError
from medxai.metrics.localisation import (
    auroc,
    distances_mm,
    localisation_scores,
    pointing_game,
    relevance_mass,
    relevance_rank,
    shell_mass,
)
from medxai.volume import Volume


def _affine(spacing: tuple[float, float, float], *, oblique: bool = False, flip: bool = False) -> np.ndarray:
    rotation = np.eye(3)
    if oblique:
        angle = math.radians(30)
        rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    if flip:
        rotation = rotation @ np.diag([-1.0, 1.0, -1.0])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = [12.0, -40.0, 7.5]
    return affine


GRIDS = [
    pytest.param(dict(spacing=(1.0, 1.0, 1.0)), id="iso"),
    pytest.param(dict(spacing=(0.5, 1.5, 3.0)), id="aniso"),
    pytest.param(dict(spacing=(0.5, 1.5, 3.0), oblique=True, flip=True), id="aniso-oblique-flipped"),
]


def _pair(heat: np.ndarray, mask: np.ndarray, **grid: object) -> tuple[Volume, Volume]:
    affine = _affine(**grid)  # type: ignore[arg-type]
    return Volume(heat.astype(np.float32), affine), Volume(mask.astype(np.uint8), affine)


def _box_mask(shape=(20, 20, 12)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[8:12, 8:12, 4:7] = True
    return mask


@pytest.mark.parametrize("grid", GRIDS)
def test_delta_inside_the_mask_scores_perfectly(grid):
    mask = _box_mask()
    heat = np.zeros(mask.shape)
    heat[9, 10, 5] = 1.0
    scores = localisation_scores(*_pair(heat, mask, **grid))
    assert scores["pointing_game"] == 1.0
    assert scores["mass_in_mask"] == 1.0
    assert scores["peak_distance_mm"] == 0.0
    assert scores["com_distance_mm"] == 0.0
    # the delta is 1 voxel of 48 in the top-48; the other 47 top voxels tie at 0 and fall in C order
    assert 1 / 48 <= scores["rank_accuracy"] <= 1.0


@pytest.mark.parametrize("grid", GRIDS)
def test_delta_outside_at_a_known_distance_on_an_anisotropic_grid(grid):
    spacing = grid["spacing"]
    mask = _box_mask()
    heat = np.zeros(mask.shape)
    # 3 voxels past the box along j (last mask j index 11 -> 14) and 2 past along k (last k index 6 -> 8)
    heat[10, 14, 8] = 1.0
    expected = math.hypot(3 * spacing[1], 2 * spacing[2])
    heatmap, mask_volume = _pair(heat, mask, **grid)
    scores = localisation_scores(heatmap, mask_volume)
    assert scores["pointing_game"] == 0.0
    assert scores["mass_in_mask"] == 0.0
    assert scores["peak_distance_mm"] == pytest.approx(expected, abs=1e-9)
    assert scores["com_distance_mm"] == pytest.approx(expected, abs=1e-9)
    # mask centre of mass at index (9.5, 9.5, 5): the peak is (0.5, 4.5, 3) voxels away
    centre = math.sqrt((0.5 * spacing[0]) ** 2 + (4.5 * spacing[1]) ** 2 + (3 * spacing[2]) ** 2)
    assert scores["peak_to_centre_mm"] == pytest.approx(centre, abs=1e-9)
    assert scores["com_to_centre_mm"] == pytest.approx(centre, abs=1e-9)
    assert pointing_game(heatmap, mask_volume, tolerance_mm=expected + 1e-6)
    assert not pointing_game(heatmap, mask_volume, tolerance_mm=expected - 1e-3)


@pytest.mark.parametrize("grid", GRIDS)
def test_uniform_map_scores_mask_fraction_and_chance_auroc(grid):
    mask = _box_mask()
    heatmap, mask_volume = _pair(np.full(mask.shape, 0.3), mask, **grid)
    assert relevance_mass(heatmap, mask_volume) == pytest.approx(48 / mask.size)
    assert auroc(heatmap, mask_volume) == pytest.approx(0.5)


def test_auroc_and_rank_of_perfect_and_inverted_maps():
    mask = _box_mask()
    heatmap, mask_volume = _pair(mask.astype(float) + 0.1, mask, spacing=(0.5, 1.5, 3.0))
    assert auroc(heatmap, mask_volume) == 1.0
    assert relevance_rank(heatmap, mask_volume) == 1.0
    inverted, _ = _pair(1.0 - mask.astype(float), mask, spacing=(0.5, 1.5, 3.0))
    assert auroc(inverted, mask_volume) == 0.0
    assert relevance_rank(inverted, mask_volume) == 0.0


def test_half_the_positive_mass_inside_and_negative_values_ignored():
    mask = _box_mask()
    heat = np.zeros(mask.shape)
    heat[9, 9, 5] = 2.0
    heat[0, 0, 0] = 2.0
    heat[1, 1, 1] = -5.0
    assert relevance_mass(*_pair(heat, mask, spacing=(1.0, 2.0, 3.0))) == pytest.approx(0.5)


def test_centre_of_mass_between_two_peaks():
    mask = np.zeros((30, 10, 10), dtype=bool)
    mask[14:17, 4:7, 4:7] = True  # centre index (15, 5, 5)
    heat = np.zeros(mask.shape)
    heat[5, 5, 5] = 1.0
    heat[25, 5, 5] = 1.0  # centre of mass (15, 5, 5): inside the mask, at its centre
    distances = distances_mm(*_pair(heat, mask, spacing=(2.0, 1.0, 1.0)))
    assert distances["com_distance_mm"] == 0.0
    assert distances["com_to_centre_mm"] == pytest.approx(0.0, abs=1e-9)
    assert distances["peak_distance_mm"] == pytest.approx(2.0 * 9)  # from i=5 to the mask's first i=14


def test_shells_around_a_sphere_on_an_anisotropic_grid():
    spacing = (0.5, 1.0, 0.75)
    shape = (96, 48, 64)
    ii, jj, kk = np.meshgrid(*[(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    radius_mm = np.sqrt(ii**2 + jj**2 + kk**2)
    sphere = radius_mm <= 8.0
    # Attribution on a thin spherical band 2.8-3.2 mm outside the surface; the distance to the nearest
    # lesion voxel centre exceeds r - 8 by at most half a voxel diagonal (0.67 mm): all of it in 2-4 mm.
    band = (radius_mm > 10.8) & (radius_mm <= 11.2)
    heat = band.astype(float) + 3.0 * sphere
    shells = shell_mass(*_pair(heat, sphere, spacing=spacing, oblique=True, flip=True))
    expected_band = band.sum() / (band.sum() + 3.0 * sphere.sum())
    assert shells["shell_mass_2_4mm"] == pytest.approx(expected_band)
    assert shells["shell_mass_0_2mm"] == 0.0
    assert shells["shell_mass_4_6mm"] == 0.0
    assert set(shells) == {f"shell_mass_{a}_{a + 2}mm" for a in range(0, 12, 2)}
    # a uniform map: each shell holds its share of the volume, close to the analytic sphere-shell volume
    uniform = shell_mass(*_pair(np.ones(shape), sphere, spacing=spacing))
    total_mm3 = np.prod(shape) * float(np.prod(spacing))
    for inner in (2, 4, 6, 8, 10):
        analytic = 4 / 3 * math.pi * ((8 + inner + 2) ** 3 - (8 + inner) ** 3) / total_mm3
        assert uniform[f"shell_mass_{inner}_{inner + 2}mm"] == pytest.approx(analytic, rel=0.1)


def test_mismatched_grids_are_refused():
    mask = _box_mask()
    heatmap = Volume(np.zeros(mask.shape, dtype=np.float32), _affine((1.0, 1.0, 1.0)))
    shifted = Volume(mask.astype(np.uint8), _affine((1.0, 1.0, 2.0)))
    with pytest.raises(InvalidInputError, match="does not match the mask grid"):
        localisation_scores(heatmap, shifted)
    smaller = Volume(mask[:-1].astype(np.uint8), _affine((1.0, 1.0, 1.0)))
    with pytest.raises(InvalidInputError):
        relevance_mass(heatmap, smaller)


def test_empty_mask_and_non_finite_heatmap_are_refused():
    mask = _box_mask()
    empty = np.zeros_like(mask)
    with pytest.raises(InvalidInputError, match="mask is empty"):
        auroc(*_pair(np.ones(mask.shape), empty, spacing=(1.0, 1.0, 1.0)))
    heat = np.ones(mask.shape)
    heat[0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        pointing_game(*_pair(heat, mask, spacing=(1.0, 1.0, 1.0)))
