"""Test grids that are not the identity: an oblique, flipped, anisotropic affine for geometry tests."""
from __future__ import annotations

import math

import numpy as np


def oblique_affine(spacing: tuple[float, float, float], *, angle: float = 0.4,
                   origin: tuple[float, float, float] = (12.0, -30.0, 55.0)) -> np.ndarray:
    """A voxel-to-RAS affine rotated by ``angle`` (radians) about the z axis, with the y axis flipped and the
    voxel ``spacing`` (mm) on its columns."""
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing) @ np.diag([1.0, -1.0, 1.0])
    affine[:3, 3] = origin
    return affine
