"""Training (determinism, metrics files, multi-channel) and prediction (ensembles, input formats)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.itk import write_itk
from medxai.io.nifti import write_nifti
from medxai.models.model_dir import load_model, save_model_dir
from medxai.models.predict import predict
from medxai.models.preprocessing import PreprocessingConfig
from medxai.models.registry import build_network
from medxai.models.train import learning_rate_schedule, train_model
from medxai.testing.sphere_cohort import write_sphere_cohort
from medxai.volume import Volume

FAST = {"arch": "tiny", "epochs": 2, "batch_size": 4, "spatial_size": 24, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sphere_cohort(tmp_path_factory.mktemp("cohort"), cases=12, size=24, seed=5)


def test_same_seed_gives_identical_weights(cohort: Path, tmp_path: Path) -> None:
    first = train_model(cohort, tmp_path / "a", seed=7, device="cpu", **FAST)
    second = train_model(cohort, tmp_path / "b", seed=7, device="cpu", **FAST)
    third = train_model(cohort, tmp_path / "c", seed=8, device="cpu", **FAST)
    hashes = [load_model(tmp_path / name).sha256 for name in "abc"]
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]
    assert first["val_auc"] == second["val_auc"]
    assert (tmp_path / "a" / "metrics.csv").read_text().split("\n")[1].rsplit(",", 1)[0] == \
        (tmp_path / "b" / "metrics.csv").read_text().split("\n")[1].rsplit(",", 1)[0]
    assert third["n_train"] == 9 and third["n_val"] == 3


def test_model_dir_records_training_and_validation(cohort: Path, tmp_path: Path) -> None:
    summary = train_model(cohort, tmp_path / "model", seed=1, device="cpu", **FAST)
    info = json.loads((tmp_path / "model" / "medxai-model.json").read_text())
    assert info["classes"] == ["lesion", "normal"]  # sorted label strings
    assert info["training"]["class_counts"] == {"lesion": 6, "normal": 6}
    assert len(info["training"]["data_sha256"]) == 64 and info["training"]["seed"] == 1
    assert info["metrics"]["val_confusion_matrix"] == summary["val_confusion_matrix"]
    assert np.sum(info["metrics"]["val_confusion_matrix"]) == summary["n_val"] == 3
    with open(tmp_path / "model" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, summary["epochs_run"] + 1))
    assert {"train_loss", "val_loss", "val_auc", "val_f1"} <= set(rows[0])
    validation = json.loads((tmp_path / "model" / "validation.json").read_text())
    assert len(validation["cases"]) == 3
    # the two classes are split in proportion (stratified): 3 validation cases from 6 + 6 -> at least one of each
    assert {case["label"] for case in validation["cases"]} == {"lesion", "normal"}
    for case in validation["cases"]:
        assert case["p_lesion"] + case["p_normal"] == pytest.approx(1.0, abs=1e-5)


def test_multichannel_cohort_trains_and_predicts(tmp_path: Path) -> None:
    csv_path = write_sphere_cohort(tmp_path / "data", cases=8, size=24, channels=2)
    train_model(csv_path, tmp_path / "model", seed=0, device="cpu", **{**FAST, "epochs": 1, "val_fraction": 0.5})
    model = load_model(tmp_path / "model")
    assert model.preprocessor.config.in_channels == 2
    images = tmp_path / "data" / "images"
    [prediction] = predict([model], [(images / "case000_c0.nii.gz", images / "case000_c1.nii.gz")])
    assert prediction.case_id == "case000_c0"
    with pytest.raises(InvalidInputError, match="expects 2 channel"):
        predict([model], [images / "case000_c0.nii.gz"])


def _step_gradient_norms(cohort: Path, out: Path, **options: object) -> list[float]:
    """The global gradient norm the optimiser sees at every step of a short training."""
    norms: list[float] = []

    def record(optimizer: torch.optim.Optimizer, *_: object) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        train_model(cohort, out, seed=0, device="cpu", **{**FAST, "epochs": 1}, **options)
    finally:
        handle.remove()
    return norms


def test_gradient_clipping_bounds_every_step(cohort: Path, tmp_path: Path) -> None:
    unclipped = _step_gradient_norms(cohort, tmp_path / "a")
    clipped = _step_gradient_norms(cohort, tmp_path / "b", max_grad_norm=1e-3)
    assert len(clipped) == len(unclipped) >= 2 and min(unclipped) > 1e-3  # the bound binds at every step
    assert max(clipped) <= 1e-3 * (1 + 1e-4)
    info = json.loads((tmp_path / "b" / "medxai-model.json").read_text())
    assert info["training"]["max_grad_norm"] == 1e-3
    with pytest.raises(ConfigError, match="clip must be positive"):
        train_model(cohort, tmp_path / "c", max_grad_norm=-1.0, **FAST)


def test_training_refuses_bad_settings(cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not among the given classes"):
        train_model(cohort, tmp_path / "m", classes=["normal"], **FAST)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        train_model(cohort, tmp_path / "m", **{**FAST, "val_fraction": 0.0})
    with pytest.raises(InvalidInputError, match="no labels.csv"):
        train_model(tmp_path, tmp_path / "m", **FAST)
    assert not (tmp_path / "m").exists()


def _random_model(folder: Path, seed: int, classes: list[str]) -> None:
    torch.manual_seed(seed)
    network = build_network("tiny", in_channels=1, num_classes=len(classes), spatial_size=(16, 16, 16))
    with torch.no_grad():
        network.head.bias.copy_(torch.linspace(-1, 1, len(classes)) * seed)
    save_model_dir(folder, network=network, arch="tiny", classes=classes, task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(16, 16, 16)), training={}, metrics={})


def test_ensemble_is_the_mean_of_member_probabilities(cohort: Path, tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        _random_model(tmp_path / f"m{seed}", seed, ["a", "b", "c"])
    models = [load_model(tmp_path / f"m{seed}") for seed in (1, 2, 3)]
    scans = sorted((cohort.parent / "images").glob("*.nii.gz"))[:5]
    singles = [predict([model], scans, batch_size=2) for model in models]
    together = predict(models, scans, batch_size=3)
    for index, prediction in enumerate(together):
        expected = np.mean([[s[index].probabilities[c] for c in "abc"] for s in singles], axis=0)
        got = np.array([prediction.probabilities[c] for c in "abc"])
        assert np.allclose(got, expected, atol=1e-6)
        assert prediction.prediction == "abc"[int(np.argmax(expected))]
        assert len(prediction.members) == 3
    assert not np.allclose([singles[0][0].probabilities[c] for c in "abc"], [singles[2][0].probabilities[c] for c in "abc"])


def test_ensemble_members_must_share_classes(tmp_path: Path) -> None:
    _random_model(tmp_path / "ab", 1, ["a", "b"])
    _random_model(tmp_path / "ba", 1, ["b", "a"])
    with pytest.raises(ConfigError, match="disagree on classes"):
        predict([load_model(tmp_path / "ab"), load_model(tmp_path / "ba")], [])


def test_nifti_nrrd_and_dicom_inputs_predict_alike(tmp_path: Path) -> None:
    from medxai.testing.dicom_writer import dicom_representable, write_dicom_series

    affine = np.array([[-1.2, 0, 0, 20.0], [0, 0.9, 0, -15.0], [0, 0, 2.5, 4.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).normal(100, 30, (20, 18, 10))
    volume = dicom_representable(Volume(data, affine), rescale_slope=0.01)
    write_nifti(volume, tmp_path / "scan.nii.gz", dtype=np.float32)
    write_itk(volume.with_data(volume.data.astype(np.float32)), tmp_path / "scan.nrrd")
    write_dicom_series(volume, tmp_path / "dicom", rescale_slope=0.01)
    _random_model(tmp_path / "model", 4, ["a", "b"])
    model = load_model(tmp_path / "model")
    results = predict([model], [tmp_path / "scan.nii.gz", tmp_path / "scan.nrrd", tmp_path / "dicom"])
    assert [r.case_id for r in results] == ["scan_nii_gz", "scan_nrrd", "dicom"]
    reference = results[0].probabilities["a"]
    for other in results[1:]:
        assert other.probabilities["a"] == pytest.approx(reference, abs=1e-4)


def _schedule_rates(*, epochs: int, steps_per_epoch: int, warmup_epochs: float) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    schedule = learning_rate_schedule(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch, warmup_epochs=warmup_epochs)
    rates = []
    for _ in range(epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_without_warmup_the_schedule_is_torchs_per_epoch_cosine() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6, eta_min=0.5 * 0.02)
    expected = []
    for _ in range(6):
        expected += [optimizer.param_groups[0]["lr"]] * 4
        optimizer.step()
        reference.step()
    assert _schedule_rates(epochs=6, steps_per_epoch=4, warmup_epochs=0) == pytest.approx(expected, rel=1e-9)


def test_warmup_ramps_linearly_then_joins_the_cosine() -> None:
    plain = _schedule_rates(epochs=6, steps_per_epoch=4, warmup_epochs=0)
    warm = _schedule_rates(epochs=6, steps_per_epoch=4, warmup_epochs=1.5)  # 6 steps
    assert warm[:6] == pytest.approx([plain[i] * (i + 1) / 6 for i in range(6)], rel=1e-9)
    assert warm[6:] == pytest.approx(plain[6:], rel=1e-9)
    assert all(a < b for a, b in zip(warm[:5], warm[1:6]))


def test_warmup_is_recorded_and_bounded(cohort: Path, tmp_path: Path) -> None:
    train_model(cohort, tmp_path / "m", seed=0, device="cpu", warmup_epochs=1.0, lr=1e-3, **FAST)
    info = json.loads((tmp_path / "m" / "medxai-model.json").read_text())
    assert info["training"]["warmup_epochs"] == 1.0
    with open(tmp_path / "m" / "metrics.csv", newline="") as handle:
        rates = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert rates[0] == pytest.approx(1e-3)  # the last warm-up step reaches the full rate
    with pytest.raises(ConfigError, match="warm-up"):
        train_model(cohort, tmp_path / "n", warmup_epochs=2.0, **FAST)
