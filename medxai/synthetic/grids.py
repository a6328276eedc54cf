"""Voxel grids for rendering phantoms: identity-like, anisotropic, oblique and flipped (LPS-like).

Every grid covers the same field of view (``spec.fov_mm``, or ``size`` mm for a bare seed) centred on the
phantom, so the voxel count shrinks along thick-slice axes and the image stays at most ``size^3``.
"""
from __future__ import annotations

import numpy as np

from medxai.errors import ConfigError
from medxai.synthetic.anatomy import rotation_about
from medxai.synthetic.phantom import PhantomSpec, phantom_centre

GRID_KINDS = ("identity", "anisotropic", "oblique", "flipped")


def _linear(kind: str, rng: np.random.Generator, voxel_mm: float) -> np.ndarray:
    """The affine's linear part (columns = voxel axes in RAS mm) for ``kind``."""
    if kind == "identity":
        return np.eye(3) * voxel_mm
    if kind == "flipped":
        return np.diag([-1.0, -1.0, 1.0]) * voxel_mm
    thick = rng.uniform(2.0, 3.0) * voxel_mm
    if kind == "anisotropic":
        return np.diag([voxel_mm, voxel_mm, thick])
    in_plane = rng.uniform(1.0, 1.2, size=2) * voxel_mm
    first, second = rng.choice(3, size=2, replace=False)
    angles = np.deg2rad(rng.uniform(10.0, 25.0, size=2) * rng.choice([-1.0, 1.0], size=2))
    rotation = rotation_about(np.eye(3)[first], angles[0]) @ rotation_about(np.eye(3)[second], angles[1])
    return rotation @ np.diag([in_plane[0], in_plane[1], thick])


def default_grid(spec_or_seed: PhantomSpec | int, *, size: int, kind: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(affine, shape) of a ``kind`` grid covering the phantom's field of view with ``size`` voxels per
    1-voxel-thick axis; thick axes get fewer voxels. Deterministic per seed.

    ``kind``: ``identity`` (RAS, isotropic), ``anisotropic`` (2-3x thicker slices along k), ``oblique``
    (rotated 10-25 degrees about two axes, anisotropic) or ``flipped`` (i and j reversed, LPS-like).
    """
    if kind not in GRID_KINDS:
        raise ConfigError(f"unknown grid kind {kind!r}; choose one of {', '.join(GRID_KINDS)}")
    if isinstance(spec_or_seed, PhantomSpec):
        seed, centre, fov = spec_or_seed.seed, np.asarray(spec_or_seed.centre_mm), spec_or_seed.fov_mm
    else:
        seed, centre, fov = int(spec_or_seed), np.asarray(phantom_centre(int(spec_or_seed))), float(size)
    rng = np.random.default_rng([seed, 3, GRID_KINDS.index(kind)])
    linear = _linear(kind, rng, fov / size)
    spacing = np.linalg.norm(linear, axis=0)
    shape = tuple(max(2, int(round(fov / s))) for s in spacing)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = centre - linear @ ((np.asarray(shape) - 1) / 2.0)
    return affine, shape  # type: ignore[return-value]
