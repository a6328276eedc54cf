"""Malignant lesions differ from benign ones by a spiculated margin and a peritumoral halo only."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

from medxai.synthetic import default_grid, make_spec, render


def _rendered(seed: int, label: str, *, noise: bool = True):
    spec = make_spec(seed=seed, task="malignancy", label=label, size=64)
    affine, shape = default_grid(spec, size=64, kind="identity")
    return spec, render(spec, affine=affine, shape=shape, noise_seed=seed if noise else None)


def _shell_mean(phantom, low_mm: float, high_mm: float, body: np.ndarray) -> float:
    distance = distance_transform_edt(phantom.mask.data == 0, sampling=phantom.image.spacing)
    return float(phantom.image.data[(distance > low_mm) & (distance <= high_mm) & body].mean())


def test_halo_raises_the_2_to_6_mm_shell_and_nothing_far_away():
    for seed in range(4):
        spec, benign = _rendered(seed, "benign")
        malignant_spec, malignant = _rendered(seed, "malignant")
        image = benign.image
        body = render(spec, affine=image.affine, shape=image.shape, noise_seed=None).image.data > 0.3 * spec.tissue
        world = image.index_to_world(np.indices(image.shape).reshape(3, -1).T)
        lesion = malignant_spec.lesion
        reach = lesion.extent_mm + lesion.halo_width_mm + 4.0
        far = (np.linalg.norm(world - np.asarray(lesion.centre_mm), axis=1) > reach).reshape(image.shape) & body
        assert far.sum() > 1000
        # same seed, same noise: far from the lesion the twins are the same image
        assert np.abs(malignant.image.data[far] - benign.image.data[far]).max() < 1e-3 * spec.tissue
        background = float(image.data[far].mean())
        contrast = {name: (_shell_mean(phantom, 2.0, 6.0, body) - background) / spec.tissue
                    for name, phantom in (("benign", benign), ("malignant", malignant))}
        assert contrast["malignant"] - contrast["benign"] > 0.05, (seed, contrast)


def _surface_roughness(mask: np.ndarray, spacing) -> float:
    """Surface voxels per volume^(2/3): larger for irregular, spiculated margins than for smooth ones."""
    surface = mask & ~binary_erosion(mask)
    return surface.sum() / mask.sum() ** (2 / 3)


def test_malignant_margins_are_irregular_and_sizes_overlap():
    benign_roughness, malignant_roughness, benign_volume, malignant_volume = [], [], [], []
    for seed in range(10, 18):
        label = ("benign", "malignant")[seed % 2]
        spec, phantom = _rendered(seed, label, noise=False)
        mask = phantom.mask.data.astype(bool)
        roughness, volume = _surface_roughness(mask, phantom.mask.spacing), mask.sum()
        (malignant_roughness if label == "malignant" else benign_roughness).append(roughness)
        (malignant_volume if label == "malignant" else benign_volume).append(volume)
        _, twin = _rendered(seed, "benign" if label == "malignant" else "malignant", noise=False)
        twin_roughness = _surface_roughness(twin.mask.data.astype(bool), twin.mask.spacing)
        assert (roughness > twin_roughness) == (label == "malignant")
    assert min(malignant_volume) < max(benign_volume) and min(benign_volume) < max(malignant_volume)
