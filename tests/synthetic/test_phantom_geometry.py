"""One analytic phantom rendered on identity, anisotropic, oblique and flipped grids is the same in mm."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.ndimage import map_coordinates, maximum_filter

from medxai.io.readers import read_volume
from medxai.synthetic import default_grid, make_cohort, make_spec, render

SIZE = 48
KINDS = ("identity", "anisotropic", "oblique", "flipped")


@pytest.fixture(scope="module")
def rendered():
    spec = make_spec(seed=5, task="presence", label="lesion", size=SIZE)
    phantoms = {}
    for kind in KINDS:
        affine, shape = default_grid(spec, size=SIZE, kind=kind)
        phantoms[kind] = render(spec, affine=affine, shape=shape, noise_seed=None)
    return spec, phantoms


def test_grids_cover_the_same_field_of_view_with_the_promised_geometry(rendered):
    spec, phantoms = rendered
    identity, anisotropic = phantoms["identity"].image, phantoms["anisotropic"].image
    oblique, flipped = phantoms["oblique"].image, phantoms["flipped"].image
    assert identity.orientation == "RAS" and np.allclose(identity.spacing, 1.0) and identity.shape == (SIZE,) * 3
    assert not np.allclose(identity.affine[:3, 3], 0.0)  # a non-zero origin
    assert flipped.orientation == "LPS" and np.allclose(flipped.spacing, 1.0)
    assert anisotropic.spacing[2] >= 2.0 and np.allclose(anisotropic.spacing[:2], 1.0)
    rotation = oblique.affine[:3, :3] / np.asarray(oblique.spacing)
    angles = np.degrees(np.arccos(np.clip(np.abs(np.diag(rotation)), 0, 1)))
    assert (angles > 5).sum() >= 2 and max(oblique.spacing) / min(oblique.spacing) >= 1.5
    for volume in (anisotropic, oblique, flipped):
        assert np.prod(volume.shape) <= SIZE**3
        centre = volume.index_to_world((np.asarray(volume.shape) - 1) / 2.0)[0]
        assert np.allclose(centre, spec.centre_mm, atol=1e-6)
        extent = np.asarray(volume.shape) * np.asarray(volume.spacing)
        assert np.all(np.abs(extent - SIZE) <= np.asarray(volume.spacing))  # same field of view in mm


def _centre_of_mass_mm(mask) -> np.ndarray:
    return mask.index_to_world(np.argwhere(mask.data > 0).mean(axis=0))[0]


def test_lesion_centre_of_mass_agrees_in_world_mm(rendered):
    spec, phantoms = rendered
    reference = _centre_of_mass_mm(phantoms["identity"].mask)
    assert np.linalg.norm(reference - np.asarray(spec.lesion.centre_mm)) < 0.25 * max(spec.lesion.radii_mm)
    for kind in KINDS[1:]:
        mask = phantoms[kind].mask
        assert mask.same_grid(phantoms[kind].image) and mask.data.dtype == np.uint8
        assert np.linalg.norm(_centre_of_mass_mm(mask) - reference) <= max(mask.spacing), kind
        volume_ml = mask.data.sum() * np.prod(mask.spacing)
        assert volume_ml == pytest.approx(phantoms["identity"].mask.data.sum(), rel=0.15), kind


def test_flipped_grid_is_the_identity_image_reversed_along_i_and_j(rendered):
    _, phantoms = rendered
    identity, flipped = phantoms["identity"], phantoms["flipped"]
    assert np.allclose(flipped.image.data[::-1, ::-1, :], identity.image.data, rtol=1e-4, atol=0.05)
    assert np.array_equal(flipped.mask.data[::-1, ::-1, :], identity.mask.data)


@pytest.mark.parametrize("kind", ["anisotropic", "oblique"])
def test_intensities_agree_at_corresponding_world_points(rendered, kind):
    spec, phantoms = rendered
    reference, other = phantoms["identity"].image, phantoms[kind].image
    # the identity image's voxel centres, looked up in the other image by world_to_index (trilinear),
    # away from edges, where partial volume legitimately differs between grids
    gradient = np.linalg.norm(np.gradient(reference.data), axis=0)
    smooth = maximum_filter(gradient, size=5) < 0.05 * spec.tissue
    ijk = np.argwhere(smooth & (reference.data > 0.5 * spec.tissue))
    assert len(ijk) > 300
    ijk = ijk[np.random.default_rng(0).choice(len(ijk), size=min(500, len(ijk)), replace=False)]
    lookup = other.world_to_index(reference.index_to_world(ijk))
    inside = np.all((lookup >= 0) & (lookup <= np.asarray(other.shape) - 1), axis=1)
    assert inside.mean() > 0.95
    sampled = map_coordinates(other.data, lookup[inside].T, order=1)
    relative = np.abs(sampled - reference.data[tuple(ijk[inside].T)]) / spec.tissue
    assert np.median(relative) < 0.005 and np.percentile(relative, 95) < 0.015
    # the lesion centre is bright on both grids
    centre = np.asarray(spec.lesion.centre_mm)
    at_centre = [map_coordinates(v.data, v.world_to_index(centre).T, order=1)[0] for v in (reference, other)]
    assert at_centre[1] == pytest.approx(at_centre[0], rel=0.1)


def test_grid_mix_cohort_writes_non_identity_affines_exactly(tmp_path):
    labels_csv = make_cohort(tmp_path, cases=12, seed=2, size=24)
    with open(labels_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    orientations, anisotropic, oblique, identity_like = set(), 0, 0, 0
    for row in rows:
        image = read_volume(labels_csv.parent / row["image"])
        orientations.add(image.orientation)
        linear = image.affine[:3, :3]
        off_diagonal = np.abs(linear - np.diag(np.diag(linear))).max()
        oblique += off_diagonal > 0.1
        anisotropic += max(image.spacing) / min(image.spacing) > 1.5
        identity_like += off_diagonal == 0 and np.allclose(np.diag(linear), 1.0)
        assert not np.allclose(image.affine[:3, 3], 0.0)
        if row["mask"]:
            mask = read_volume(labels_csv.parent / row["mask"])
            assert mask.shape == image.shape and np.array_equal(mask.affine, image.affine)
    assert "LPS" in orientations and oblique >= 1 and anisotropic >= 2
    assert 0.6 * len(rows) <= identity_like < len(rows)


@pytest.mark.parametrize("kind", KINDS)
def test_render_writes_the_requested_affine_exactly(tmp_path, kind):
    from medxai.synthetic import write_phantom

    spec = make_spec(seed=9, label="lesion", size=24)
    affine, shape = default_grid(spec, size=24, kind=kind)
    phantom = render(spec, affine=affine, shape=shape)
    write_phantom(phantom, tmp_path / "image.nii.gz", tmp_path / "mask.nii.gz")
    image, mask = read_volume(tmp_path / "image.nii.gz"), read_volume(tmp_path / "mask.nii.gz")
    assert image.shape == tuple(shape) and np.allclose(image.affine, affine, atol=1e-5)
    assert np.array_equal(image.data, phantom.image.data) and np.array_equal(mask.data, phantom.mask.data)
    assert mask.data.dtype == np.uint8 and mask.data.any()
