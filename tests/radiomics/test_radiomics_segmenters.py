"""Box / seed segmenters: synthetic lesions, box geometry, and Dice against real sarcoma GTVs.

Measured Dice (box = GTV bounding box + 10 mm, CT, seed 0; benchmarks/box_segmenters.py), plain -> with
the box prior (the default, random-walker beta 30000):
    STS_001  otsu 0.38 -> 0.76  fcm 0.38 -> 0.76  gmm 0.38 -> 0.76  kmeans 0.38 -> 0.76  knn 0.66 -> 0.72
    STS_002  otsu 0.29 -> 0.84  fcm 0.29 -> 0.84  gmm 0.30 -> 0.84  kmeans 0.29 -> 0.84  knn 0.85 -> 0.89
    STS_003  otsu 0.30 -> 0.87  fcm 0.54 -> 0.87  gmm 0.30 -> 0.87  kmeans 0.30 -> 0.87  knn 0.69 -> 0.88
Plain two-class methods split fat from soft tissue, and a sarcoma has muscle's HU, so they take the muscle
in the box too (84-96 % of the box, flagged); the prior cuts the soft-tissue class between the box core and
the box border. The phantom tests of the prior itself are in test_box_prior.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.readers import read_mask, read_volume
from medxai.radiomics.boxes import box_from_mm, box_from_seed, box_from_voxels
from medxai.radiomics.segmenters import CLUSTERING, SEGMENTERS, segment_in_box
from medxai.segmentation.overlap import dice
from medxai.testing.grids import oblique_affine
from medxai.volume import Volume

KNN_MIN_DICE = {"STS_001": 0.6, "STS_002": 0.75, "STS_003": 0.6}
PRIOR_MIN_DICE = {"STS_001": 0.72, "STS_002": 0.8, "STS_003": 0.82}  # clustering + prior, measured 0.76 / 0.84 / 0.87


def _nodule_scene(seed: int = 0) -> tuple[Volume, np.ndarray, np.ndarray]:
    """A bright 6 mm nodule in noisy dark 'lung' with a second blob nearby (which must not be kept)."""
    rng = np.random.default_rng(seed)
    spacing = (0.8, 0.8, 2.0)
    shape = (64, 64, 24)
    grids = np.indices(shape, dtype=np.float64)
    centre = np.array([30.0, 33.0, 11.0])
    nodule = sum(((grids[a] - centre[a]) * spacing[a]) ** 2 for a in range(3)) <= 6.0**2
    other = sum(((grids[a] - c) * spacing[a]) ** 2 for a, c in enumerate((48.0, 33.0, 11.0))) <= 3.0**2
    data = np.where(nodule | other, 40.0, -850.0) + rng.normal(0, 60, shape)
    return Volume(data.astype(np.float32), oblique_affine(spacing)), nodule, centre


@pytest.mark.parametrize("method", SEGMENTERS)
def test_segmenters_find_the_nodule_at_the_box_centre(method: str) -> None:
    image, nodule, centre = _nodule_scene()
    box = box_from_voxels("14,21,5,46,45,17", image)  # centred on the nodule; also covers part of the other blob
    mask = segment_in_box(image, box, method=method, seed=0)
    assert mask.same_grid(image) and mask.data.dtype == np.uint8
    # k-NN's local-mean feature widens the boundary by about a voxel on a clean nodule (measured 0.81),
    # the price of its robustness on real tumours (see the sarcoma figures above).
    assert dice(mask.data > 0, nodule) > (0.75 if method == "knn" else 0.9)
    assert not mask.data[46:51, 31:36, 10:13].any()  # the other blob is a separate component: dropped


@pytest.mark.parametrize("method", CLUSTERING)
def test_small_nodule_in_a_loose_box(method: str) -> None:
    """A 6 mm nodule in its bounding box + 5 mm fills only a third of the box core: the lesion class must
    still be the nodule's (it is rarer on the box border), not the lung that fills most of the core."""
    rng = np.random.default_rng(5)
    spacing = (0.8, 0.8, 2.0)
    grids = np.indices((48, 48, 18), dtype=np.float64)
    nodule = sum(((grids[a] - c) * spacing[a]) ** 2 for a, c in enumerate((24.0, 24.0, 9.0))) <= 3.0**2
    image = Volume((np.where(nodule, 40.0, -850.0) + rng.normal(0, 60, nodule.shape)).astype(np.float32),
                   oblique_affine(spacing))
    voxels, margin = np.argwhere(nodule), np.ceil(5.0 / np.asarray(spacing)).astype(int)
    box = box_from_voxels([*(voxels.min(0) - margin), *(voxels.max(0) + margin)], image)
    assert dice(segment_in_box(image, box, method=method, seed=0).data > 0, nodule) > 0.9  # was 0.04 (inverted)


def test_dark_lesion_in_bright_tissue() -> None:
    image, nodule, _ = _nodule_scene(1)
    inverted = image.with_data(-image.data)
    mask = segment_in_box(inverted, box_from_voxels("18,21,5,42,45,17", inverted), method="otsu")
    assert dice(mask.data > 0, nodule) > 0.9


def test_seed_and_mm_boxes_on_an_oblique_grid() -> None:
    image, nodule, centre = _nodule_scene(2)
    seed_world = image.index_to_world(centre)[0]
    box = box_from_seed(",".join(f"{v:.4f}" for v in seed_world), 9.0, image)
    assert np.allclose(box.anchor, centre, atol=1e-6)
    assert box.lo[2] == int(np.floor(11 - 9.0 / 2.0 + 0.5)) and box.hi[0] == int(np.floor(30 + 9.0 / 0.8 + 0.5))
    mask = segment_in_box(image, box, method="kmeans")
    assert dice(mask.data > 0, nodule) > 0.9
    corners = image.index_to_world(np.array([[20, 22, 6], [40, 44, 16]]))
    mm_box = box_from_mm(corners.ravel().tolist(), image)
    assert all(lo <= c <= hi for lo, hi, c in zip(mm_box.lo, mm_box.hi, centre))


def test_bad_boxes() -> None:
    image, _, _ = _nodule_scene()
    with pytest.raises(ConfigError):
        box_from_voxels("1,2,3", image)
    with pytest.raises(ConfigError):
        box_from_voxels("1,2,3,4.5,5,6", image)
    with pytest.raises(InvalidInputError, match="outside the image"):
        box_from_voxels("100,100,100,120,120,120", image)
    with pytest.raises(ConfigError):
        segment_in_box(image, box_from_voxels("0,0,0,5,5,5", image), method="watershed")
    flat = image.with_data(np.zeros(image.shape, np.float32))
    with pytest.raises(InvalidInputError, match="constant"):
        segment_in_box(flat, box_from_voxels("0,0,0,5,5,5", flat), method="otsu")


def test_segmentation_is_reproducible() -> None:
    image, _, _ = _nodule_scene(4)
    box = box_from_voxels("18,21,5,42,45,17", image)
    for method in ("gmm", "fcm", "knn"):
        first = segment_in_box(image, box, method=method, seed=7).data
        assert np.array_equal(first, segment_in_box(image, box, method=method, seed=7).data)


def _stsdice(test_data: Path, case: str, method: str) -> float:
    folder = test_data / "ibsi_sts" / "nifti" / case
    image = read_volume(folder / "CT_image.nii.gz")
    truth = read_mask(folder / "CT_mask.nii.gz", image).data > 0
    margin = np.ceil(10.0 / np.asarray(image.spacing)).astype(int)
    voxels = np.argwhere(truth)
    box = box_from_voxels([*(voxels.min(0) - margin), *(voxels.max(0) + margin)], image)
    return dice(segment_in_box(image, box, method=method, seed=0).data > 0, truth)


def test_knn_dice_on_sarcoma_ct(test_data: Path) -> None:
    assert _stsdice(test_data, "STS_002", "knn") >= KNN_MIN_DICE["STS_002"]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(KNN_MIN_DICE))
def test_dice_on_sarcoma_ct_all_methods(test_data: Path, case: str) -> None:
    scores = {method: _stsdice(test_data, case, method) for method in SEGMENTERS}
    assert scores["knn"] >= KNN_MIN_DICE[case]
    assert all(scores[method] >= PRIOR_MIN_DICE[case] for method in CLUSTERING), scores  # plain: 0.29-0.54


def test_boxes_reaching_beyond_the_image(caplog: pytest.LogCaptureFixture) -> None:
    """A box is clipped to the image with a warning; one whose centre (or a seed) is off the image is refused."""
    image, nodule, centre = _nodule_scene()
    with caplog.at_level("WARNING", logger="medxai.radiomics.boxes"):
        box = box_from_voxels("14,21,-2,46,45,24", image)  # k -2..24 on a 24-slice grid, centred on the nodule
    assert (box.lo, box.hi, box.anchor) == ((14, 21, 0), (46, 45, 23), (30.0, 33.0, 11.0)) and "clipped" in caplog.text
    with pytest.raises(InvalidInputError, match="centre .* outside the image"):
        box_from_voxels("40,40,20,90,90,40", image)  # overlaps the image, but its centre (65, 65, 30) is off it
    corners = image.index_to_world(np.array([[40, 40, 20], [90, 90, 40]]))
    with pytest.raises(InvalidInputError, match="centre .* outside the image"):
        box_from_mm(corners.ravel().tolist(), image)
    far = image.index_to_world(np.array([70.0, 33.0, 11.0]))[0]
    with pytest.raises(InvalidInputError, match="seed point .* outside the image"):
        box_from_seed(",".join(map(str, far)), 30.0, image)
    caplog.clear()
    with caplog.at_level("WARNING", logger="medxai.radiomics.boxes"):
        seed_box = box_from_seed(",".join(map(str, image.index_to_world(centre)[0])), 40.0, image)  # ball past the edges
    assert seed_box.lo == (0, 0, 0) and not caplog.text  # a seed's ball is expected to pass the image edge
    assert dice(segment_in_box(image, box, method="otsu").data > 0, nodule) > 0.9
