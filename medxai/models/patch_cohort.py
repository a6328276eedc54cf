"""A labelled patch cohort cut from volumes with masks (``medxai patch-cohort``), for patch-trained models.

Each source volume is resampled to ``spacing_mm`` (image channels linear, mask nearest) and cut into cubes
of ``patch_size`` voxels. The labels are DERIVED FROM THE MASKS, not from diagnoses: ``lesion`` patches are
centred on mask voxels (centres drawn at random among them; a patch at the border is shifted inside the
scan, so its centre voxel may move but it still holds mask voxels), ``normal`` patches hold no mask voxel
and at least ``min_foreground`` of foreground, the voxels whose first channel differs from the volume's most
frequent value (the zero outside a skull-stripped brain, a scanner's padding). Each patch keeps its true
affine (the resampled grid's affine shifted to the patch corner), so its maps land on the source scan.

Output (the cohort ``medxai train`` reads): ``DIR/labels.csv`` (``case_id,image,mask,label,group``; ``group``
is the source case, so training validates on held-out patients), ``DIR/images/``, ``DIR/masks/`` and
``DIR/patches.json`` (patch size, spacing, the label rule, the source cases, the seed), which
:func:`read_patch_record` turns into the model's ``sliding_window`` record.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.atomic import output_folder
from medxai.io.data_files import read_data_file, read_table
from medxai.io.naming import case_id_from_path, safe_case_id
from medxai.volume import Volume

PATCHES_JSON = "patches.json"
FORMAT = "medxai-patch-cohort/1"
LESION, NORMAL = "lesion", "normal"
LABEL_RULE = {
    LESION: "patch centred on a mask voxel (derived from the mask, not a diagnosis)",
    NORMAL: "patch holding no mask voxel and at least min_foreground of foreground (derived from the mask)",
}
FOREGROUND_RULE = "first-channel voxels that differ from the volume's most frequent value"
OUTPUTS = ("labels.csv", PATCHES_JSON, "images", "masks")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PatchSettings:
    """``per_case``: at most this many patches of each label per source case; ``stride``: the grid normal
    patches are drawn from (default half a patch)."""

    patch_size: int = 32
    spacing_mm: float = 1.5
    per_case: int = 8
    seed: int = 0
    min_foreground: float = 0.5
    stride: int | None = None

    def __post_init__(self) -> None:
        if not 8 <= self.patch_size <= 256:
            raise ConfigError(f"patch size must be 8..256 voxels, got {self.patch_size}")
        if not 0.05 <= self.spacing_mm <= 20.0:
            raise ConfigError(f"spacing must be 0.05..20 mm, got {self.spacing_mm}")
        if self.per_case < 1:
            raise ConfigError(f"patches per case must be at least 1, got {self.per_case}")
        if not 0.0 <= self.min_foreground <= 1.0:
            raise ConfigError(f"minimum foreground must be a fraction 0..1, got {self.min_foreground}")
        if self.stride is not None and not 1 <= self.stride <= self.patch_size:
            raise ConfigError(f"stride must be 1..{self.patch_size} voxels, got {self.stride}")


@dataclass(frozen=True)
class SourceCase:
    case_id: str
    images: tuple[Path, ...]
    mask: Path


@dataclass(frozen=True)
class Patch:
    label: str
    corner: tuple[int, int, int]
    channels: tuple[Volume, ...]
    mask: Volume


def read_manifest(path: str | Path) -> list[SourceCase]:
    """The source cases of a ``case_id,image,mask,label`` manifest (``image`` may be ``a;b``; every row needs a
    mask; its ``label`` is not used: the patches' labels come from the masks)."""
    from medxai.models.dataset import split_channels

    path = Path(path)
    columns, rows = read_table(path, what="manifest")
    if not rows or not {"image", "mask"} <= set(columns):
        raise InvalidInputError("needs columns case_id,image,mask,label and at least one row", path=path)
    cases = []
    for number, row in enumerate(rows, start=2):
        images = split_channels(row.get("image", ""), path.parent)
        mask = row.get("mask", "")
        if not images or not mask:
            raise InvalidInputError(f"line {number}: a patch cohort needs an image and a mask in every row", path=path)
        if len(images) != len(cases[0].images if cases else images):
            raise InvalidInputError(f"line {number}: {len(images)} channel file(s), earlier rows have {len(cases[0].images)}", path=path)
        raw = row.get("case_id", "")
        cases.append(SourceCase(safe_case_id(raw) if raw else case_id_from_path(images[0]), images,
                                Path(mask) if Path(mask).is_absolute() else path.parent / mask))
    if len({case.case_id for case in cases}) != len(cases):
        raise InvalidInputError("case_id values are not unique", path=path)
    return cases


def resampled(volume: Volume, spacing_mm: float, *, nearest: bool = False) -> Volume:
    """``volume`` on a grid of ``spacing_mm`` voxels with the same axes and field of view (MONAI ``Spacing``)."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    tensor = MetaTensor(torch.from_numpy(np.asarray(volume.data, np.float32))[None],
                        affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    result = Spacing(pixdim=(spacing_mm,) * 3, mode="nearest" if nearest else "bilinear", padding_mode="border")(tensor)
    return Volume(np.ascontiguousarray(result[0].numpy()), np.asarray(result.affine, dtype=np.float64))


def box_sums(mask: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Voxel counts of ``mask`` in every ``size``^3 box on a ``stride`` grid (summed-volume table), and the starts."""
    table = np.pad(mask.astype(np.int64), ((1, 0),) * 3).cumsum(0).cumsum(1).cumsum(2)
    starts = [np.arange(0, n - size + 1, stride) for n in mask.shape]
    i, j, k = np.meshgrid(*starts, indexing="ij")
    a, b, c = i + size, j + size, k + size
    total = (table[a, b, c] - table[i, b, c] - table[a, j, c] - table[a, b, k]
             + table[i, j, c] + table[i, b, k] + table[a, j, k] - table[i, j, k])
    return total, starts


def patch_volume(volume: Volume, corner: Sequence[int], size: int) -> Volume:
    """The ``size``^3 patch at ``corner`` with the affine that keeps it where it was in the world."""
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ np.asarray(corner, float) + volume.affine[:3, 3]
    i, j, k = (int(c) for c in corner)
    return Volume(np.ascontiguousarray(volume.data[i:i + size, j:j + size, k:k + size]), affine)


def foreground(data: np.ndarray) -> np.ndarray:
    """Voxels that differ from the volume's most frequent value (:data:`FOREGROUND_RULE`)."""
    values, counts = np.unique(data, return_counts=True)
    return data != values[np.argmax(counts)]


def cut_case(case: SourceCase, settings: PatchSettings, rng: np.random.Generator) -> list[Patch]:
    """Up to ``per_case`` lesion and ``per_case`` normal patches of one source case."""
    from medxai.io.readers import read_mask, read_volume

    native = [read_volume(path) for path in case.images]
    for path, volume in zip(case.images[1:], native[1:]):
        if not volume.same_grid(native[0]):
            raise InvalidInputError(f"channels of case {case.case_id} do not share one grid", path=path)
    mask_native = read_mask(case.mask, native[0])
    channels = [resampled(volume, settings.spacing_mm) for volume in native]
    mask = resampled(mask_native, settings.spacing_mm, nearest=True)
    inside = mask.data > 0.5
    size = settings.patch_size
    if min(inside.shape) < size:
        raise InvalidInputError(f"the scan at {settings.spacing_mm} mm ({inside.shape}) is smaller than one "
                                f"{size}^3 patch", path=case.images[0])
    upper = np.asarray(inside.shape) - size
    centres = np.argwhere(inside)
    picked = centres[rng.choice(len(centres), size=min(settings.per_case, len(centres)), replace=False)]
    corners = {LESION: [np.clip(centre - size // 2, 0, upper) for centre in picked]}
    lesion_count, starts = box_sums(inside, size, settings.stride or max(size // 2, 1))
    body_count, _ = box_sums(foreground(channels[0].data), size, settings.stride or max(size // 2, 1))
    free = np.argwhere((lesion_count == 0) & (body_count >= settings.min_foreground * size**3))
    chosen = free[rng.permutation(len(free))[:settings.per_case]]
    corners[NORMAL] = [np.array([starts[axis][index[axis]] for axis in range(3)]) for index in chosen]
    mask_u8 = mask.with_data(inside.astype(np.uint8))
    return [Patch(label, tuple(int(c) for c in corner), tuple(patch_volume(v, corner, size) for v in channels),
                  patch_volume(mask_u8, corner, size))
            for label in (LESION, NORMAL) for corner in corners[label]]


def _labels_csv(rows: Sequence[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["case_id", "image", "mask", "label", "group"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_case_patches(case: SourceCase, patches: Sequence[Patch], folder: Path) -> list[dict[str, str]]:
    """Write one case's patches under ``folder`` (images/, masks/); return their labels.csv rows."""
    from medxai.io.nifti import write_nifti

    rows, numbers = [], {LESION: 0, NORMAL: 0}
    for patch in patches:
        patch_id = f"{case.case_id}_{patch.label}_{numbers[patch.label]:03d}"
        numbers[patch.label] += 1
        names = [f"images/{patch_id}.nii.gz"] if len(patch.channels) == 1 else [
            f"images/{patch_id}_c{index}.nii.gz" for index in range(len(patch.channels))]
        for name, volume in zip(names, patch.channels):
            write_nifti(volume, folder / name, dtype=np.float32)
        write_nifti(patch.mask, folder / f"masks/{patch_id}.nii.gz", dtype=np.uint8)
        rows.append({"case_id": patch_id, "image": ";".join(names), "mask": f"masks/{patch_id}.nii.gz",
                     "label": patch.label, "group": case.case_id})
    return rows


def write_patch_cohort(cases: Sequence[SourceCase], out: str | Path, settings: PatchSettings, *,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Cut every case and write the cohort into ``out`` (built in a hidden staging folder, moved into place at
    the end: a failure leaves nothing). Returns the ``patches.json`` record."""
    if not cases:
        raise ConfigError("no source cases to cut patches from")
    out = Path(out)
    taken = [name for name in OUTPUTS if (out / name).exists()]
    if taken:
        raise ConfigError(f"already holds {', '.join(taken)}; choose an empty folder for the patch cohort", path=out)
    rng = np.random.default_rng(settings.seed)
    with output_folder(out):
        staging = Path(tempfile.mkdtemp(prefix=".patch-cohort.", suffix=".tmp", dir=out))
        try:
            rows: list[dict[str, str]] = []
            sources = []
            for done, case in enumerate(cases):
                case_rows = write_case_patches(case, cut_case(case, settings, rng), staging)
                rows += case_rows
                sources.append({"case_id": case.case_id, "image": [str(p) for p in case.images], "mask": str(case.mask),
                                **{label: sum(r["label"] == label for r in case_rows) for label in (LESION, NORMAL)}})
                if progress is not None:
                    progress("Cutting patches", done + 1, len(cases))
            if not {row["label"] for row in rows} >= {LESION, NORMAL}:
                raise InvalidInputError("the masks gave patches of one label only; a cohort needs lesion and normal patches",
                                        path=cases[0].mask)
            record = {
                "format": FORMAT, "patch_size": [settings.patch_size] * 3, "spacing_mm": [settings.spacing_mm] * 3,
                "labels": LABEL_RULE, "label_source": "derived from the masks, not from diagnoses",
                "foreground": FOREGROUND_RULE, "min_foreground": settings.min_foreground,
                "per_case": settings.per_case, "stride": settings.stride or max(settings.patch_size // 2, 1),
                "seed": settings.seed, "sources": sources,
                "counts": {label: sum(r["label"] == label for r in rows) for label in (LESION, NORMAL)},
            }
            (staging / "labels.csv").write_text(_labels_csv(rows), encoding="utf-8")
            (staging / PATCHES_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            for name in ("images", "masks", PATCHES_JSON, "labels.csv"):  # labels.csv last: a cohort only once complete
                os.replace(staging / name, out / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return record


def read_patch_record(cohort: str | Path, *, overlap: float = 0.25, blend: str = "gaussian") -> dict[str, Any] | None:
    """The ``sliding_window`` record (``save_model_dir(sliding_window=)``) of a patch cohort: ``cohort`` is its
    folder or its ``labels.csv``. None when it holds no ``patches.json`` (a cohort of whole volumes)."""
    from medxai.models.sliding import SlidingWindow

    folder = Path(cohort)
    folder = folder if folder.is_dir() else folder.parent
    path = folder / PATCHES_JSON
    if not path.is_file():
        return None
    record = read_data_file(path, what="patch cohort record")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InvalidInputError(f"not a patch cohort record (expected format {FORMAT})", path=path)
    try:
        window = SlidingWindow.from_record({"patch_size": record.get("patch_size"), "spacing_mm": record.get("spacing_mm"),
                                            "overlap": overlap, "blend": blend})
    except ConfigError as error:
        raise InvalidInputError(error.problem, path=path) from None
    return window.to_record()
