"""Lesion segmentation inside a box: Otsu, fuzzy c-means, Gaussian mixture, k-means or k-NN.

As in Tushar et al. (2024), "Peritumoral Expansion Radiomics for Improved Lung Cancer Classification",
the voxels of a box drawn around a nodule are split into two intensity classes. Methods: Otsu's
threshold (Otsu 1979, scikit-image), fuzzy c-means (Bezdek 1981, scikit-fuzzy), a two-component
Gaussian mixture and k-means (scikit-learn), and a k-nearest-neighbour classifier trained on the box
border (background) against the box core (lesion). The lesion class is the one more frequent in the box
core than on the box border (so bright and dark lesions both work, and small lesions in loose boxes);
a morphological opening and hole filling clean it,
and the connected component at the anchor (box centre or seed), or the one nearest to it, is kept.

The box prior (on by default): a box is drawn around one lesion, centred and fully inside it, so the box
border is background even where it holds the lesion's intensity class (muscle around a sarcoma, bone at
the box edge). The lesion class is then cut by a random walker (Grady 2006, scikit-image) on the box's
smoothed, standardised intensities, seeded with the class voxels of the box core as lesion and the box
border plus the voxels far from the class as background; it follows intensity edges where there are some
and falls between core and border where there are none. docs/box-segmenters.md gives the measured Dice with and without it.
A mask filling more than :data:`BOX_FILL_LIMIT` of its box is flagged (metadata and a logged warning).
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable

import numpy as np
from scipy import ndimage

from medxai.errors import ConfigError, InvalidInputError
from medxai.radiomics.boxes import Box
from medxai.volume import Step, Volume

logger = logging.getLogger(__name__)

SEGMENTERS = ("otsu", "fcm", "gmm", "kmeans", "knn")
# An ellipsoid fills pi/6 = 0.52 of its tight bounding box, and a box drawn with any margin leaves it
# less (a sarcoma GTV fills 0.15-0.22 of its box + 10 mm): a mask over 0.6 of the box is the box, not a lesion.
BOX_FILL_LIMIT = 0.6
# Random-walker edge penalty on the box's standardised intensities (scikit-image divides it by the data's
# standard deviation but squares the intensity steps, so on raw HU it would depend on the units). Leave-one-
# case-out over (1000, 5000, 30000) in benchmarks/box_segmenters.py: 5000 in 16 folds, 30000 in 9, median
# Dice within 0.02; 30000, because 5000 bites a voxel layer out of a clean phantom lesion (docs/box-segmenters.md).
PRIOR_BETA = 30000.0
_MAX_FIT_VOXELS = 20_000  # mixture / k-means / c-means fit on a seeded subsample of large boxes
_KNN_PER_CLASS = 2_000
_ANISOTROPY = 2.0  # axes coarser than this multiple of the finest spacing get no 3D morphology


def _core(shape: tuple[int, ...], anchor: np.ndarray) -> np.ndarray:
    """The ellipsoid around ``anchor`` with semi-axes a quarter of the box extent (at least half a voxel)."""
    grids = np.indices(shape, dtype=np.float64)
    semi = np.maximum(np.asarray(shape) / 4.0, 0.5)
    return sum(((grids[a] - anchor[a]) / semi[a]) ** 2 for a in range(3)) <= 1.0


def _border(shape: tuple[int, ...]) -> np.ndarray:
    """The outermost voxel layer of the box, along every axis with at least three voxels."""
    border = np.zeros(shape, dtype=bool)
    for axis, n in enumerate(shape):
        if n >= 3:
            index = [slice(None)] * 3
            for end in (0, n - 1):
                index[axis] = end
                border[tuple(index)] = True
    return border


def _standardise(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / (spread if spread > 0 else 1.0)


def _fit_sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if values.shape[0] <= _MAX_FIT_VOXELS:
        return values
    return values[rng.choice(values.shape[0], _MAX_FIT_VOXELS, replace=False)]


def _otsu(roi: np.ndarray, seed: int) -> np.ndarray:
    from skimage.filters import threshold_otsu

    return roi > threshold_otsu(roi)


def _fcm(roi: np.ndarray, seed: int) -> np.ndarray:
    from skfuzzy.cluster import cmeans

    values = _standardise(roi.reshape(-1, 1))
    centres, *_ = cmeans(_fit_sample(values, np.random.default_rng(seed)).T, c=2, m=2.0, error=1e-5, maxiter=300, seed=seed)
    # Hard assignment by the larger membership = the nearer centre (memberships fall with distance).
    nearer = np.abs(values - centres[:, 0][None, :]).argmin(axis=1)
    return (nearer == int(np.argmax(centres[:, 0]))).reshape(roi.shape)


def _gmm(roi: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    values = _standardise(roi.reshape(-1, 1))
    model = GaussianMixture(n_components=2, random_state=seed).fit(_fit_sample(values, np.random.default_rng(seed)))
    labels = model.predict(values)
    return (labels == int(np.argmax(model.means_[:, 0]))).reshape(roi.shape)


def _kmeans(roi: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    values = _standardise(roi.reshape(-1, 1))
    model = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(_fit_sample(values, np.random.default_rng(seed)))
    labels = model.predict(values)
    return (labels == int(np.argmax(model.cluster_centers_[:, 0]))).reshape(roi.shape)


_CLUSTERERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "otsu": _otsu, "fcm": _fcm, "gmm": _gmm, "kmeans": _kmeans,
}


def _knn(roi: np.ndarray, spacing: np.ndarray, anchor: np.ndarray, seed: int) -> np.ndarray:
    """k-NN on (intensity, local mean) trained on border voxels (background) vs core voxels (lesion)."""
    from sklearn.neighbors import KNeighborsClassifier

    local_mean = ndimage.gaussian_filter(roi, sigma=1.0 / spacing * spacing.min(), mode="nearest")
    features = np.stack([_standardise(roi.ravel()), _standardise(local_mean.ravel())], axis=1)
    core, border = _core(roi.shape, anchor).ravel(), _border(roi.shape).ravel() & ~_core(roi.shape, anchor).ravel()
    if not border.any():
        raise InvalidInputError(f"box {roi.shape} is too small for the knn segmenter (needs a border of background)")
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(m))[:_KNN_PER_CLASS] for m in (border, core)]
    train = np.concatenate(picks)
    target = np.concatenate([np.zeros(len(picks[0]), int), np.ones(len(picks[1]), int)])
    neighbours = min(15, len(picks[0]), len(picks[1]))
    model = KNeighborsClassifier(n_neighbors=neighbours).fit(features[train], target)
    return model.predict(features).reshape(roi.shape).astype(bool)


def _bright_is_lesion(bright: np.ndarray, anchor: np.ndarray) -> bool:
    """Whether the brighter class is the lesion: the class more frequent in the box core than on its border.

    Comparing core with border (not "the class filling most of the core") keeps a small lesion in a loose
    box: a 6 mm nodule in a box with a 5 mm margin fills only a third of the core, yet the border holds none
    of it. A tie (no border, or equal shares) falls back to the class filling most of the core.
    """
    core = _core(bright.shape, anchor)
    border = _border(bright.shape) & ~core
    in_core = float(np.count_nonzero(bright & core)) / max(np.count_nonzero(core), 1)
    if border.any():
        on_border = float(np.count_nonzero(bright & border)) / np.count_nonzero(border)
        if in_core != on_border:
            return in_core > on_border
    return in_core >= 0.5


CLUSTERING = tuple(_CLUSTERERS)  # the segmenters that split a box into two intensity classes


def split_intensities(roi: np.ndarray, *, method: str, seed: int = 0) -> np.ndarray:
    """The brighter of two intensity classes of ``roi`` (boolean) by a clustering segmenter (otsu, fcm,
    gmm, kmeans); the caller decides which class is the lesion."""
    if method not in _CLUSTERERS:
        raise ConfigError(f"{method!r} does not split intensities (choose from {', '.join(_CLUSTERERS)})")
    return _CLUSTERERS[method](np.asarray(roi, dtype=np.float64), seed)


def _structure(spacing: np.ndarray) -> np.ndarray:
    """Face-connected structuring element that skips axes much coarser than the finest one."""
    structure = ndimage.generate_binary_structure(3, 1)
    for axis, s in enumerate(spacing):
        if s > _ANISOTROPY * spacing.min():
            index = [1, 1, 1]
            for end in (0, 2):
                index[axis] = end
                structure[tuple(index)] = False
    return structure


def _anchored_component(mask: np.ndarray, anchor: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The connected component containing ``anchor`` or, failing that, the one nearest to it in mm."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    voxels = np.argwhere(labels > 0)
    distance = np.linalg.norm((voxels - anchor) * spacing, axis=1)
    nearest = voxels[int(np.argmin(distance))]
    return labels == labels[tuple(nearest)]


def clean_mask(mask: np.ndarray, *, anchor: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Opening (drops specks and thin bridges), hole filling, then the component at the anchor."""
    structure = _structure(spacing)
    opened = ndimage.binary_opening(mask, structure=structure)
    if opened.any():  # a tiny lesion may vanish under the opening; keep the raw class then
        mask = opened
    mask = ndimage.binary_fill_holes(mask)
    return _anchored_component(mask, anchor, spacing)


def box_prior(lesion: np.ndarray, roi: np.ndarray, *, anchor: np.ndarray, spacing: np.ndarray,
              beta: float = PRIOR_BETA) -> np.ndarray:
    """The part of the class mask ``lesion`` that a random walker gives to the box core rather than its border.

    Seeds: lesion = the class voxels of the box core (the class voxel nearest the anchor when the core holds
    none); background = the box border and the voxels more than one voxel from the class. The walk runs on
    the intensities smoothed as k-NN's local mean (at high ``beta`` raw noise steps alone would decouple
    neighbouring voxels) and standardised (``beta`` is then unit-free). Only class voxels can be kept, so the prior
    never adds what the segmenter excluded.
    """
    from skimage.segmentation import random_walker

    core = _core(lesion.shape, anchor)
    labels = np.zeros(lesion.shape, dtype=np.int32)
    labels[~ndimage.binary_dilation(lesion)] = 2
    labels[_border(lesion.shape)] = 2
    seeds = lesion & core & (labels == 0)
    if not seeds.any():
        voxels = np.argwhere(lesion & (labels == 0))
        if voxels.size == 0:  # the class lies on the border only: nothing the box was drawn around
            return np.zeros_like(lesion)
        seeds = np.zeros_like(lesion)
        seeds[tuple(voxels[int(np.argmin(np.linalg.norm((voxels - anchor) * spacing, axis=1)))])] = True
    labels[seeds] = 1
    if not (labels == 0).any():
        return lesion & (labels == 1)
    smooth = ndimage.gaussian_filter(roi, sigma=spacing.min() / spacing, mode="nearest")
    with warnings.catch_warnings():
        # The conjugate-gradient solve may leave probabilities a little outside [0, 1]; only which seed
        # wins matters here, which that rounding does not change.
        warnings.filterwarnings("ignore", message="The probability range is outside", category=UserWarning)
        walk = random_walker(_standardise(smooth), labels, beta=beta, mode="cg_j", tol=1e-3, spacing=spacing)
    # The smoothing moves an edge by up to a voxel: give the class voxels touching the walk back.
    return lesion & ndimage.binary_dilation(walk == 1, structure=_structure(spacing))


def _check_box_fill(lesion: np.ndarray, box: Box, method: str, source: str) -> float:
    """The fraction of the box the mask fills, with a warning when it is over :data:`BOX_FILL_LIMIT`."""
    fraction = float(np.count_nonzero(lesion)) / lesion.size
    if fraction > BOX_FILL_LIMIT:
        logger.warning("%s: the %s segmenter filled %.0f%% of box %s-%s (over %.0f%%): the mask is the box "
                       "rather than a lesion inside it", source, method, 100 * fraction, box.lo, box.hi,
                       100 * BOX_FILL_LIMIT)
    return fraction


def segment_in_box(image: Volume, box: Box, *, method: str = "otsu", seed: int = 0, prior: bool = True,
                   prior_beta: float = PRIOR_BETA, case_id: str | None = None) -> Volume:
    """A uint8 lesion mask on ``image``'s grid, segmented inside ``box`` with ``method``.

    ``prior`` applies :func:`box_prior`. The mask's metadata records ``box_fraction`` (the share of the box
    it fills) and ``fills_box`` (over :data:`BOX_FILL_LIMIT`, also logged naming ``case_id`` or the image).
    """
    if method not in SEGMENTERS:
        raise ConfigError(f"unknown segmenter {method!r} (choose from {', '.join(SEGMENTERS)})")
    roi = np.asarray(image.data[box.slices], dtype=np.float64)
    if roi.size < 8 or np.ptp(roi) == 0:
        raise InvalidInputError(f"box {box.lo}-{box.hi} holds {roi.size} voxels of {'constant' if roi.size else 'no'} intensity: nothing to segment")
    spacing = np.asarray(image.spacing)
    anchor = np.clip(np.asarray(box.anchor) - np.asarray(box.lo), 0, np.asarray(roi.shape) - 1)
    if method == "knn":
        lesion = _knn(roi, spacing, anchor, seed)
    else:
        bright = _CLUSTERERS[method](roi, seed)
        lesion = bright if _bright_is_lesion(bright, anchor) else ~bright
    if prior:
        lesion = box_prior(lesion, roi, anchor=anchor, spacing=spacing, beta=prior_beta)
    lesion = clean_mask(lesion, anchor=anchor, spacing=spacing)
    if not lesion.any():
        raise InvalidInputError(f"the {method} segmenter found no lesion inside box {box.lo}-{box.hi}")
    fraction = _check_box_fill(lesion, box, method, case_id or str(image.metadata.get("source", "image")))
    full = np.zeros(image.shape, dtype=np.uint8)
    full[box.slices] = lesion
    step = Step("segment_in_box", {"method": method, "lo": box.lo, "hi": box.hi, "seed": seed,
                                   "prior": prior, "prior_beta": prior_beta if prior else None})
    return image.with_data(full, step=step, format="mask", segmenter=method, box_prior=prior,
                           box_fraction=round(fraction, 4), fills_box=fraction > BOX_FILL_LIMIT)
