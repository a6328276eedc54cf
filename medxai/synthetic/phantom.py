"""Synthetic 3D phantoms with known ground truth, defined analytically in world coordinates (RAS mm).

A :class:`PhantomSpec` is drawn from a seed by :func:`make_spec`; :func:`render` samples it on any voxel
grid (affine + shape), so the same spec gives the same anatomy in mm on an identity, anisotropic,
oblique or flipped grid. Class labels depend only on the lesion: ``presence`` (normal / lesion) and
``malignancy`` (benign: smooth, no halo / malignant: spiculated margin and a peritumoral halo). The
image is MR-like: soft tissue with smooth structures and texture, a bright rim, bright distractor blobs
in every class, a multiplicative bias field and Rician noise (Gudbjartsson & Patz, MRM 1995).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medxai.errors import ConfigError
from medxai.synthetic.anatomy import (
    Ellipsoid,
    Points,
    Vector,
    Wave,
    as_matrix,
    as_vector,
    bias_field,
    depths_inside,
    ellipsoid_occupancy,
    paint,
    points_in,
    random_bias,
    random_rotation,
    random_waves,
    rotated,
    rotation_about,
    unit_vector,
    waves,
)
from medxai.synthetic.lesions import (
    HALO_FALLOFF_MM,
    LesionSpec,
    halo_gain,
    lesion_distance,
    lesion_intensity,
    lesion_occupancy,
    sample_distractors,
    sample_lesion,
)
from medxai.volume import Step, Volume

TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "presence": ("normal", "lesion"),
    "malignancy": ("benign", "malignant"),
}
MIN_SIZE = 16
_PLACEMENT_TRIES = 50
_REFERENCE_FOV_MM = 64.0  # lengths below are drawn for a 64 mm field of view and scaled to the actual one


@dataclass(frozen=True)
class PhantomSpec:
    """Everything needed to render one phantom, in world mm; ``lesion`` is None for lesion-free cases."""

    seed: int
    task: str
    label: str
    fov_mm: float
    centre_mm: Vector
    tissue: float
    body: Ellipsoid
    inner: Ellipsoid
    structures: tuple[Ellipsoid, ...]
    texture: tuple[Wave, ...]
    lesion: LesionSpec | None
    distractors: tuple[Ellipsoid, ...]
    bias: tuple[float, ...]
    noise_sigma: float


@dataclass(frozen=True)
class Phantom:
    """A rendered phantom: image, lesion mask on the same grid (all zeros without lesion), label."""

    image: Volume
    mask: Volume
    label: str
    lesion_centre_mm: tuple[float, float, float] | None
    spec: PhantomSpec


def phantom_centre(seed: int) -> Vector:
    """The world position of a seed's phantom (non-zero, so grids have non-trivial origins)."""
    return as_vector(np.random.default_rng([seed, 1]).uniform(-40.0, 40.0, size=3))


def check_task(task: str) -> tuple[str, ...]:
    if task not in TASK_CLASSES:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASK_CLASSES)}")
    return TASK_CLASSES[task]


def _body(rng: np.random.Generator, centre: np.ndarray, fov: float, tissue: float, scale: float
          ) -> tuple[Ellipsoid, Ellipsoid]:
    radii = fov * np.array([rng.uniform(0.40, 0.46), rng.uniform(0.42, 0.47), rng.uniform(0.38, 0.44)])
    tilt = as_matrix(rotation_about(unit_vector(rng), np.deg2rad(rng.uniform(-8.0, 8.0))))
    rim = rng.uniform(2.5, 4.0) * scale
    body = Ellipsoid(as_vector(centre), as_vector(radii), tilt, float(tissue * rng.uniform(1.2, 1.5)), 0.5)
    inner = Ellipsoid(as_vector(centre), as_vector(radii - rim), tilt, float(tissue), 0.5)
    return body, inner


def _structures(rng: np.random.Generator, inner: Ellipsoid, tissue: float, scale: float) -> tuple[Ellipsoid, ...]:
    """2-4 smooth internal structures (ventricle-, nucleus-like) of darker or slightly brighter signal."""
    structures = []
    for _ in range(int(rng.integers(2, 5))):
        radii = rng.uniform(4.0, 12.0) * scale * np.array([1.0, rng.uniform(0.5, 1.0), rng.uniform(0.4, 1.0)])
        ratio = rng.uniform(0.35, 0.8) if rng.uniform() < 0.6 else rng.uniform(1.12, 1.3)
        centre = points_in(inner, rng, count=1, fraction=0.6)
        if depths_inside(inner, centre)[0] < 0.5 * radii.max():
            continue
        centre = centre[0]
        structures.append(Ellipsoid(as_vector(centre), as_vector(radii), random_rotation(rng),
                                    float(tissue * ratio), float(rng.uniform(0.6, 1.5) * scale)))
    return tuple(structures)


def make_spec(*, seed: int, task: str = "presence", label: str | None = None, size: int = 64) -> PhantomSpec:
    """Draw a phantom from ``seed``: anatomy, lesion, distractors, bias and noise for a ``size`` mm field of view.

    ``label=None`` draws the class at random. Everything but the lesion is the same for every label of a
    seed (the lesion is drawn for lesion-free cases too, and then left out), so counterfactual pairs
    differ only in the lesion, and in ``malignancy`` only in its margin and halo.
    """
    classes = check_task(task)
    if label is None:
        label = classes[int(np.random.default_rng([seed, 2]).integers(len(classes)))]
    if label not in classes:
        raise ConfigError(f"unknown label {label!r} for task {task!r}; choose one of {', '.join(classes)}")
    if size < MIN_SIZE:
        raise ConfigError(f"phantom size must be at least {MIN_SIZE} voxels, got {size}")
    fov = float(size)
    scale = fov / _REFERENCE_FOV_MM
    centre = np.asarray(phantom_centre(seed))
    rng = np.random.default_rng([seed, 0])
    tissue = float(rng.uniform(300.0, 380.0))
    body, inner = _body(rng, centre, fov, tissue, scale)
    structures = _structures(rng, inner, tissue, scale)
    texture = random_waves(rng, count=4, wavelength_mm=(15.0 * scale, 45.0 * scale), amplitude=0.04)
    bias = random_bias(rng)
    noise_sigma = float(tissue * rng.uniform(0.025, 0.045))
    for _ in range(_PLACEMENT_TRIES):  # redraw the (rare) big central lesion that leaves no room for a distractor
        lesion = sample_lesion(rng, inner=inner, tissue=tissue, scale=scale)
        distractors = sample_distractors(rng, inner=inner, lesion=lesion, tissue=tissue, scale=scale)
        if distractors:
            break
    malignant_like = bool(rng.uniform() < 0.5)
    if label == "normal":
        lesion_or_none: LesionSpec | None = None
    elif label == "benign" or (label == "lesion" and not malignant_like):
        lesion_or_none = lesion.smooth()
    else:
        lesion_or_none = lesion
    return PhantomSpec(
        seed=seed, task=task, label=label, fov_mm=fov, centre_mm=as_vector(centre), tissue=tissue, body=body,
        inner=inner, structures=structures, texture=texture, lesion=lesion_or_none, distractors=distractors,
        bias=bias, noise_sigma=noise_sigma,
    )


def _reach(points: Points, radius_mm: float, blur_mm: float) -> float:
    """Radius of the ball outside which a soft shape's occupancy is below 0.2 %."""
    return radius_mm + 4.5 * float(np.sqrt(blur_mm**2 + points.max_spacing() ** 2 / 12.0))


def _paint_ellipsoid(values: np.ndarray, points: Points, shape: Ellipsoid, intensity: np.ndarray | None = None) -> None:
    """Paint a small ellipsoid in place, evaluating it only on the block around it."""
    slices, block = points.block(shape.centre_mm, _reach(points, max(shape.radii_mm), shape.blur_mm))
    fill = np.float32(shape.intensity) if intensity is None else intensity.reshape(points.shape)[slices]
    occupancy = ellipsoid_occupancy(block, shape).reshape(block.shape)
    values[slices] = paint(values[slices], occupancy, fill)


def _anatomy(points: Points, spec: PhantomSpec) -> np.ndarray:
    texture = 1.0 + waves(points.xyz, spec.texture)
    frame = rotated(points, spec.body)  # body and inner body are concentric and equally rotated
    values = ellipsoid_occupancy(points, spec.body, frame) * np.float32(spec.body.intensity)
    values = paint(values, ellipsoid_occupancy(points, spec.inner, frame), np.float32(spec.tissue) * texture)
    values = values.reshape(points.shape)
    for structure in spec.structures:
        _paint_ellipsoid(values, points, structure, np.float32(structure.intensity) * texture)
    return values


def _add_lesion(values: np.ndarray, points: Points, spec: PhantomSpec, lesion: LesionSpec) -> np.ndarray:
    """Halo (before the distractors, which keep clear of it) and lesion, in place; returns the mask."""
    halo_reach = lesion.halo_width_mm + 4.0 * HALO_FALLOFF_MM if lesion.halo_amplitude > 0 else 0.0
    reach = lesion.extent_mm + max(halo_reach, _reach(points, 0.0, lesion.blur_mm))
    slices, block = points.block(lesion.centre_mm, reach)
    distance, u = lesion_distance(block, lesion)
    distance, u = distance.reshape(block.shape), u.reshape(3, *block.shape)
    if lesion.halo_amplitude > 0:
        inside_body = ellipsoid_occupancy(block, spec.inner).reshape(block.shape)
        values[slices] *= 1.0 + (halo_gain(distance, lesion) - 1.0) * inside_body
    for blob in spec.distractors:
        _paint_ellipsoid(values, points, blob)
    occupancy = lesion_occupancy(block, distance, u, lesion)
    values[slices] = paint(values[slices], occupancy, lesion_intensity(block, distance.reshape(-1), lesion).reshape(block.shape))
    mask = np.zeros(points.shape, dtype=np.uint8)
    mask[slices] = distance <= 0
    return mask


def render(spec: PhantomSpec, *, affine: np.ndarray, shape: tuple[int, int, int],
           noise_seed: int | None = 0) -> Phantom:
    """Sample ``spec`` on the grid (``affine`` voxel -> RAS mm, ``shape``); ``noise_seed=None`` = noise-free.

    The mask is the set of voxels whose centre lies inside the lesion margin (uint8).
    """
    affine = np.asarray(affine, dtype=np.float64)
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    points = Points.from_grid(affine, shape, spec.centre_mm)
    values = _anatomy(points, spec)
    if spec.lesion is None:
        for blob in spec.distractors:
            _paint_ellipsoid(values, points, blob)
        mask = np.zeros(shape, dtype=np.uint8)
    else:
        mask = _add_lesion(values, points, spec, spec.lesion)
    values *= bias_field(points, spec.bias, spec.fov_mm / 2).reshape(shape)
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).standard_normal((2, *shape), dtype=np.float32)
        noise *= np.float32(spec.noise_sigma)
        values = np.sqrt((values + noise[0]) ** 2 + noise[1] ** 2)
    metadata = {"source": "synthetic", "seed": spec.seed, "task": spec.task, "label": spec.label}
    step = Step("synthetic_phantom", {"seed": spec.seed, "task": spec.task, "noise_seed": noise_seed})
    image = Volume(values.astype(np.float32, copy=False), affine, metadata, (step,))
    mask_volume = Volume(mask, affine, {**metadata, "format": "mask"}, (step,))
    centre = None if spec.lesion is None else spec.lesion.centre_mm
    return Phantom(image=image, mask=mask_volume, label=spec.label, lesion_centre_mm=centre, spec=spec)
