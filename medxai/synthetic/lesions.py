"""Lesions (lobulated, optionally spiculated, with a peritumoral halo) and the distractor blobs.

A lesion is an ellipsoid whose surface radius is modulated by direction: broad bumps give lobulation,
narrow bumps give spicules and plane waves on the unit sphere give a rough margin (the star-shaped
"radial function" description of tumour margins, e.g. Georgiou et al., IEEE TMI 2007). Malignant
lesions are spiculated and carry a halo, a band of changed signal in the surrounding tissue such as the
peritumoral oedema/infiltration that peritumoral radiomics measures (Braman et al., Breast Cancer Res
2017). Hand-written: analytic shapes on arbitrary grids are not in any imaging library.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from medxai.synthetic.anatomy import (
    Ellipsoid,
    Matrix,
    Points,
    Vector,
    Wave,
    as_vector,
    depths_inside,
    edge_variance,
    fibonacci_sphere,
    points_in,
    random_rotation,
    radial_frame,
    random_waves,
    rotated,
    soft_step,
    transform,
    unit_vector,
    waves,
)

HALO_FALLOFF_MM = 1.0
_CORE_BLUR_MM = 0.8
_SPHERE = fibonacci_sphere(2000)


@dataclass(frozen=True)
class Bump:
    """Outward displacement ``amplitude * exp(sharpness * (cos(angle to direction) - 1))`` of the margin."""

    direction: Vector
    amplitude: float
    sharpness: float


@dataclass(frozen=True)
class LesionSpec:
    """A lesion in world mm. ``irregularity`` scales spicules and margin roughness (0 = smooth margin);
    ``halo_amplitude`` is the fractional signal change of the tissue within ``halo_width_mm`` outside;
    deeper than ``core_depth_mm`` inside the margin the signal is ``core_ratio`` times the rim's (a
    necrotic or cystic core; 1 = solid)."""

    centre_mm: Vector
    radii_mm: Vector
    rotation: Matrix
    intensity: float
    contrast: float
    lobes: tuple[Bump, ...]
    spicules: tuple[Bump, ...]
    roughness: tuple[Wave, ...]
    irregularity: float
    halo_amplitude: float
    halo_width_mm: float
    texture: tuple[Wave, ...]
    core_depth_mm: float = 0.0
    core_ratio: float = 1.0
    blur_mm: float = 0.3

    @property
    def extent_mm(self) -> float:
        """The largest distance from the centre to the margin (the margin radius maximised over a dense
        set of directions that includes every bump's peak)."""
        bumps = np.array([b.direction for b in self.lobes + self.spicules]).reshape(-1, 3)
        directions = np.concatenate([_SPHERE, bumps]).T.astype(np.float32)
        return float(max(self.radii_mm) * margin_radius(directions, self).max() * 1.01)

    def smooth(self) -> "LesionSpec":
        """The benign version: same size, place and contrast, smooth margin, no halo."""
        return replace(self, irregularity=0.0, halo_amplitude=0.0)


def _bump_sum(direction: np.ndarray, bumps: tuple[Bump, ...]) -> np.ndarray:
    total = np.zeros(direction.shape[1:], dtype=np.float32)
    for bump in bumps:
        cosine = transform(np.asarray(bump.direction)[None, :], direction)[0]
        total += np.float32(bump.amplitude) * np.exp(np.float32(bump.sharpness) * (cosine - 1.0))
    return total


def lesion_frame(lesion: LesionSpec) -> Ellipsoid:
    return Ellipsoid(lesion.centre_mm, lesion.radii_mm, lesion.rotation, lesion.intensity, lesion.blur_mm)


def margin_radius(direction: np.ndarray, lesion: LesionSpec) -> np.ndarray:
    """Margin radius (in units of the ellipsoid radii) along unit directions (3, ...) of the unit-sphere frame."""
    radius = 1.0 + _bump_sum(direction, lesion.lobes)
    if lesion.irregularity > 0:
        radius += np.float32(lesion.irregularity) * _bump_sum(direction, lesion.spicules)
        radius += np.float32(lesion.irregularity) * waves(direction, lesion.roughness)
    return radius


def lesion_distance(points: Points, lesion: LesionSpec) -> tuple[np.ndarray, np.ndarray]:
    """(signed radial distance to the margin in mm, negative inside; unit-sphere coordinates u)."""
    u, rho, mm_per_rho = radial_frame(*rotated(points, lesion_frame(lesion)), lesion.radii_mm)
    direction = u / np.maximum(rho, np.float32(1e-6))
    return (rho - margin_radius(direction, lesion)) * mm_per_rho, u


def lesion_occupancy(points: Points, distance_mm: np.ndarray, u: np.ndarray, lesion: LesionSpec) -> np.ndarray:
    """Partial-volume occupancy, the edge blurred along the underlying ellipsoid's normal."""
    return soft_step(distance_mm, edge_variance(u, lesion_frame(lesion), points))


def lesion_intensity(points: Points, distance_mm: np.ndarray, lesion: LesionSpec) -> np.ndarray:
    """The lesion's own signal: its intensity with a fine internal texture and, if any, a darker core."""
    values = np.float32(lesion.intensity) * (1.0 + waves(points.local(lesion.centre_mm), lesion.texture))
    if lesion.core_ratio != 1.0:
        core = soft_step(distance_mm + np.float32(lesion.core_depth_mm), np.float32(_CORE_BLUR_MM**2))
        values *= 1.0 - np.float32(1.0 - lesion.core_ratio) * core
    return values


def halo_gain(distance_mm: np.ndarray, lesion: LesionSpec) -> np.ndarray:
    """Multiplicative tissue change: ``1 + amplitude`` up to ``halo_width_mm`` outside, fading over ~2 mm."""
    profile = 0.5 * (1.0 - np.tanh((distance_mm - np.float32(lesion.halo_width_mm)) / np.float32(HALO_FALLOFF_MM)))
    return (1.0 + np.float32(lesion.halo_amplitude) * profile).astype(np.float32)


def sample_lesion(rng: np.random.Generator, *, inner: Ellipsoid, tissue: float, scale: float) -> LesionSpec:
    """A malignant-looking lesion inside ``inner`` (call ``.smooth()`` for its benign twin).

    The number of draws does not depend on any class, so a seed gives the same lesion for every label.
    Radii are log-uniform in 3.5-10 mm (at a 64 mm field of view), 85 % of lesions are 1.5-2x brighter than
    tissue (the others darker), and half of those with all radii over 5 mm have a darker core.
    """
    radius = max(float(np.exp(rng.uniform(np.log(3.5), np.log(10.0)))) * scale, 2.0)
    radii = radius * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.7, 1.0)])
    rotation = random_rotation(rng)
    bright, bright_contrast, dark_contrast = rng.uniform() < 0.85, rng.uniform(0.5, 0.95), -rng.uniform(0.4, 0.6)
    contrast = float(bright_contrast if bright else dark_contrast)
    lobes = tuple(Bump(as_vector(unit_vector(rng)), float(rng.uniform(0.0, 0.12)), float(rng.uniform(2.0, 6.0)))
                  for _ in range(3))
    spicules = tuple(Bump(as_vector(unit_vector(rng)), float(rng.uniform(0.3, 0.8)), float(rng.uniform(25.0, 90.0)))
                     for _ in range(int(rng.integers(6, 15))))
    roughness = random_waves(rng, count=4, wavelength_mm=(0.35, 0.7), amplitude=0.06)
    irregularity = float(rng.uniform(0.7, 1.0))
    halo_amplitude, halo_width = float(rng.uniform(0.10, 0.22)), float(rng.uniform(4.0, 8.0) * scale)
    texture = random_waves(rng, count=3, wavelength_mm=(4.0 * scale, 8.0 * scale), amplitude=0.08)
    necrotic, core_ratio, core_depth = rng.uniform() < 0.5, float(rng.uniform(0.45, 0.75)), float(rng.uniform(2.0, 3.0))
    if not necrotic or min(radii) < 5.0 * scale:
        core_ratio = 1.0
    lesion = LesionSpec(
        centre_mm=inner.centre_mm, radii_mm=as_vector(radii), rotation=rotation,
        intensity=float(tissue * (1.0 + contrast)), contrast=contrast, lobes=lobes, spicules=spicules,
        roughness=roughness, irregularity=irregularity, halo_amplitude=halo_amplitude, halo_width_mm=halo_width,
        texture=texture, core_depth_mm=core_depth * scale, core_ratio=core_ratio,
    )
    candidates = points_in(inner, rng, count=512)
    deep = np.flatnonzero(depths_inside(inner, candidates) >= lesion.smooth().extent_mm + 1.0)
    # the inner body's centre is always deep enough for the sizes drawn above
    return replace(lesion, centre_mm=as_vector(candidates[deep[0]])) if deep.size else lesion


def sample_distractors(rng: np.random.Generator, *, inner: Ellipsoid, lesion: LesionSpec, tissue: float,
                       scale: float) -> tuple[Ellipsoid, ...]:
    """1-3 bright, smooth, homogeneous blobs (vessel- or calcification-like) that never touch the lesion.

    They are on average brighter than lesions so that "the brightest blob" is the wrong answer. Each is
    placed clear of the lesion and its halo when there is room, else clear of the lesion only, shrinking
    it when even that fails; pass the malignant form of the lesion so the placement is label-independent.
    """
    lesion_extent = max(lesion.extent_mm, lesion.smooth().extent_mm)
    placed: list[Ellipsoid] = []
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(2.0, 3.5) * scale
        radii = radius * np.array([rng.uniform(1.0, 2.5), 1.0, rng.uniform(0.8, 1.0)])
        blob = Ellipsoid((0.0, 0.0, 0.0), as_vector(radii), random_rotation(rng),
                         float(tissue * rng.uniform(2.0, 2.6)), blur_mm=0.3)
        candidates = points_in(inner, rng, count=512)
        for clearance, shrink in ((lesion.halo_width_mm + 2 * HALO_FALLOFF_MM, 1.0), (1.0, 1.0), (1.0, 0.7), (1.0, 0.5)):
            reach = float(radii.max()) * shrink
            valid = (depths_inside(inner, candidates) >= reach + 1.0) & (
                np.linalg.norm(candidates - lesion.centre_mm, axis=1) >= lesion_extent + clearance + reach)
            for other in placed:
                valid &= np.linalg.norm(candidates - other.centre_mm, axis=1) >= reach + max(other.radii_mm) + 2.0
            if valid.any():
                centre = candidates[np.flatnonzero(valid)[0]]
                placed.append(replace(blob, centre_mm=as_vector(centre), radii_mm=as_vector(radii * shrink)))
                break
    return tuple(placed)
