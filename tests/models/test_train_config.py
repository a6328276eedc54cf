"""The training config: per-task defaults, one-line validation errors, the automatic negative class, and the
augmentation record read from the transforms that were built."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medxai.errors import ConfigError
from medxai.models.train import train_model
from medxai.models.train_config import Augmentation, TrainConfig, absence_class, describe_augmentation
from medxai.testing.sphere_cohort import write_sphere_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sphere_cohort(tmp_path_factory.mktemp("cohort"), cases=8, size=16, seed=2)


def test_each_task_has_its_measured_defaults() -> None:
    weakseg = TrainConfig(task="weakseg").validate()
    assert (weakseg.arch, weakseg.lr, weakseg.max_grad_norm, weakseg.spatial_size, weakseg.epochs, weakseg.patience) == \
        ("gp-unet", 3e-3, 1.0, (32, 32, 32), 40, 10)
    assert weakseg.negative_class == "auto"  # settled against the labels
    plain = TrainConfig().validate()
    assert (plain.arch, plain.lr, plain.max_grad_norm, plain.spatial_size, plain.epochs, plain.patience) == \
        ("small", 2e-3, 0.0, (64, 64, 64), 40, 40)
    assert plain.negative_class is None  # "auto" means nothing for classification
    given = TrainConfig(arch="gp-unet", task="weakseg", lr=5e-4, max_grad_norm=0.0, spatial_size=24).validate()
    assert (given.lr, given.max_grad_norm, given.spatial_size) == (5e-4, 0.0, (24, 24, 24))


@pytest.mark.parametrize(("options", "message"), [
    ({"arch": "tiny", "task": "weakseg"}, "is for task 'classification'"),
    ({"lr": 0.0}, "learning rate positive"),
    ({"epochs": 0}, "at least 1"),
    ({"val_fraction": 1.0}, "between 0 and 1"),
    ({"max_grad_norm": -1.0}, "clip must be positive"),
    ({"warmup_epochs": 50.0}, "shorter than the 40 epochs"),
    ({"negative_class": "normal"}, "--negative-class applies to the weakly-supervised"),
    ({"pooling": "max"}, "--pooling applies"),
    ({"arch": "gp-unet", "task": "weakseg", "pooling": "lse:-1"}, "pool"),
    ({"arch": "gp-unet", "task": "weakseg", "deep_supervision": -0.5}, "deep supervision is a weight"),
    ({"task": "segmentation"}, "unknown task"),
])
def test_validation_raises_one_config_error_line(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        TrainConfig(**options).validate()
    assert "\n" not in str(error.value)


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown training option.*learning_rate"):
        TrainConfig.from_options(learning_rate=0.1)


def test_the_absence_class_is_found_by_its_name() -> None:
    assert absence_class(["lesion", "normal"]) == "normal"
    assert absence_class(["Healthy", "tumour"]) == "Healthy"
    assert absence_class(["lesion", "No-Lesion"]) == "No-Lesion"
    assert absence_class(["benign", "malignant"]) is None  # no class is "nothing found"
    assert absence_class(["healthy", "normal", "lesion"]) is None  # two candidates: no guess
    auto = TrainConfig(arch="gp-unet", task="weakseg").validate()
    assert auto.with_classes(["lesion", "normal"])[0].negative_class == "normal"
    assert auto.with_classes(["lesion", "normal"])[1] == "automatic"
    assert auto.with_classes(["benign", "malignant"])[0].negative_class is None
    named = TrainConfig(arch="gp-unet", task="weakseg", negative_class="lesion").validate()
    assert named.with_classes(["lesion", "normal"])[1] == "option"
    with pytest.raises(ConfigError, match="not one of the classes"):
        TrainConfig(arch="gp-unet", task="weakseg", negative_class="absent").validate().with_classes(["a", "b"])


def test_the_augmentation_record_is_read_from_the_built_transforms() -> None:
    default = describe_augmentation(Augmentation().build(0))
    assert [r["transform"] for r in default] == ["RandFlipd"] * 3 + ["RandAffined", "RandScaleIntensityd",
                                                                       "RandShiftIntensityd"]
    assert [r["spatial_axis"] for r in default[:3]] == [0, 1, 2]
    assert default[3]["rotate_range_rad"] == [0.15] * 3 and default[3]["translate_range_voxels"] == [3.0] * 3
    assert default[4]["factors"] == [-0.1, 0.1] and default[5]["offsets"] == [-0.1, 0.1]
    changed = describe_augmentation(Augmentation(rotate_rad=0.3, intensity_prob=0.2).build(0))
    assert changed[3]["rotate_range_rad"] == [0.3] * 3 and changed[4]["prob"] == 0.2
    assert changed[:3] == default[:3] and changed != default


def test_training_records_the_transforms_and_the_automatic_negative_class(cohort: Path, tmp_path: Path) -> None:
    summary = train_model(cohort, tmp_path / "gp", arch="gp-unet", task="weakseg", epochs=1, batch_size=4,
                          spatial_size=16, device="cpu", augmentation=Augmentation(scale=0.2))
    assert summary["negative_class"] == "normal" and summary["negative_class_chosen"] == "automatic"
    info = json.loads((tmp_path / "gp" / "medxai-model.json").read_text())
    training = info["training"]
    assert training["negative_class"] == "normal" and training["negative_class_chosen"] == "automatic"
    assert info["arch_kwargs"]["negative_class"] == info["classes"].index("normal")
    assert (training["lr"], training["max_grad_norm"]) == (3e-3, 1.0)
    affine = next(r for r in training["augmentation"] if r["transform"] == "RandAffined")
    assert affine["scale_range"] == [0.2] * 3
    off = train_model(cohort, tmp_path / "two", arch="gp-unet", task="weakseg", epochs=1, batch_size=4,
                      spatial_size=16, device="cpu", negative_class=None)
    assert off["negative_class"] is None and off["negative_class_chosen"] is None


def test_a_patch_cohort_is_trained_at_its_patch_size_and_spacing(cohort: Path, tmp_path: Path) -> None:
    from medxai.models.patch_cohort import FORMAT, PATCHES_JSON

    patches = Path(shutil.copytree(cohort.parent, tmp_path / "patches"))
    (patches / PATCHES_JSON).write_text(json.dumps({"format": FORMAT, "patch_size": [12, 12, 12],
                                                    "spacing_mm": [1.5, 1.5, 1.5]}))
    train_model(patches, tmp_path / "m", arch="tiny", epochs=1, batch_size=4, device="cpu")
    info = json.loads((tmp_path / "m" / "medxai-model.json").read_text())
    assert info["sliding_window"]["patch_size"] == [12, 12, 12]
    assert info["sliding_window"]["spacing_mm"] == [1.5, 1.5, 1.5]
    assert info["sliding_window"]["overlap"] == 0.25 and info["sliding_window"]["blend"] == "gaussian"
    assert info["preprocessing"]["spatial_size"] == [12, 12, 12] and info["preprocessing"]["spacing"] == [1.5, 1.5, 1.5]
    with pytest.raises(ConfigError, match="disagrees with the patches"):
        train_model(patches, tmp_path / "n", arch="tiny", epochs=1, spatial_size=16, device="cpu")
    train_model(cohort, tmp_path / "whole", arch="tiny", epochs=1, batch_size=4, spatial_size=16, device="cpu")
    assert "sliding_window" not in json.loads((tmp_path / "whole" / "medxai-model.json").read_text())
