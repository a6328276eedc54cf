"""Patch cohorts cut from volumes with masks: labels from the masks, patches where they were in the world."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.models.patch_cohort import PatchSettings, SourceCase, read_patch_record, write_patch_cohort
from medxai.models.sliding import SlidingWindow
from medxai.volume import Volume


def _oblique_affine(spacing) -> np.ndarray:
    a = math.radians(25)
    rotation = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing) @ np.diag([-1, 1, 1])  # flipped first axis too
    affine[:3, 3] = (30.0, -20.0, 5.0)
    return affine


def _source(tmp_path, *, shape=(40, 48, 24), spacing=(1.2, 0.8, 2.0)) -> SourceCase:
    """Two channels whose values are the world x and y coordinate of each voxel (linear, so a resampled patch
    must hold exactly the world coordinates its affine gives it), inside a 'body', with a box-shaped lesion."""
    affine = _oblique_affine(spacing)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    mask = np.zeros(shape, np.uint8)
    mask[8:16, 10:20, 6:14] = 1
    paths = []
    for axis in (0, 1):
        paths.append(write_nifti(Volume(world[..., axis].astype(np.float32), affine), tmp_path / f"c{axis}.nii.gz"))
    write_nifti(Volume(mask, affine), tmp_path / "mask.nii.gz")
    return SourceCase("case1", tuple(paths), tmp_path / "mask.nii.gz")


def test_patches_keep_their_place_in_the_world_and_labels_follow_the_mask(tmp_path):
    case = _source(tmp_path)
    settings = PatchSettings(patch_size=12, spacing_mm=1.5, per_case=3, seed=4, min_foreground=0.0)
    record = write_patch_cohort([case], tmp_path / "cohort", settings)
    out = tmp_path / "cohort"
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["label"] for row in rows} == {"lesion", "normal"} and len(rows) == 6
    assert record["counts"] == {"lesion": 3, "normal": 3}
    source = read_volume(case.images[0])
    source_mask = read_volume(case.mask).data > 0
    inverse = np.linalg.inv(source.affine)
    for row in rows:
        assert row["group"] == "case1"
        channels = [read_volume(out / part) for part in row["image"].split(";")]
        mask = read_volume(out / row["mask"])
        assert all(c.shape == (12, 12, 12) for c in channels)
        np.testing.assert_allclose(mask.affine, channels[0].affine)
        np.testing.assert_allclose(np.linalg.norm(channels[0].affine[:3, :3], axis=0), [1.5] * 3, atol=1e-6)
        index = np.stack(np.meshgrid(*[np.arange(12)] * 3, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
        world = index @ channels[0].affine[:3, :3].T + channels[0].affine[:3, 3]
        for axis, channel in enumerate(channels):  # values are the source's world coordinates: right place
            np.testing.assert_allclose(channel.data.reshape(-1), world[:, axis], atol=1e-3)
        voxels = np.rint(np.c_[world, np.ones(len(world))] @ inverse.T)[:, :3].astype(int)
        assert (voxels >= 0).all() and (voxels < np.asarray(source.shape)).all()  # inside the source scan
        in_source = source_mask[tuple(voxels.T)]
        assert (row["label"] == "lesion") == bool(in_source.any()) == bool(mask.data.any())
        if row["label"] == "lesion":  # centred on the lesion: its centre voxel is a mask voxel
            assert mask.data[6, 6, 6] or mask.data[5:7, 5:7, 5:7].any()
    assert record["labels"]["lesion"].startswith("patch centred on a mask voxel")
    assert record["sources"][0]["case_id"] == "case1" and record["seed"] == 4
    assert json.loads((out / "patches.json").read_text()) == record


def test_the_patch_record_is_the_models_sliding_window(tmp_path):
    case = _source(tmp_path)
    write_patch_cohort([case], tmp_path / "cohort", PatchSettings(patch_size=12, spacing_mm=1.5, per_case=1,
                                                                 min_foreground=0.0))
    window = read_patch_record(tmp_path / "cohort")
    assert window == {"patch_size": [12] * 3, "spacing_mm": [1.5] * 3, "overlap": 0.25, "blend": "gaussian"}
    assert read_patch_record(tmp_path / "cohort" / "labels.csv") == window
    assert SlidingWindow.from_record(window).patch_size == (12, 12, 12)
    assert read_patch_record(tmp_path) is None
    (tmp_path / "cohort" / "patches.json").write_text(json.dumps({"format": "medxai-patch-cohort/1", "patch_size": [0, 12, 12],
                                                                      "spacing_mm": [1.5] * 3}))
    with pytest.raises(InvalidInputError, match="patch_size"):
        read_patch_record(tmp_path / "cohort")


def test_a_scan_smaller_than_a_patch_leaves_nothing(tmp_path):
    case = _source(tmp_path, shape=(16, 16, 8))
    with pytest.raises(InvalidInputError, match="smaller than one"):
        write_patch_cohort([case], tmp_path / "cohort", PatchSettings(patch_size=32, spacing_mm=1.5))
    assert not (tmp_path / "cohort").exists()


def test_an_existing_cohort_is_not_mixed_into(tmp_path):
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "labels.csv").write_text("case_id,image,mask,label\n")
    with pytest.raises(ConfigError, match="already holds labels.csv"):
        write_patch_cohort([_source(tmp_path)], tmp_path / "cohort", PatchSettings(patch_size=12))
