"""``medxai segment`` through the real entry point on a tiny GP-UNet trained for one epoch."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medxai.io.nifti import write_nifti
from medxai.synthetic import default_grid, make_cohort, make_spec, render, write_phantom


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6-case phantom cohort at 24^3 and, trained on it for one epoch at 32^3, a GP-UNet and a plain CNN."""
    from medxai.models.train import train_model

    root = tmp_path_factory.mktemp("segment")
    labels = make_cohort(root / "cohort", cases=6, seed=3, size=24, grid_mix=False)
    common = dict(epochs=1, batch_size=4, spatial_size=32, device="cpu", seed=0)
    train_model(labels, root / "gp", arch="gp-unet", task="weakseg", **common)
    train_model(labels, root / "plain", arch="tiny", task="classification", **common)
    return {"gp": root / "gp", "plain": root / "plain", "labels": labels, "root": root}


def _oblique_lesion_case(folder: Path) -> tuple[Path, Path]:
    """A lesion phantom on a rotated, anisotropic grid (10-25 degrees about two axes, 2-3x thick slices)."""
    spec = make_spec(seed=11, task="presence", label="lesion", size=24)
    affine, shape = default_grid(spec, size=24, kind="oblique")
    phantom = render(spec, affine=affine, shape=shape, noise_seed=1)
    image, mask = folder / "oblique_case.nii.gz", folder / "oblique_case_mask.nii.gz"
    write_phantom(phantom, image, mask)
    return image, mask


def test_segment_writes_native_grid_outputs_and_scores(cli, models, tmp_path: Path) -> None:
    image, truth = _oblique_lesion_case(tmp_path)
    out = tmp_path / "out"
    result = cli("segment", models["gp"], image, "-o", out, "--mask", truth, "--target", "lesion",
                 "--threshold", "percentile:90", "--json")
    assert result.exit_code == 0, result.stderr
    scan = nib.load(str(image))
    assert not np.allclose(scan.affine[:3, :3], np.diag(np.diag(scan.affine[:3, :3])))  # really oblique
    mask_image = nib.load(str(out / "oblique_case" / "mask.nii.gz"))
    heatmap_image = nib.load(str(out / "oblique_case" / "heatmap.nii.gz"))
    for written in (mask_image, heatmap_image):
        assert written.shape == scan.shape
        np.testing.assert_allclose(written.affine, scan.affine, atol=1e-5)
    assert mask_image.get_data_dtype() == np.uint8 and heatmap_image.get_data_dtype() == np.float32
    mask = np.asarray(mask_image.dataobj)
    heat = np.asarray(heatmap_image.dataobj)
    record = json.loads((out / "oblique_case" / "segmentation.json").read_text())
    # without post-processing the mask is exactly the written heatmap above the recorded level
    np.testing.assert_array_equal(mask, (heat > record["threshold"]["level"]).astype(np.uint8))
    assert 0 < mask.sum() < mask.size
    voxel_ml = abs(np.linalg.det(scan.affine[:3, :3])) / 1000.0
    assert record["mask"]["volume_ml"] == pytest.approx(mask.sum() * voxel_ml, rel=1e-6)
    assert record["target"] == "lesion" and record["threshold"]["rule"] == "percentile:90"
    reference = np.asarray(nib.load(str(truth)).dataobj) > 0
    expected_dice = 2 * np.logical_and(mask > 0, reference).sum() / (mask.sum() + reference.sum())
    with open(out / "segmentation_scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case_id"] for r in rows] == ["oblique_case"]
    assert float(rows[0]["dice"]) == pytest.approx(expected_dice, abs=1e-5)
    assert float(rows[0]["hd95_mm"]) > 0
    assert json.loads(result.stdout)["median_dice"] == pytest.approx(expected_dice, abs=1e-5)


def test_sweep_on_a_manifest_picks_the_best_median_dice(cli, models, tmp_path: Path) -> None:
    out = tmp_path / "swept"
    grid = "multiotsu-offset:0.1,multiotsu-offset:0.5,percentile:95,fixed:0.9"
    result = cli("segment", models["gp"], models["labels"], "-o", out, "--sweep", "--sweep-grid", grid,
                 "--target", "lesion", "--lcc")
    assert result.exit_code == 0, result.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    table = {row["threshold"]: row["median_dice"] for row in sweep["candidates"]}
    assert set(table) == set(grid.split(","))
    assert table[sweep["chosen"]] == max(table.values())
    case_dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(case_dirs) == 6
    record = json.loads((out / case_dirs[0] / "segmentation.json").read_text())
    assert record["threshold"]["chosen_by"] == "sweep" and record["threshold"]["rule"] == sweep["chosen"]
    assert record["postprocess"]["largest_component"] is True
    with open(out / "segmentation_scores.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3  # the three lesion cases have masks


def test_post_hoc_gradcam_of_a_plain_classifier_and_own_refused(cli, models, tmp_path: Path) -> None:
    image, truth = _oblique_lesion_case(tmp_path)
    result = cli("segment", models["plain"], image, "-o", tmp_path / "cam", "--method", "gradcam",
                 "--target", "lesion", "--mask", truth)
    assert result.exit_code == 0, result.stderr
    record = json.loads((tmp_path / "cam" / "oblique_case" / "segmentation.json").read_text())
    assert record["method"] == "gradcam" and record["model"]["arch"] == "tiny"
    refused = cli("segment", models["plain"], image, "-o", tmp_path / "own")
    assert refused.exit_code == 4 and "gp-unet" in refused.stderr
    assert not (tmp_path / "own" / "oblique_case" / "mask.nii.gz").exists()


def test_bad_inputs_exit_4_with_one_line(cli, models, tmp_path: Path) -> None:
    image, truth = _oblique_lesion_case(tmp_path)
    bad = cli("segment", models["gp"], image, "-o", tmp_path / "x", "--threshold", "percentile:120")
    assert bad.exit_code == 4 and "percentile" in bad.stderr
    two_masks = cli("segment", models["gp"], image, "-o", tmp_path / "x", "--mask", truth, "--mask", truth)
    assert two_masks.exit_code == 4
    other_grid = tmp_path / "shifted_mask.nii.gz"
    mask_image = nib.load(str(truth))
    shifted = mask_image.affine.copy()
    shifted[:3, 3] += 4.0
    from medxai.volume import Volume

    write_nifti(Volume(np.asarray(mask_image.dataobj), shifted), other_grid)
    wrong = cli("segment", models["gp"], image, "-o", tmp_path / "y", "--mask", other_grid)
    assert wrong.exit_code == 4 and "shifted_mask.nii.gz" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
