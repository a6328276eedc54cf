"""Volume: a 3D array that never travels without its geometry and its history.

``data`` is indexed (i, j, k) like nibabel; ``affine`` maps voxel indices to RAS+ world coordinates in mm
(the NIfTI convention). ``history`` lists the steps applied to reach this volume from the file it was read
from, so a result can always say how it was made and be mapped back.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class Step:
    """One applied operation: a name and the parameters needed to describe (or invert) it."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar volume with its voxel-to-RAS affine (mm), metadata and applied-steps history."""

    data: np.ndarray
    affine: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3D, got shape {self.data.shape}")
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (column norms of the affine's linear part)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as ``'RAS'`` or ``'LPS'`` (nearest anatomical direction of each index axis)."""
        return "".join(nib.orientations.aff2axcodes(self.affine))

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices (N, 3) to RAS mm (N, 3)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map RAS mm (N, 3) to (fractional) voxel indices (N, 3)."""
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        inverse = np.linalg.inv(self.affine)
        return xyz @ inverse[:3, :3].T + inverse[:3, 3]

    def same_grid(self, other: "Volume", *, atol_mm: float = 1e-3) -> bool:
        """True when both volumes share shape and affine (within ``atol_mm``)."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol_mm))

    def with_data(self, data: np.ndarray, *, step: Step | None = None, **metadata: Any) -> "Volume":
        """A volume on the same grid with new voxel values, an optional history step and metadata updates."""
        if data.shape != self.data.shape:
            raise ValueError(f"new data shape {data.shape} differs from the grid {self.data.shape}")
        history = self.history + ((step,) if step else ())
        return replace(self, data=data, metadata={**self.metadata, **metadata}, history=history)
