"""A tiny labelled cohort for model tests: noisy volumes with or without a bright sphere.

Each case gets its own oblique, anisotropic or flipped affine so training and prediction are exercised
on non-identity geometry. Far simpler than :mod:`medxai.synthetic` on purpose: it is fast at 24-32^3.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medxai.io.nifti import write_nifti
from medxai.volume import Volume

CLASSES = ("lesion", "normal")


def case_affine(rng: np.random.Generator) -> np.ndarray:
    """A random rotation (up to ~20 degrees), anisotropic spacing and random axis flips."""
    angles = rng.uniform(-0.35, 0.35, size=3)
    rotation = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        plane = [i for i in range(3) if i != axis]
        step = np.eye(3)
        step[np.ix_(plane, plane)] = [[c, -s], [s, c]]
        rotation = rotation @ step
    spacing = rng.uniform(0.8, 2.0, size=3) * rng.choice([-1.0, 1.0], size=3)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-40, 40, size=3)
    return affine


def sphere_volume(rng: np.random.Generator, *, size: int, lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """Image (float32) and lesion mask (uint8) of one case."""
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).astype(np.float32)
    image = rng.normal(0.0, 0.3, size=(size,) * 3).astype(np.float32) + grid[..., 0] / size
    mask = np.zeros((size,) * 3, dtype=np.uint8)
    if lesion:
        centre = rng.uniform(size * 0.3, size * 0.7, size=3)
        radius = rng.uniform(size * 0.12, size * 0.2)
        mask = (np.linalg.norm(grid - centre, axis=-1) <= radius).astype(np.uint8)
        image = image + 2.0 * mask
    return image, mask


def write_sphere_cohort(folder: str | Path, *, cases: int = 16, size: int = 24, seed: int = 0, channels: int = 1) -> Path:
    """Write ``cases`` cases (half with a sphere) and ``labels.csv``; returns the CSV path.

    With ``channels > 1`` each case has that many channel files (``image`` cells joined by ``;``)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(cases):
        lesion = index % 2 == 0
        image, mask = sphere_volume(rng, size=size, lesion=lesion)
        affine = case_affine(rng)
        case_id = f"case{index:03d}"
        names = []
        for channel in range(channels):
            name = f"images/{case_id}_c{channel}.nii.gz" if channels > 1 else f"images/{case_id}.nii.gz"
            write_nifti(Volume(image * (1.0 + channel), affine), folder / name)
            names.append(name)
        write_nifti(Volume(mask, affine), folder / f"masks/{case_id}.nii.gz")
        rows.append({"case_id": case_id, "image": ";".join(names), "mask": f"masks/{case_id}.nii.gz",
                     "label": CLASSES[0] if lesion else CLASSES[1]})
    csv_path = folder / "labels.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "image", "mask", "label"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return csv_path
