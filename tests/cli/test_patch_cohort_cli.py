"""``medxai patch-cohort`` on a real BRATS case (shared data): labels agree with the expert mask, patches
sit inside the source scan, and a bad manifest is one line, exit 4, no output."""
from __future__ import annotations

import csv
import json

import numpy as np

from medxai.io.readers import read_volume

CASE = "brats_deepmedic/validation/brats_2013_pat0003_1"


def test_patch_cohort_on_a_brats_case(cli, tmp_path, test_data):
    case = test_data / CASE
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,image,mask,label\n"
                        f"pat0003,{case / 'Flair_subtrMeanDivStd.nii.gz'};{case / 'T1c_subtrMeanDivStd.nii.gz'},"
                        f"{case / 'OTMultiClass.nii.gz'},lesion\n")
    out = tmp_path / "cohort"
    result = cli("patch-cohort", manifest, "-o", out, "--per-case", "2", "--patch-size", "24", "--spacing", "2",
                 "--seed", "1")
    assert result.exit_code == 0, result.stderr
    assert "labels derived from the masks" in result.stderr
    with open(out / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["label"] for row in rows) == ["lesion", "lesion", "normal", "normal"]
    record = json.loads((out / "patches.json").read_text())
    assert record["patch_size"] == [24] * 3 and record["spacing_mm"] == [2.0] * 3 and record["seed"] == 1
    assert record["sources"][0]["case_id"] == "pat0003" and "mask" in record["labels"]["lesion"]
    source = read_volume(case / "OTMultiClass.nii.gz")
    tumour = source.data > 0
    inverse = np.linalg.inv(source.affine)
    for row in rows:
        flair, t1c = (read_volume(out / part) for part in row["image"].split(";"))
        assert flair.shape == (24, 24, 24) and np.allclose(flair.affine, t1c.affine)
        index = np.stack(np.meshgrid(*[np.arange(24)] * 3, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
        world = index @ flair.affine[:3, :3].T + flair.affine[:3, 3]
        voxels = np.rint(np.c_[world, np.ones(len(world))] @ inverse.T)[:, :3].astype(int)
        assert (voxels >= 0).all() and (voxels < np.asarray(source.shape)).all()  # inside the source scan
        in_source = int(tumour[tuple(voxels.T)].sum())  # the expert mask at the patch's voxels
        assert (in_source > 0) == (row["label"] == "lesion"), (row["case_id"], in_source)
        assert (read_volume(out / row["mask"]).data > 0).any() == (row["label"] == "lesion")


def test_patch_cohort_refuses_a_manifest_without_masks(cli, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,image,mask,label\na,scan.nii.gz,,lesion\n")
    result = cli("patch-cohort", manifest, "-o", tmp_path / "cohort")
    assert result.exit_code == 4
    assert result.stderr.strip().splitlines() == [f"medxai: error: {manifest}: line 2: a patch cohort needs an image and a mask in every row"]
    assert not (tmp_path / "cohort").exists()
