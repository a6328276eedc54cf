"""A labelled phantom cohort on disk: ``images/``, ``masks/`` and ``labels.csv`` (DESIGN.md contract)."""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from medxai.errors import ConfigError
from medxai.io.nifti import write_nifti
from medxai.io.atomic import write_text_atomic
from medxai.synthetic.grids import default_grid
from medxai.synthetic.phantom import MIN_SIZE, Phantom, check_task, make_spec, render

LABELS_HEADER = ("case_id", "image", "mask", "label")
NON_IDENTITY_FRACTION = 0.25
_NON_IDENTITY_KINDS = ("oblique", "anisotropic", "flipped")

ProgressCallback = Callable[[str, int, int], None]


def write_phantom(phantom: Phantom, image_path: str | Path, mask_path: str | Path | None) -> None:
    """Write the image (float32) and, when ``mask_path`` is given, the lesion mask (uint8), atomically."""
    write_nifti(phantom.image, image_path, dtype=np.float32)
    if mask_path is not None:
        write_nifti(phantom.mask, mask_path, dtype=np.uint8)


def case_seed(seed: int, index: int) -> int:
    """The phantom seed of case ``index`` of a cohort drawn with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def cohort_plan(*, cases: int, seed: int, task: str, grid_mix: bool) -> list[tuple[str, str]]:
    """(label, grid kind) per case: exactly balanced classes in shuffled order; with ``grid_mix`` a
    quarter of each class on anisotropic, oblique or flipped grids (so the grid says nothing of the label)."""
    classes = check_task(task)
    rng = np.random.default_rng([seed, 4])
    labels = [classes[i % len(classes)] for i in range(cases)]
    labels = [labels[i] for i in rng.permutation(cases)]
    kinds = ["identity"] * cases
    if grid_mix:
        turn = 0
        for label in classes:
            members = [i for i, value in enumerate(labels) if value == label]
            for i in rng.permutation(members)[: int(round(NON_IDENTITY_FRACTION * len(members)))]:
                kinds[int(i)] = _NON_IDENTITY_KINDS[turn % len(_NON_IDENTITY_KINDS)]
                turn += 1
    return list(zip(labels, kinds))


def make_cohort(out_dir: str | Path, *, cases: int, seed: int = 0, size: int = 64, task: str = "presence",
                grid_mix: bool = True, progress: ProgressCallback | None = None) -> Path:
    """Write ``cases`` phantoms and ``labels.csv`` under ``out_dir``; return the CSV path.

    Case ``case_0001``... is ``make_spec(seed=case_seed(seed, i), task=task, label=...)`` rendered on its
    ``default_grid`` (identity-like 1 mm grids, or with ``grid_mix`` a quarter anisotropic/oblique/flipped)
    with noise seeded by the same case seed, so a seed always gives byte-identical data. Lesion-free cases
    have no mask file and an empty ``mask`` column. The CSV is written last.
    """
    if cases < 2:
        raise ConfigError(f"a cohort needs at least 2 cases (one per class), got {cases}")
    if size < MIN_SIZE:
        raise ConfigError(f"phantom size must be at least {MIN_SIZE} voxels, got {size}")
    out_dir = Path(out_dir)
    width = max(4, len(str(cases)))
    rows = []
    plan = cohort_plan(cases=cases, seed=seed, task=task, grid_mix=grid_mix)
    for index, (label, kind) in enumerate(plan):
        case_id = f"case_{index + 1:0{width}d}"
        phantom_seed = case_seed(seed, index)
        spec = make_spec(seed=phantom_seed, task=task, label=label, size=size)
        affine, shape = default_grid(spec, size=size, kind=kind)
        phantom = render(spec, affine=affine, shape=shape, noise_seed=phantom_seed)
        image = f"images/{case_id}.nii.gz"
        mask = f"masks/{case_id}.nii.gz" if spec.lesion is not None else ""
        write_phantom(phantom, out_dir / image, out_dir / mask if mask else None)
        rows.append((case_id, image, mask, label))
        if progress is not None:
            progress("phantoms", index + 1, cases)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(LABELS_HEADER)
    writer.writerows(rows)
    labels_csv = out_dir / "labels.csv"
    write_text_atomic(labels_csv, text.getvalue())
    return labels_csv


def class_counts(labels_csv: str | Path) -> dict[str, int]:
    """Cases per label in a ``labels.csv``."""
    with open(labels_csv, newline="", encoding="utf-8") as handle:
        return dict(Counter(row["label"] for row in csv.DictReader(handle)))
