"""Radiological display convention of the report's views, checked on the returned arrays.

Markers are placed by WORLD coordinate (RAS mm: +x = patient's right, +y = anterior, +z = superior), then the
same anatomy is sampled on RAS, LPS-flipped, permuted, anisotropic and oblique grids. Expected sides follow
from the convention alone: the patient's LEFT (x < 0) is on the image's RIGHT in axial and coronal views,
anterior is up in axial views, superior is up in coronal and sagittal views, anterior is left in sagittal.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.image import imread

from medxai.report.figures import Colouring, view_grid
from medxai.report.views import Reorientation, obliquity_note, projection_views, slice_views, threshold_overlay
from medxai.volume import Volume

SHAPE = (40, 36, 32)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def _grid(linear: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """An affine with the given voxel->world linear part whose grid centre sits at world (0, 0, 0)."""
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ ((np.array(shape) - 1) / 2.0)
    return affine


def _case(linear: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    return _grid(linear, shape), shape


GRIDS = {
    "RAS": _case(np.eye(3), SHAPE),
    "LPS-flipped": _case(np.diag([-1.0, -1.0, 1.0]), SHAPE),
    "permuted (i=S, j=R, k=A)": _case(np.array([[0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]]), SHAPE),
    "anisotropic LAS": _case(np.diag([-1.0, 1.2, 2.5]), (40, 36, 14)),
    "oblique": _case(_rotation(2, 12) @ _rotation(0, 8) @ np.diag([1.1, 1.1, 1.6]), (40, 36, 22)),
}


def _world(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _phantom(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[Volume, np.ndarray]:
    """A body ball, a bright block in the patient's LEFT (x in -14..-8) and anterior (y 4..10) near z = 0, and
    a heatmap peak on that block; returns the volume and the heatmap."""
    xyz = _world(affine, shape)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    body = (x**2 + y**2 + z**2 < 15.0**2).astype(np.float32) * 100.0
    block = (x > -14) & (x < -8) & (y > 4) & (y < 10) & (np.abs(z) < 4)
    superior = (np.abs(x) < 3) & (np.abs(y) < 3) & (z > 6) & (z < 12)  # a second marker above the centre
    image = body + 300.0 * block + 200.0 * superior
    heat = np.exp(-((x + 11) ** 2 + (y - 7) ** 2 + z**2) / 8.0).astype(np.float32)
    return Volume(image.astype(np.float32), affine), heat


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("name", list(GRIDS))
def test_left_anterior_marker_lands_on_the_radiological_side(name: str) -> None:
    volume, heat = _phantom(*GRIDS[name])
    reorientation = Reorientation.of(volume)
    point = np.unravel_index(int(np.argmax(heat)), heat.shape)
    axial, coronal, sagittal = slice_views(reorientation, volume.data, point=point, overlay=heat)
    assert (axial.plane, coronal.plane, sagittal.plane) == ("axial", "coronal", "sagittal")
    rows, columns = axial.anatomy.shape
    row, column = _centroid(axial.anatomy > 250)
    assert column > columns / 2, "patient's left must be on the image's right (axial)"
    assert row < rows / 2, "anterior must be up (axial)"
    assert axial.letters == ("R", "L", "A", "P")
    _, column = _centroid(coronal.anatomy > 250)
    assert column > coronal.anatomy.shape[1] / 2, "patient's left must be on the image's right (coronal)"
    assert coronal.letters == ("R", "L", "S", "I")
    # the sagittal slice through the block: anterior (the block) on the image's left
    _, column = _centroid(sagittal.anatomy > 250)
    assert column < sagittal.anatomy.shape[1] / 2, "anterior must be on the image's left (sagittal)"
    assert sagittal.letters == ("A", "P", "S", "I")
    # the overlay peak is drawn where the block is
    peak = np.unravel_index(int(np.nanargmax(axial.overlay)), axial.overlay.shape)
    assert axial.anatomy[peak] > 250


@pytest.mark.parametrize("name", ["RAS", "LPS-flipped", "permuted (i=S, j=R, k=A)"])
def test_superior_marker_is_up_in_coronal_and_sagittal_views(name: str) -> None:
    volume, _ = _phantom(*GRIDS[name])
    reorientation = Reorientation.of(volume)
    centre = volume.world_to_index(np.array([[0.0, 0.0, 0.0]]))[0]
    _, coronal, sagittal = slice_views(reorientation, volume.data, point=centre)
    for view in (coronal, sagittal):
        marker = (view.anatomy > 250) & (view.anatomy < 350)
        row, _ = _centroid(marker)
        assert row < view.anatomy.shape[0] / 2, f"superior must be up ({view.plane})"


def test_anisotropic_spacing_sets_the_pixel_aspect() -> None:
    volume, _ = _phantom(*GRIDS["anisotropic LAS"])
    axial, coronal, sagittal = slice_views(Reorientation.of(volume), volume.data, point=(20, 18, 7))
    assert axial.aspect == pytest.approx(1.2 / 1.0)   # rows along y (1.2 mm), columns along x (1 mm)
    assert coronal.aspect == pytest.approx(2.5 / 1.0)  # rows along z (2.5 mm)
    assert sagittal.aspect == pytest.approx(2.5 / 1.2)
    assert axial.anatomy.shape == (36, 40) and coronal.anatomy.shape == (14, 40) and sagittal.anatomy.shape == (14, 36)


def test_oblique_scan_is_flagged_and_plain_scan_is_not() -> None:
    tilted, _ = _phantom(_grid(_rotation(2, 12) @ np.diag([1.0, 1.0, 2.0]), (30, 30, 12)), (30, 30, 12))
    plain, _ = _phantom(*GRIDS["LPS-flipped"])
    assert Reorientation.of(tilted).obliquity_deg == pytest.approx(12.0, abs=1e-6)
    assert "closest canonical orientation" in (obliquity_note(Reorientation.of(tilted)) or "")
    assert obliquity_note(Reorientation.of(plain)) is None


def test_threshold_keeps_only_the_top_percent() -> None:
    values = np.arange(1000, dtype=np.float32).reshape(10, 10, 10) - 500
    shown, level = threshold_overlay(values, percentile=95)
    kept = np.isfinite(shown)
    assert kept.sum() == pytest.approx(0.05 * 1000, abs=2)  # top 5% of |value|, from both tails of a signed ramp
    assert (values[kept] > 0).sum() >= 24 and (values[kept] < 0).sum() >= 24
    assert np.all(np.abs(values[kept]) >= level) and level == pytest.approx(475, abs=1)


def test_projection_shows_the_heatmap_on_the_marker_side() -> None:
    volume, heat = _phantom(*GRIDS["LPS-flipped"])
    axial = projection_views(Reorientation.of(volume), volume.data, heat, percentile=90)[0]
    row, column = _centroid(np.isfinite(axial.overlay))
    assert column > axial.overlay.shape[1] / 2 and row < axial.overlay.shape[0] / 2


def test_rendered_figure_is_not_blank_and_has_colour() -> None:
    volume, heat = _phantom(*GRIDS["oblique"])
    reorientation = Reorientation.of(volume)
    shown, _ = threshold_overlay(heat, percentile=95)
    point = np.unravel_index(int(np.argmax(heat)), heat.shape)
    png = view_grid([("peak", slice_views(reorientation, volume.data, point=point, overlay=shown))],
                    colouring=Colouring.for_map(heat, signed=False, label="test"))
    pixels = imread(io.BytesIO(png.png))[..., :3]
    assert pixels.std() > 0.05
    colourful = np.abs(pixels[..., 0] - pixels[..., 2]) > 0.3  # inferno's orange/yellow: red far above blue
    assert colourful.sum() > 50
