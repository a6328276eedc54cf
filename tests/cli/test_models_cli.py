"""``medxai train`` and ``medxai predict`` through the real entry point."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch

from medxai.models.model_dir import WEIGHTS
from medxai.testing.sphere_cohort import write_sphere_cohort


def test_train_then_predict_end_to_end(cli, tmp_path: Path) -> None:
    labels = write_sphere_cohort(tmp_path / "data", cases=8, size=24, seed=2)
    model = tmp_path / "model"
    trained = cli("train", labels.parent, "-o", model, "--arch", "tiny", "--epochs", "1", "--batch-size", "4",
                  "--spatial-size", "24", "--val-fraction", "0.25", "--seed", "3", "--device", "cpu")
    assert trained.exit_code == 0, trained.stderr
    assert "validation AUC" in trained.stdout
    assert (model / "medxai-model.json").is_file() and (model / "metrics.csv").is_file()

    scans = sorted((tmp_path / "data" / "images").glob("*.nii.gz"))[:3]
    out = tmp_path / "preds.csv"
    predicted = cli("predict", model, *scans, "-o", out)
    assert predicted.exit_code == 0, predicted.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["case_id", "prediction", "p_lesion", "p_normal", "input"]
    assert [r["case_id"] for r in rows] == ["case000", "case001", "case002"]
    for row in rows:
        assert float(row["p_lesion"]) + float(row["p_normal"]) == pytest.approx(1.0, abs=1e-5)
        assert row["prediction"] == ("lesion" if float(row["p_lesion"]) >= float(row["p_normal"]) else "normal")

    as_json = cli("predict", model, scans[0], "--model", model, "--json")
    assert as_json.exit_code == 0, as_json.stderr
    [item] = json.loads(as_json.stdout)
    assert item["case_id"] == "case000"
    assert abs(item["probabilities"]["lesion"] - float(rows[0]["p_lesion"])) < 1e-5  # ensemble of one model twice

    as_csv = cli("predict", model, scans[1])
    assert as_csv.stdout.splitlines()[0] == "case_id,prediction,p_lesion,p_normal,input"

    # A batch survives a bad scan: the others are predicted (same probabilities as above, so the chunk of
    # the batch that held the bad scan was not shifted), the bad one is named on stderr, exit 3.
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not a NIfTI file")
    partial = tmp_path / "partial.csv"
    survived = cli("predict", model, scans[0], corrupt, scans[2], "-o", partial, "--batch-size", "2")
    assert survived.exit_code == 3, survived.stderr
    kept = list(csv.DictReader(io.StringIO(partial.read_text())))
    assert [r["case_id"] for r in kept] == ["case000", "case002"]
    assert [r["p_lesion"] for r in kept] == [rows[0]["p_lesion"], rows[2]["p_lesion"]]
    assert "failed corrupt:" in survived.stderr and "corrupt.nii.gz" in survived.stderr
    alone = cli("predict", model, corrupt)
    assert alone.exit_code == 4 and "corrupt.nii.gz" in alone.stderr


def _one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_tampered_and_pickled_models_are_refused(cli, tmp_path: Path) -> None:
    labels = write_sphere_cohort(tmp_path / "data", cases=8, size=24, seed=2)
    scan = next((tmp_path / "data" / "images").glob("*.nii.gz"))
    model = tmp_path / "model"
    assert cli("train", labels, "-o", model, "--epochs", "1", "--spatial-size", "24", "--val-fraction", "0.25").exit_code == 0
    weights = model / WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    _one_line_error(cli("predict", model, scan), 4, "checksum mismatch")

    pickled = tmp_path / "model.pth"
    torch.save({"weights": torch.zeros(3)}, pickled)
    _one_line_error(cli("predict", pickled, scan), 4, "never unpickles")
    _one_line_error(cli("predict", tmp_path / "data", scan), 4, "medxai-model.json")


def test_bad_training_input_is_one_line(cli, tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("case_id,image,mask,label\na,missing.nii.gz,,lesion\n")
    _one_line_error(cli("train", tmp_path, "-o", tmp_path / "m"), 4, "missing.nii.gz does not exist")
    _one_line_error(cli("train", tmp_path, "-o", tmp_path / "m", "--arch", "vgg"), 4, "unknown architecture")
    assert not (tmp_path / "m").exists()


def test_pooling_chosen_at_training_is_what_predict_uses(cli, tmp_path: Path) -> None:
    """``medxai train --pooling max --negative-class normal`` on a GP-UNet: the model directory records both and
    ``medxai predict`` gives the softmax of the class maps' maxima (not of the default log-sum-exp pooling)."""
    from medxai.io.readers import read_volume
    from medxai.models.model_dir import load_model

    labels = write_sphere_cohort(tmp_path / "data", cases=8, size=24, seed=2)
    model = tmp_path / "model"
    trained = cli("train", labels, "-o", model, "--task", "weakseg", "--arch", "gp-unet", "--pooling", "max",
                  "--negative-class", "normal", "--epochs", "2", "--spatial-size", "24", "--val-fraction", "0.25",
                  "--device", "cpu")
    assert trained.exit_code == 0, trained.stderr
    info = json.loads((model / "medxai-model.json").read_text())
    assert info["arch_kwargs"]["pooling_sharpness"] is None and info["training"]["pooling"] == "max"
    assert info["arch_kwargs"]["negative_class"] == info["classes"].index("normal")

    scan = sorted((tmp_path / "data" / "images").glob("*.nii.gz"))[0]
    predicted = cli("predict", model, scan, "--json")
    assert predicted.exit_code == 0, predicted.stderr
    [item] = json.loads(predicted.stdout)
    loaded = load_model(model)
    batch = loaded.preprocessor.prepare([read_volume(scan)]).tensor.as_tensor()[None]
    with torch.inference_mode():
        maps = loaded.network.heatmaps(batch)
        by_max = torch.softmax(maps.amax(dim=(2, 3, 4)), dim=1)[0]
        loaded.network.set_sharpness(10.0)
        by_lse = torch.softmax(loaded.network.pool(maps), dim=1)[0]
    lesion = loaded.classes.index("lesion")
    assert item["probabilities"]["lesion"] == pytest.approx(float(by_max[lesion]), abs=1e-5)
    assert abs(float(by_max[lesion]) - float(by_lse[lesion])) > 1e-4


def test_pooling_option_is_checked(cli, tmp_path: Path) -> None:
    labels = write_sphere_cohort(tmp_path / "data", cases=8, size=24, seed=2)
    _one_line_error(cli("train", labels, "-o", tmp_path / "m", "--task", "weakseg", "--arch", "gp-unet",
                        "--pooling", "lse:0"), 4, "pooling must be 'max' or 'lse:R'")
    _one_line_error(cli("train", labels, "-o", tmp_path / "m", "--arch", "tiny", "--pooling", "max"), 4,
                    "applies to the weakly-supervised architectures")
    assert not (tmp_path / "m").exists()
