"""Dice, IoU, HD95 (mm) and volumes on an anisotropic, oblique grid with analytic answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medxai.errors import InvalidInputError
from medxai.segmentation.overlap import dice, hd95_mm, iou, overlap_scores, voxel_volume_ml
from medxai.volume import Volume

SPACING = (0.5, 1.0, 3.0)


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(25.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(SPACING) @ np.diag([-1.0, 1.0, 1.0])  # and flipped along i
    affine[:3, 3] = (12.0, -40.0, 7.5)
    return affine


def test_dice_and_iou_of_shifted_boxes() -> None:
    a = np.zeros((30, 20, 10), bool)
    b = np.zeros_like(a)
    a[5:15, 5:15, 3:7] = True
    b[7:17, 5:15, 3:7] = True  # shifted by 2 voxels: overlap 8 x 10 x 4 = 320 of 400 each
    assert dice(a, b) == pytest.approx(0.8)
    assert iou(a, b) == pytest.approx(320 / 480)
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_hd95_uses_the_spacing_of_each_axis() -> None:
    a = np.zeros((16, 12, 10), bool)
    b = np.zeros_like(a)
    a[:, :, 2] = True
    b[:, :, 5] = True  # three slices apart along k (3 mm each)
    assert hd95_mm(a, b, spacing=SPACING) == pytest.approx(9.0)
    a[:], b[:] = False, False
    a[2], b[6] = True, True  # four voxels apart along i (0.5 mm each)
    assert hd95_mm(a, b, spacing=SPACING) == pytest.approx(2.0)


def test_hd95_ignores_a_small_far_outlier_that_the_maximum_would_see() -> None:
    truth = np.zeros((40, 40, 12), bool)
    truth[:, :, 4] = True  # 1600 surface voxels
    pred = truth.copy()
    pred[0, 0, 11] = True  # one voxel 7 slices (21 mm) away
    assert hd95_mm(pred, truth, spacing=SPACING) == pytest.approx(0.0)
    assert math.isnan(hd95_mm(np.zeros_like(truth), truth, spacing=SPACING))


def test_overlap_scores_on_an_oblique_flipped_grid() -> None:
    affine = _oblique_affine()
    truth = np.zeros((30, 20, 10), np.uint8)
    pred = np.zeros_like(truth)
    truth[5:15, 5:15, 3:7] = 1
    pred[5:15, 5:15, 4:8] = 1  # shifted one slice along k: overlap 300 of 400, HD95 one slice = 3 mm
    scores = overlap_scores(Volume(pred, affine), Volume(truth, affine))
    assert scores["dice"] == pytest.approx(0.75)
    assert scores["iou"] == pytest.approx(300 / 500)
    assert scores["hd95_mm"] == pytest.approx(3.0)
    assert voxel_volume_ml(affine) == pytest.approx(0.5 * 1.0 * 3.0 / 1000)
    assert scores["volume_ml"] == pytest.approx(400 * 1.5 / 1000)


def test_masks_on_different_grids_are_refused() -> None:
    affine = _oblique_affine()
    shifted = affine.copy()
    shifted[:3, 3] += 5.0
    mask = np.ones((4, 4, 4), np.uint8)
    with pytest.raises(InvalidInputError):
        overlap_scores(Volume(mask, affine), Volume(mask, shifted, metadata={"source": "gt.nii.gz"}))
