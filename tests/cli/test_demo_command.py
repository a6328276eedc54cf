"""``medxai demo``: the whole chain writes every output; ``--quick`` in seconds, the full demo marked slow."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pypdf import PdfReader

from medxai.io.readers import read_volume


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _check_outputs(out: Path, *, methods: tuple[str, ...]) -> dict:
    record = json.loads((out / "demo.json").read_text())
    for relative in record["outputs"].values():
        assert (out / relative).exists(), relative
    assert (out / "model" / "medxai-model.json").is_file()
    held_out = {row["case_id"] for row in _rows(out / "data" / "test.csv")}
    trained = {row["case_id"] for row in _rows(out / "data" / "train.csv")}
    assert held_out and not held_out & trained
    predicted = _rows(out / "preds.csv")
    assert {row["case_id"] for row in predicted} == held_out
    assert set(predicted[0]) >= {"case_id", "prediction", "p_lesion", "p_normal"}
    assert record["explained"] and set(record["explained"]) <= held_out
    scores = _rows(out / "scores.csv")
    assert {(r["case_id"], r["method"]) for r in scores} == {(c, m) for c in record["explained"] for m in methods}
    assert all(r["pointing_game"] in ("0", "1") and r["sanity_pass"] in ("true", "false", "")  # empty: inconclusive
               and r["verdict"] in ("trusted", "caution", "do-not-use", "inconclusive") and r["verdict_reason"] for r in scores)
    for case_id in record["explained"]:
        scan = read_volume(out / "data" / "images" / f"{case_id}.nii.gz")
        recorded = json.loads((out / "explanations" / case_id / "input.json").read_text())["input"]
        assert Path(recorded) == (out / "data" / "images" / f"{case_id}.nii.gz").absolute()  # every output names its input
        for method in methods:
            heatmap = read_volume(out / "explanations" / case_id / f"{method}.nii.gz")
            assert heatmap.same_grid(scan) and np.isfinite(heatmap.data).all() and np.abs(heatmap.data).max() > 0
        assert read_volume(out / "segmentation" / case_id / "mask.nii.gz").same_grid(scan)
        mask = nib.load(out / "segmentation" / case_id / "mask.nii.gz")
        voxel_ml = abs(np.linalg.det(mask.affine[:3, :3])) / 1000.0
        recorded = json.loads((out / "segmentation" / case_id / "segmentation.json").read_text())["mask"]["volume_ml"]
        assert recorded == pytest.approx(np.count_nonzero(np.asarray(mask.dataobj)) * voxel_ml)
        text = " ".join("".join(p.extract_text() or "" for p in PdfReader(str(out / "reports" / f"{case_id}.pdf")).pages).split())
        assert all(f"Method: {method}" in text for method in methods)
        assert "Research tool, not a diagnostic device" in text and "Weakly-supervised segmentation" in text
    radiomics = [r for case_id in record["explained"] if (out / "radiomics" / case_id / "features.csv").is_file()
                 for r in _rows(out / "radiomics" / case_id / "features.csv")]
    assert {r["region"] for r in radiomics} >= {"lesion", "shell"}
    assert len(PdfReader(str(out / "summary.pdf")).pages) == 1
    return record


def test_quick_demo_writes_every_output(cli, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = cli("demo", "--quick", "-o", out)
    assert result.exit_code == 0, result.stderr
    record = _check_outputs(out, methods=("smoothgrad", "gradcam"))
    assert "summary.pdf" in result.stdout and "validation AUC" in result.stdout
    assert set(record["seconds"]) == {"cohort", "training", "prediction", "explanations", "scores", "segmentation",
                                      "radiomics", "reports"}
    # a second run with the same seed replaces the previous demo folder and gives the same results
    first_predictions = _rows(out / "preds.csv")
    case_id = record["explained"][0]
    first_heatmap = read_volume(out / "explanations" / case_id / "smoothgrad.nii.gz").data
    again = cli("demo", "--quick", "-o", out, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["explained"] == record["explained"]
    assert _rows(out / "preds.csv") == first_predictions
    np.testing.assert_array_equal(read_volume(out / "explanations" / case_id / "smoothgrad.nii.gz").data, first_heatmap)


def test_demo_refuses_a_folder_that_is_not_a_demo(cli, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = cli("demo", "--quick", "-o", tmp_path)
    assert result.exit_code == 4 and "not a medxai demo folder" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_full_demo(cli, tmp_path: Path) -> None:
    result = cli("demo", "-o", tmp_path / "demo", "--json")
    assert result.exit_code == 0, result.stderr
    record = _check_outputs(tmp_path / "demo", methods=("smoothgrad", "integrated_gradients", "gradcam", "occlusion"))
    assert record["metrics"]["val_auc"] > 0.8, record["metrics"]
