"""labels.csv parsing and the train/validation split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medxai.errors import ConfigError, InvalidInputError
from medxai.models.dataset import read_labels, stratified_split


def _csv(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz"):
        (folder / name).write_bytes(b"")
    (folder / "labels.csv").write_text(text)
    return folder / "labels.csv"


def test_rows_channels_and_groups(tmp_path: Path) -> None:
    path = _csv(tmp_path, "case_id,image,mask,label,group\nx/1,a.nii.gz;b.nii.gz,c.nii.gz,lesion,p1\n"
                          ",b.nii.gz;c.nii.gz,,normal,p2\n")
    labelled = read_labels(tmp_path)
    first, second = labelled.cases
    assert first.images == (tmp_path / "a.nii.gz", tmp_path / "b.nii.gz") and first.mask == tmp_path / "c.nii.gz"
    assert "/" not in first.case_id and second.case_id == "b"  # unsafe ids sanitised, empty ids from the file name
    assert labelled.channel_count == 2 and labelled.groups == ["p1", "p2"] and labelled.csv_path == path


@pytest.mark.parametrize("text, problem", [
    ("case_id,image,mask,label\n1,a.nii.gz,,x\n2,a.nii.gz;b.nii.gz,,y\n", "line 3: 2 channel file"),
    ("case_id,image,mask,label\n1,zz.nii.gz,,x\n", "line 2: image zz.nii.gz does not exist"),
    ("case_id,image,mask,label\n1,a.nii.gz,,\n", "line 2: empty image or label"),
    ("case_id,image,mask,label\n1,a.nii.gz,,x\n1,b.nii.gz,,y\n", "not unique"),
    ("id,file\n1,a\n", "needs columns"),
])
def test_bad_rows_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    _csv(tmp_path, text)
    with pytest.raises(InvalidInputError, match=problem):
        read_labels(tmp_path / "labels.csv")


def test_stratified_split_keeps_class_shares() -> None:
    targets = np.array([0] * 30 + [1] * 10)
    train, val = stratified_split(targets, val_fraction=0.2, seed=0)
    assert len(val) == 8 and sorted(targets[val].tolist()) == [0] * 6 + [1] * 2
    assert set(train) | set(val) == set(range(40)) and not set(train) & set(val)
    again, _ = stratified_split(targets, val_fraction=0.2, seed=0)
    assert np.array_equal(train, again)


def test_group_split_never_splits_a_group() -> None:
    groups = [f"patient{i // 10}" for i in range(60)]  # 6 patients, 10 patches each, both classes each
    targets = np.array([i % 2 for i in range(60)])
    train, val = stratified_split(targets, val_fraction=0.34, seed=1, groups=groups)
    train_groups = {groups[i] for i in train}
    val_groups = {groups[i] for i in val}
    assert not train_groups & val_groups and len(val_groups) == 2
    assert set(targets[val]) == {0, 1}


def test_split_refusals() -> None:
    with pytest.raises(InvalidInputError, match="at least 2 cases of each"):
        stratified_split([0, 0, 0, 1], val_fraction=0.5, seed=0)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        stratified_split([0, 0, 1, 1], val_fraction=1.0, seed=0)
    with pytest.raises(InvalidInputError, match="leaves a class out"):
        stratified_split([0, 0, 1, 1], val_fraction=0.5, seed=0, groups=["a", "a", "b", "b"])
