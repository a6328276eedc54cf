"""Labelled cohorts for training: ``labels.csv`` parsing, a content hash, the split and the in-memory cache.

``labels.csv`` has columns ``case_id,image,mask,label`` (mask may be empty). Paths are relative to the
CSV. ``image`` may list several channel files separated by ``;`` (e.g. ``flair.nii.gz;t1c.nii.gz``), all on
one grid and in the same order for every case. An optional ``group`` column (e.g. the patient a patch
was cut from) keeps every group on one side of the train/validation split.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.data_files import read_table
from medxai.io.naming import case_id_from_path, safe_case_id
from medxai.models.preprocessing import Preprocessor

Progress = Callable[[str, int, int], None]
CHANNEL_SEPARATOR = ";"


@dataclass(frozen=True)
class LabelledCase:
    case_id: str
    images: tuple[Path, ...]
    mask: Path | None
    label: str
    group: str | None = None


@dataclass(frozen=True)
class LabelledSet:
    csv_path: Path
    cases: tuple[LabelledCase, ...]

    @property
    def labels(self) -> list[str]:
        return [case.label for case in self.cases]

    @property
    def groups(self) -> list[str] | None:
        """The ``group`` column when every row has one, else None."""
        groups = [case.group for case in self.cases]
        return None if any(group is None for group in groups) else groups  # type: ignore[return-value]

    @property
    def channel_count(self) -> int:
        return len(self.cases[0].images)


def resolve_labels_csv(data: str | Path) -> Path:
    """``data`` is a folder holding ``labels.csv`` or the CSV itself."""
    path = Path(data)
    csv_path = path / "labels.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise InvalidInputError("no labels.csv here (expected a folder with labels.csv or the CSV itself)", path=path)
    return csv_path


def split_channels(text: str, base: Path) -> tuple[Path, ...]:
    """The channel files of one ``image`` cell (``a.nii.gz;b.nii.gz``), resolved against ``base``."""
    parts = [part.strip() for part in text.split(CHANNEL_SEPARATOR) if part.strip()]
    return tuple(Path(part) if Path(part).is_absolute() else base / part for part in parts)


def read_labels(data: str | Path) -> LabelledSet:
    """Parse ``labels.csv``; every row needs an existing image and a label, channel counts must agree."""
    csv_path = resolve_labels_csv(data)
    columns, rows = read_table(csv_path, what="labels CSV")
    if not rows or not {"image", "label"} <= set(columns):
        raise InvalidInputError("needs columns case_id,image,mask,label and at least one row", path=csv_path)
    cases: list[LabelledCase] = []
    for number, row in enumerate(rows, start=2):
        images = split_channels(row.get("image") or "", csv_path.parent)
        label = (row.get("label") or "").strip()
        if not images or not label:
            raise InvalidInputError(f"line {number}: empty image or label", path=csv_path)
        for image in images:
            if not image.exists():
                raise InvalidInputError(f"line {number}: image {image.name} does not exist", path=csv_path)
        if len(images) != len(cases[0].images if cases else images):
            raise InvalidInputError(f"line {number}: {len(images)} channel file(s), earlier rows have {len(cases[0].images)}", path=csv_path)
        raw_id = (row.get("case_id") or "").strip()
        mask = (row.get("mask") or "").strip()
        group = (row.get("group") or "").strip() or None
        cases.append(LabelledCase(
            case_id=safe_case_id(raw_id) if raw_id else case_id_from_path(images[0]), images=images,
            mask=(csv_path.parent / mask) if mask else None, label=label, group=group,
        ))
    ids = [case.case_id for case in cases]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("case_id values are not unique", path=csv_path)
    return LabelledSet(csv_path=csv_path, cases=tuple(cases))


def data_sha256(labelled: LabelledSet) -> str:
    """A hash of what the model learnt from: case ids, labels and the bytes of every image file."""
    digest = hashlib.sha256()
    for case in sorted(labelled.cases, key=lambda c: c.case_id):
        digest.update(f"{case.case_id}\t{case.label}\n".encode())
        for image in case.images:
            files = sorted(p for p in image.rglob("*") if p.is_file()) if image.is_dir() else [image]
            for file in files:
                with open(file, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
    return digest.hexdigest()


def stratified_split(
    targets: Sequence[int], *, val_fraction: float, seed: int, groups: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices with every class on both sides (scikit-learn). With ``groups``, whole
    groups go to one side (``StratifiedGroupKFold``, the first of ``round(1 / val_fraction)`` folds)."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    targets = np.asarray(targets)
    classes, counts = np.unique(targets, return_counts=True)
    if len(classes) < 2 or counts.min() < 2:
        raise InvalidInputError(f"need at least 2 cases of each of at least 2 classes, found counts {counts.tolist()}")
    if groups is not None:
        folds = min(max(2, int(round(1.0 / val_fraction))), len(set(groups)))
        if folds < 2:
            raise InvalidInputError("a group-wise split needs at least 2 groups")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        train, val = next(splitter.split(np.zeros(len(targets)), targets, groups=np.asarray(groups)))
        if len(np.unique(targets[train])) < len(classes) or len(np.unique(targets[val])) < len(classes):
            raise InvalidInputError("the group-wise split leaves a class out of training or validation; add groups")
        return np.sort(train), np.sort(val)
    n_val = min(max(int(round(val_fraction * len(targets))), len(classes)), len(targets) - len(classes))
    train, val = train_test_split(np.arange(len(targets)), test_size=n_val, stratify=targets, random_state=seed)
    return np.sort(train), np.sort(val)


def prepare_cases(cases: Sequence[LabelledCase], preprocessor: Preprocessor, *, progress: Progress | None = None) -> torch.Tensor:
    """Read and preprocess every case once; returns a float32 tensor (N, C, X, Y, Z) kept in memory."""
    from medxai.io.readers import read_volume

    tensors = []
    for index, case in enumerate(cases):
        prepared = preprocessor.prepare([read_volume(image) for image in case.images])
        tensors.append(prepared.tensor.as_tensor().to(torch.float32))
        if progress is not None:
            progress("Preparing scans", index + 1, len(cases))
    return torch.stack(tensors)
