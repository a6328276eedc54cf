"""Phantom specs and cohorts: determinism, balanced labels that depend only on the lesion, distractors."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medxai.errors import ConfigError
from medxai.synthetic import TASK_CLASSES, default_grid, make_cohort, make_spec, render


def _rows(labels_csv: Path) -> list[dict[str, str]]:
    with open(labels_csv, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_seed_fully_determines_spec_and_image():
    assert make_spec(seed=11, task="malignancy") == make_spec(seed=11, task="malignancy")
    assert make_spec(seed=11) != make_spec(seed=12)
    spec = make_spec(seed=11, label="lesion", size=32)
    affine, shape = default_grid(spec, size=32, kind="oblique")
    first = render(spec, affine=affine, shape=shape, noise_seed=5).image.data
    again = render(spec, affine=affine, shape=shape, noise_seed=5).image.data
    other_noise = render(spec, affine=affine, shape=shape, noise_seed=6).image.data
    assert first.dtype == np.float32 and np.array_equal(first, again)
    assert not np.array_equal(first, other_noise)


def test_same_seed_writes_byte_identical_cohorts(tmp_path):
    first = make_cohort(tmp_path / "a", cases=6, seed=3, size=24)
    second = make_cohort(tmp_path / "b", cases=6, seed=3, size=24)
    different = make_cohort(tmp_path / "c", cases=6, seed=4, size=24)
    assert first.read_text() == second.read_text()
    for row in _rows(first):
        for column in ("image", "mask"):
            if row[column]:
                a, b = nib.load(first.parent / row[column]), nib.load(second.parent / row[column])
                assert np.asarray(a.dataobj).tobytes() == np.asarray(b.dataobj).tobytes()
                assert np.array_equal(a.affine, b.affine)
    image = _rows(first)[0]["image"]
    assert not np.array_equal(nib.load(first.parent / image).get_fdata(), nib.load(different.parent / image).get_fdata())


@pytest.mark.parametrize("task", ["presence", "malignancy"])
def test_cohort_is_balanced_and_masks_follow_the_lesion(tmp_path, task):
    labels_csv = make_cohort(tmp_path, cases=10, seed=1, size=24, task=task)
    rows = _rows(labels_csv)
    assert labels_csv.read_text().splitlines()[0] == "case_id,image,mask,label"
    assert [r["case_id"] for r in rows] == [f"case_{i:04d}" for i in range(1, 11)]
    classes = TASK_CLASSES[task]
    assert sorted(r["label"] for r in rows) == sorted(list(classes) * 5)
    for row in rows:
        assert (labels_csv.parent / row["image"]).is_file()
        lesion_free = row["label"] == "normal"
        assert (row["mask"] == "") == lesion_free
        if not lesion_free:
            mask = nib.load(labels_csv.parent / row["mask"])
            assert mask.get_data_dtype() == np.uint8 and np.asarray(mask.dataobj).sum() > 0
    assert not (labels_csv.parent / "masks").exists() or len(list((labels_csv.parent / "masks").iterdir())) == (
        5 if task == "presence" else 10)


def test_labels_of_one_seed_differ_only_in_the_lesion():
    normal, lesion = make_spec(seed=21, label="normal"), make_spec(seed=21, label="lesion")
    assert normal.lesion is None and lesion.lesion is not None
    assert dataclasses.replace(lesion, lesion=None, label="normal") == normal
    benign, malignant = make_spec(seed=21, task="malignancy", label="benign"), make_spec(
        seed=21, task="malignancy", label="malignant")
    assert benign.lesion.irregularity == 0 and benign.lesion.halo_amplitude == 0
    assert malignant.lesion.irregularity > 0 and malignant.lesion.halo_amplitude > 0
    assert dataclasses.replace(malignant.lesion, irregularity=0.0, halo_amplitude=0.0) == benign.lesion
    assert dataclasses.replace(malignant, lesion=None, label="x") == dataclasses.replace(benign, lesion=None, label="x")

    # rendered, the lesion-free twin differs only near the lesion
    affine, shape = default_grid(lesion, size=64, kind="identity")
    with_lesion = render(lesion, affine=affine, shape=shape, noise_seed=None)
    without = render(normal, affine=affine, shape=shape, noise_seed=None)
    assert not without.mask.data.any() and with_lesion.mask.data.any()
    centre = np.asarray(lesion.lesion.centre_mm)
    world = with_lesion.image.index_to_world(np.indices(shape).reshape(3, -1).T)
    far = np.linalg.norm(world - centre, axis=1) > lesion.lesion.extent_mm + lesion.lesion.halo_width_mm + 5.0
    difference = np.abs(with_lesion.image.data - without.image.data).reshape(-1)
    assert difference[far].max() < 1e-3 * lesion.tissue
    assert difference[~far].max() > 0.2 * lesion.tissue


def _core_voxels(volume, blob) -> np.ndarray:
    """Voxels well inside a distractor ellipsoid (computed here from its centre, radii and rotation)."""
    world = volume.index_to_world(np.indices(volume.shape).reshape(3, -1).T)
    local = (world - np.asarray(blob.centre_mm)) @ np.asarray(blob.rotation) / np.asarray(blob.radii_mm)
    return (np.linalg.norm(local, axis=1) < 0.7).reshape(volume.shape)


def test_distractors_are_in_every_class_and_at_least_as_bright_as_lesions():
    lesion_means, distractor_means, counts = [], [], {"normal": [], "lesion": []}
    for seed in range(16):
        label = ("normal", "lesion")[seed % 2]
        spec = make_spec(seed=100 + seed, label=label, size=48)
        counts[label].append(len(spec.distractors))
        affine, shape = default_grid(spec, size=48, kind="identity")
        phantom = render(spec, affine=affine, shape=shape, noise_seed=seed)
        for blob in spec.distractors:
            core = _core_voxels(phantom.image, blob)
            assert not (core & phantom.mask.data.astype(bool)).any()  # never overlaps the lesion
            if core.any():
                distractor_means.append(phantom.image.data[core].mean())
        if spec.lesion is not None:
            lesion_means.append(phantom.image.data[phantom.mask.data > 0].mean())
    assert min(counts["normal"]) >= 1 and min(counts["lesion"]) >= 1
    assert abs(np.mean(counts["normal"]) - np.mean(counts["lesion"])) < 1.0
    assert np.mean(distractor_means) >= np.mean(lesion_means)


def test_bad_task_label_or_size_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown task"):
        make_spec(seed=0, task="grading")
    with pytest.raises(ConfigError, match="unknown label"):
        make_spec(seed=0, task="presence", label="malignant")
    with pytest.raises(ConfigError, match="at least"):
        make_spec(seed=0, size=8)
    with pytest.raises(ConfigError, match="unknown task"):
        make_cohort(tmp_path / "out", cases=4, task="grading")
    assert not (tmp_path / "out").exists()
