"""``medxai segment`` through the real entry point on a tiny GP-UNet and a plain CNN that really learnt the task.

The models are trained on bright-sphere volumes (:mod:`medxai.testing.sphere_cohort`), which a tiny network
learns in a few epochs: a model trained for one epoch on a handful of phantoms has a near-constant, often
all-negative class map, and whether its mask is empty would be chance.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medxai.io.nifti import write_nifti
from medxai.testing.sphere_cohort import sphere_volume, write_sphere_cohort
from medxai.volume import Volume


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A GP-UNet (6 epochs) and a plain CNN (1 epoch) trained at 24^3 on 12 sphere cases (oblique, anisotropic and
    flipped grids), and a 6-case manifest whose 3 lesion cases list their masks (normal cases list none)."""
    from medxai.models.train import train_model

    root = tmp_path_factory.mktemp("segment")
    training = write_sphere_cohort(root / "training", cases=12, size=24, seed=3)
    common = dict(batch_size=4, lr=3e-3, spatial_size=24, device="cpu", seed=0)
    train_model(training, root / "gp", arch="gp-unet", task="weakseg", epochs=6, **common)
    train_model(training, root / "plain", arch="tiny", task="classification", epochs=1, **common)  # Grad-CAM plumbing only
    labels = write_sphere_cohort(root / "cohort", cases=6, size=24, seed=4)
    with open(labels, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "mask": row["mask"] if row["label"] == "lesion" else ""} for row in rows)
    return {"gp": root / "gp", "plain": root / "plain", "labels": labels, "root": root}


def _oblique_lesion_case(folder: Path) -> tuple[Path, Path]:
    """A sphere lesion case on a rotated, anisotropic grid (20 and 15 degrees about two axes, 2.5 mm slices)."""
    image, mask = sphere_volume(np.random.default_rng(11), size=24, lesion=True)
    rotation = np.eye(3)
    for axis, degrees in ((0, 20.0), (1, 15.0)):
        c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        plane = [i for i in range(3) if i != axis]
        step = np.eye(3)
        step[np.ix_(plane, plane)] = [[c, -s], [s, c]]
        rotation = rotation @ step
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.0, 1.2, 2.5])
    affine[:3, 3] = (-12.0, 5.0, 30.0)
    image_path, mask_path = folder / "oblique_case.nii.gz", folder / "oblique_case_mask.nii.gz"
    write_nifti(Volume(image, affine), image_path)
    write_nifti(Volume(mask, affine), mask_path, dtype=np.uint8)
    return image_path, mask_path


def test_segment_writes_native_grid_outputs_and_scores(cli, models, tmp_path: Path) -> None:
    image, truth = _oblique_lesion_case(tmp_path)
    out = tmp_path / "out"
    result = cli("segment", models["gp"], image, "-o", out, "--mask", truth, "--target", "lesion",
                 "--threshold", "percentile:90", "--refine", "none", "--json")
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
    assert record["status"] == "ok" and record["reason"] is None
    reference = np.asarray(nib.load(str(truth)).dataobj) > 0
    expected_dice = 2 * np.logical_and(mask > 0, reference).sum() / (mask.sum() + reference.sum())
    # the model learnt the spheres: the top decile of its map on this oblique grid covers most of the lesion
    # (a flipped or shifted map would miss it)
    assert np.logical_and(mask > 0, reference).sum() >= 0.5 * reference.sum()
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
    # a wrong option is not a bad case: with several scans it still stops the run with one line (exit 4)
    several = cli("segment", models["plain"], image, truth, "-o", tmp_path / "own2")
    assert several.exit_code == 4 and "gp-unet" in several.stderr and "failed" not in several.stderr


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
    write_nifti(Volume(np.asarray(mask_image.dataobj), shifted), other_grid)
    wrong = cli("segment", models["gp"], image, "-o", tmp_path / "y", "--mask", other_grid)
    assert wrong.exit_code == 4 and "shifted_mask.nii.gz" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def test_a_batch_keeps_going_past_a_bad_case(cli, models, tmp_path: Path) -> None:
    """A corrupt scan among good ones: the good case is segmented, the bad one gets no folder and one
    'failed' line naming the file, and the command exits 3 (batch finished, some cases failed)."""
    image, _ = _oblique_lesion_case(tmp_path)
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x00" * 100)
    missing = tmp_path / "missing.nii.gz"
    out = tmp_path / "batch"
    result = cli("segment", models["gp"], corrupt, missing, image, "-o", out, "--target", "lesion", "--json")
    assert result.exit_code == 3, result.stderr
    assert (out / "oblique_case" / "mask.nii.gz").is_file() and not (out / "corrupt").exists()
    summary = json.loads(result.stdout)
    assert summary["segmented"] == 1 and [case for case, _ in summary["failed"]] == ["corrupt", "missing"]
    for name in ("corrupt", "missing"):
        failed_lines = [line for line in result.stderr.splitlines() if line.startswith(f"failed {name}:")]
        assert len(failed_lines) == 1 and f"{name}.nii.gz" in failed_lines[0]
    alone = cli("segment", models["gp"], missing, "-o", tmp_path / "alone")
    assert alone.exit_code == 4 and "missing.nii.gz: no such file" in alone.stderr
    # the threshold sweep reads every case first: a bad one is left out of the choice, the others go on
    swept = cli("segment", models["gp"], models["labels"], corrupt, "-o", tmp_path / "swept", "--sweep",
                "--sweep-grid", "percentile:95,fixed:0.9", "--target", "lesion", "--json")
    assert swept.exit_code == 3, swept.stderr
    summary = json.loads(swept.stdout)
    assert summary["segmented"] == 6 and summary["sweep"]["n_cases"] == 3 and summary["failed"][0][0] == "corrupt"


def test_refine_redraws_the_margin_from_the_image(cli, models, tmp_path: Path) -> None:
    image, truth = _oblique_lesion_case(tmp_path)
    common = ("--mask", truth, "--target", "lesion", "--threshold", "fixed:0.5", "--json")
    plain = cli("segment", models["gp"], image, "-o", tmp_path / "plain", "--refine", "none", *common)
    refined = cli("segment", models["gp"], image, "-o", tmp_path / "refined", "--refine", "otsu", *common)
    assert plain.exit_code == 0 and refined.exit_code == 0, plain.stderr + refined.stderr
    record = json.loads((tmp_path / "refined" / "oblique_case" / "segmentation.json").read_text())
    assert record["postprocess"]["refine"]["method"] == "otsu" and record["postprocess"]["refine"]["box"] is not None
    mask = nib.load(str(tmp_path / "refined" / "oblique_case" / "mask.nii.gz"))
    np.testing.assert_allclose(mask.affine, nib.load(str(image)).affine, atol=1e-5)
    before, after = (json.loads(r.stdout)["median_dice"] for r in (plain, refined))
    assert after > max(before, 0.7)
    bad = cli("segment", models["gp"], image, "-o", tmp_path / "bad", "--refine", "watershed")
    assert bad.exit_code == 4 and "watershed" in bad.stderr


def test_a_post_hoc_method_that_would_not_fit_in_memory_is_refused(cli, models, tmp_path: Path, monkeypatch) -> None:
    """segment's post-hoc maps go through explain's pre-flight check: one 'out of memory' line naming the method,
    no output, instead of the kernel killing the process."""
    from medxai.attribution import memory

    image, _ = _oblique_lesion_case(tmp_path)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    result = cli("segment", models["plain"], image, "-o", tmp_path / "seg", "--method", "smoothgrad", "--target", "lesion")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("medxai: error: out of memory: smoothgrad needs about")
    assert "MiB is free on cpu" in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "seg" / "oblique_case").exists()


def test_a_threshold_that_keeps_the_whole_volume_is_reported_as_failed(cli, models, tmp_path: Path) -> None:
    image, truth = _oblique_lesion_case(tmp_path)
    out = tmp_path / "everything"
    # SmoothGrad's absolute gradients are positive everywhere: level 0 keeps every voxel
    result = cli("segment", models["gp"], image, "-o", out, "--mask", truth, "--target", "lesion",
                 "--method", "smoothgrad", "--threshold", "fixed:0", "--json")
    assert result.exit_code == 0, result.stderr
    mask = np.asarray(nib.load(str(out / "oblique_case" / "mask.nii.gz")).dataobj)
    assert mask.mean() > 0.99  # the threshold really kept the whole volume
    record = json.loads((out / "oblique_case" / "segmentation.json").read_text())
    assert record["status"] == "failed"
    assert "minimum" in record["reason"] and "keeps every voxel" in record["reason"]
    summary = json.loads(result.stdout)
    assert summary["failed_segmentations"] == [["oblique_case", record["reason"]]]
    assert "oblique_case: segmentation failed" in result.stderr
    with open(out / "segmentation_scores.csv", newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["failed"]


def test_a_saved_threshold_is_the_next_runs_default(cli, models, tmp_path: Path) -> None:
    """segment --sweep --save-threshold keeps the chosen rule with the model; a later segment without --threshold
    uses it (and says so), an explicit --threshold still wins, and other weights refuse the record."""
    import shutil

    model = Path(shutil.copytree(models["gp"], tmp_path / "gp"))  # the module's model stays without a record
    grid = "percentile:80,percentile:97,fixed:0.9"
    swept = cli("segment", model, models["labels"], "-o", tmp_path / "val", "--sweep", "--sweep-grid", grid,
                "--save-threshold", "--target", "lesion", "--refine", "none", "--json")
    assert swept.exit_code == 0, swept.stderr
    chosen = json.loads((tmp_path / "val" / "sweep.json").read_text())["chosen"]
    assert json.loads((model / "threshold.json").read_text())["methods"]["own"]["rule"] == chosen
    image, _ = _oblique_lesion_case(tmp_path)
    later = cli("segment", model, image, "-o", tmp_path / "later", "--target", "lesion")
    assert later.exit_code == 0, later.stderr
    record = json.loads((tmp_path / "later" / "oblique_case" / "segmentation.json").read_text())
    assert record["threshold"]["rule"] == chosen and record["threshold"]["chosen_by"] == "model threshold.json"
    given = cli("segment", model, image, "-o", tmp_path / "given", "--target", "lesion", "--threshold", "otsu")
    record = json.loads((tmp_path / "given" / "oblique_case" / "segmentation.json").read_text())
    assert given.exit_code == 0 and record["threshold"]["rule"] == "otsu"
    other = Path(shutil.copytree(models["plain"], tmp_path / "plain"))
    shutil.copy(model / "threshold.json", other / "threshold.json")
    refused = cli("segment", other, image, "-o", tmp_path / "other", "--method", "saliency", "--target", "lesion")
    assert refused.exit_code == 4 and "threshold.json" in refused.stderr
