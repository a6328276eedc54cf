"""Largest connected component and hole filling on hand-made masks."""
from __future__ import annotations

import numpy as np

from medxai.segmentation.postprocess import clean_mask, fill_holes, largest_component


def test_largest_component_keeps_the_bigger_blob() -> None:
    mask = np.zeros((20, 20, 20), bool)
    mask[2:5, 2:5, 2:5] = True  # 27 voxels
    mask[10:12, 10:12, 10:12] = True  # 8 voxels
    kept = largest_component(mask)
    assert kept.sum() == 27 and kept[3, 3, 3] and not kept[10, 10, 10]


def test_connectivity_decides_whether_corner_neighbours_join() -> None:
    mask = np.zeros((6, 6, 6), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[3, 3, 3] = True  # corner-touching chain
    mask[5, 0, 0] = mask[5, 0, 1] = True  # a face-connected pair
    assert largest_component(mask, connectivity=3).sum() == 3
    assert largest_component(mask, connectivity=1).sum() == 2


def test_fill_holes_fills_an_enclosed_cavity_only() -> None:
    shell = np.zeros((9, 9, 9), bool)
    shell[2:7, 2:7, 2:7] = True
    shell[3:6, 3:6, 3:6] = False  # 27-voxel cavity
    assert shell.sum() == 125 - 27
    assert fill_holes(shell).sum() == 125
    open_cup = shell.copy()
    open_cup[4, 4, 6] = False  # a hole in the wall connects the cavity to the outside
    assert fill_holes(open_cup).sum() == open_cup.sum()


def test_clean_mask_fills_before_keeping_the_largest() -> None:
    mask = np.zeros((12, 12, 12), bool)
    mask[1:6, 1:6, 1:6] = True
    mask[2:5, 2:5, 2:5] = False  # shell: 98 voxels, 27 of cavity
    mask[7:12, 7:12, 7:12] = True  # solid 125-voxel cube, bigger than the shell alone
    assert clean_mask(mask, keep_largest=True, fill=False).sum() == 125
    both = clean_mask(mask, keep_largest=True, fill=True)
    assert both.sum() == 125  # filled shell ties the cube at 125; lowest label (the shell) is kept
    assert both[3, 3, 3]
    assert clean_mask(mask, keep_largest=False, fill=False).sum() == mask.sum()
