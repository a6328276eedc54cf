"""``medxai score`` through the real entry point: a tiny CNN trained on oblique/anisotropic sphere phantoms."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medxai.io.nifti import write_nifti
from medxai.volume import Volume

METHODS = ("saliency", "gradcam")


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sphere phantoms on oblique, anisotropic, flipped grids and a tiny CNN model directory (seeded weights:
    the command's plumbing, not the model's skill, is under test here)."""
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network
    from medxai.testing.sphere_cohort import write_sphere_cohort

    root = tmp_path_factory.mktemp("score")
    labels = write_sphere_cohort(root / "cohort", cases=4, size=20, seed=1)
    torch.manual_seed(0)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(20, 20, 20)).eval()
    save_model_dir(root / "model", network=network, arch="tiny", classes=["lesion", "normal"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(20, 20, 20)), training={}, metrics={})
    with open(labels, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["label"] == "lesion"]
    return {"model": root / "model", "labels": labels,
            "scans": [labels.parent / rows[i]["image"] for i in range(2)],
            "masks": [labels.parent / rows[i]["mask"] for i in range(2)]}


def _no_nan(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_score_writes_one_row_per_case_and_method_with_localisation(cli, scored, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    args = ["score", scored["model"], *scored["scans"], "-o", out, "--mask", scored["masks"][0], "--mask", scored["masks"][1],
            "--no-sensitivity", "--target", "lesion"]
    for method in METHODS:
        args += ["--method", method]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert f"wrote 4 rows to {out}" in result.stderr
    rows = _read(out)
    header = list(rows[0])
    assert header[:4] == ["case_id", "method", "verdict", "verdict_reason"]
    for column in ("infidelity", "max_sensitivity", "sanity_spearman", "sanity_pass", "pointing_game", "mass_in_mask",
                   "auroc", "com_distance_mm", "rank_accuracy", "peak_distance_mm", "deletion_auc", "insertion_auc",
                   "sanity_ssim", "shell_mass_0_2mm", "shell_mass_10_12mm"):
        assert column in header, column
    assert [(r["case_id"], r["method"]) for r in rows] == [
        (Path(scan).name.replace(".nii.gz", ""), method) for scan in scored["scans"] for method in METHODS]
    for row in rows:
        assert row["max_sensitivity"] == ""  # switched off
        assert row["sanity_status"] in ("pass", "fail", "inconclusive")
        # an inconclusive check (degenerate randomised map) is never a pass: sanity_pass stays empty
        assert row["sanity_pass"] == {"pass": "true", "fail": "false", "inconclusive": ""}[row["sanity_status"]]
        assert row["pointing_game"] in ("0", "1")
        assert row["verdict"] in ("trusted", "caution", "do-not-use", "inconclusive") and row["verdict_reason"]
        if float(row["auroc"]) < 0.6 or float(row["peak_distance_mm"]) > 20:
            assert row["verdict"] == "do-not-use", row
        assert float(row["infidelity_random"]) >= 0.0 and float(row["deletion_auc_random"]) >= 0.0
        assert row["target"] == "lesion"
        for column in ("mass_in_mask", "auroc", "deletion_auc", "insertion_auc", "rank_accuracy"):
            assert 0.0 <= float(row[column]) <= 1.0
        shells = sum(float(row[f"shell_mass_{a}_{a + 2}mm"]) for a in range(0, 12, 2))
        assert float(row["mass_in_mask"]) + shells <= 1.0 + 1e-6
        assert float(row["infidelity"]) >= 0.0 and float(row["com_distance_mm"]) >= 0.0


def test_score_is_reproducible_and_prints_json(cli, scored, tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    common = [scored["model"], scored["scans"][0], "--method", "saliency", "--seed", "3"]
    result = cli("score", *common, "-o", first, "--json")
    assert result.exit_code == 0, result.stderr
    assert cli("score", *common, "-o", second).exit_code == 0
    assert first.read_text() == second.read_text()
    rows = json.loads(result.stdout, parse_constant=_no_nan)
    assert len(rows) == 1 and rows[0]["method"] == "saliency"
    assert rows[0]["sanity_pass"] in (True, False, None) and len(rows[0]["sanity_cascade"]) == 3
    assert rows[0]["verdict"] in ("trusted", "caution", "do-not-use", "inconclusive")
    assert rows[0]["max_sensitivity"] > 0
    assert "pointing_game" not in _read(first)[0]  # no mask, no localisation columns


def test_score_refuses_a_mask_on_another_grid(cli, scored, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_mask.nii.gz"
    write_nifti(Volume(np.ones((5, 6, 7), dtype=np.uint8), np.eye(4)), wrong)
    out = tmp_path / "scores.csv"
    result = cli("score", scored["model"], scored["scans"][0], "--mask", wrong, "-m", "saliency", "-o", out)
    assert result.exit_code == 4
    assert "does not match the image grid" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_score_batch_survives_a_bad_scan(cli, scored, tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    out = tmp_path / "scores.csv"
    result = cli("score", scored["model"], scored["scans"][0], broken, "-m", "saliency", "-o", out, "--no-sanity",
                 "--no-sensitivity")
    assert result.exit_code == 3, result.stderr
    assert "failed broken" in result.stderr
    rows = _read(out)
    assert [row["case_id"] for row in rows] == [Path(scored["scans"][0]).name.replace(".nii.gz", "")]
    assert rows[0]["sanity_pass"] == ""
    assert rows[0]["verdict"] == "caution"  # without the sanity check a map is never trusted


def test_score_needs_one_mask_per_scan(cli, scored, tmp_path: Path) -> None:
    result = cli("score", scored["model"], *scored["scans"], "--mask", scored["masks"][0], "-m", "saliency",
                 "-o", tmp_path / "scores.csv")
    assert result.exit_code == 4
    assert "one mask per scan" in result.stderr


def test_unknown_method_is_a_configuration_error(cli, scored, tmp_path: Path) -> None:
    result = cli("score", scored["model"], scored["scans"][0], "-m", "telepathy", "-o", tmp_path / "s.csv")
    assert result.exit_code == 4 and "unknown method telepathy" in result.stderr
