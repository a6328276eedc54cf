"""Model directory: atomic save, checked load, refusal of tampered weights and pickles."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from medxai.errors import ConfigError, InvalidInputError
from medxai.models.model_dir import MODEL_JSON, WEIGHTS, load_model, save_model_dir
from medxai.models.preprocessing import PreprocessingConfig
from medxai.models.registry import build_network

CONFIG = PreprocessingConfig(spatial_size=(16, 16, 16), spacing=(2.0, 2.0, 2.0), channels=("flair", "t1c"))


def _save(folder: Path, *, arch: str = "tiny") -> torch.nn.Module:
    torch.manual_seed(3)
    network = build_network(arch, in_channels=2, num_classes=3, spatial_size=(16, 16, 16))
    save_model_dir(
        folder, network=network, arch=arch, classes=["a", "b", "c"], task="classification", preprocessing=CONFIG,
        training={"data_sha256": "0" * 64, "epochs": 1}, metrics={"val_auc": 0.5},
        extra_files={"metrics.csv": "epoch\n1\n"},
    )
    return network.eval()


def test_save_then_load_gives_the_same_network(tmp_path: Path) -> None:
    original = _save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    x = torch.randn(2, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(original(x), loaded.network(x))
    assert not loaded.network.training
    assert loaded.classes == ["a", "b", "c"] and loaded.arch == "tiny" and loaded.task == "classification"
    assert loaded.preprocessor.config == CONFIG
    assert loaded.sha256 == hashlib.sha256((tmp_path / "model" / WEIGHTS).read_bytes()).hexdigest()
    assert loaded.info["training"]["data_sha256"] == "0" * 64
    assert set(loaded.info["versions"]) >= {"torch", "monai", "medxai"}
    assert loaded.target_layer == "features"
    assert (tmp_path / "model" / "metrics.csv").read_text() == "epoch\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging leftovers


def test_overwrites_a_model_dir_but_not_another_folder(tmp_path: Path) -> None:
    _save(tmp_path / "model")
    _save(tmp_path / "model")
    assert load_model(tmp_path / "model").classes == ["a", "b", "c"]
    other = tmp_path / "results"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        _save(other)
    assert (other / "keep.txt").read_text() == "mine"


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "model")
    weights = tmp_path / "model" / WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(InvalidInputError, match="checksum mismatch"):
        load_model(tmp_path / "model")


class _Payload:
    """Unpickling this runs os.system: a load that executes pickle would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "weights.bin", "checkpoint"])
def test_pickled_checkpoints_are_refused_without_unpickling(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / name
    torch.save({"state": _Payload(marker)}, path)
    with pytest.raises(InvalidInputError, match="pickled PyTorch checkpoint"):
        load_model(path)
    assert not marker.exists()


def test_folder_without_description_and_unknown_arch_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=MODEL_JSON):
        load_model(tmp_path / "empty")
    _save(tmp_path / "model")
    description = tmp_path / "model" / MODEL_JSON
    info = json.loads(description.read_text())
    info["arch"] = "resnet999"
    description.write_text(json.dumps(info))
    with pytest.raises(InvalidInputError, match="unknown architecture 'resnet999'"):
        load_model(tmp_path / "model")
    with pytest.raises(InvalidInputError, match="bare weights"):
        load_model(tmp_path / "model" / WEIGHTS)
    with pytest.raises(InvalidInputError, match="no such"):
        load_model(tmp_path / "missing")


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "model")
    description = tmp_path / "model" / MODEL_JSON
    info = json.loads(description.read_text())
    info["arch"] = "resnet10"
    description.write_text(json.dumps(info))
    with pytest.raises(InvalidInputError, match="do not fit architecture 'resnet10'"):
        load_model(tmp_path / "model")


def test_options_cannot_override_a_model_dir(tmp_path: Path) -> None:
    _save(tmp_path / "model")
    with pytest.raises(ConfigError, match="spatial_size"):
        load_model(tmp_path / "model", spatial_size=(8, 8, 8))


@pytest.mark.parametrize("sharpness", [None, 3.0])
def test_a_gp_model_keeps_the_pooling_it_was_saved_with(tmp_path: Path, sharpness: float | None) -> None:
    """The pooling has no weights: a model saved with max pooling (or sharpness 3) must not come back with
    the architecture's current default (log-sum-exp, sharpness 10), which would change its logits."""
    torch.manual_seed(3)
    network = build_network("gp-unet", in_channels=2, num_classes=3, spatial_size=(16, 16, 16))
    network.set_sharpness(sharpness)
    save_model_dir(
        tmp_path / "model", network=network, arch="gp-unet", classes=["a", "b", "c"], task="weakseg",
        preprocessing=CONFIG, training={"epochs": 1}, metrics={},
    )
    loaded = load_model(tmp_path / "model")
    assert loaded.network.sharpness == sharpness != build_network(
        "gp-unet", in_channels=2, num_classes=3, spatial_size=(16, 16, 16)).sharpness
    x = torch.randn(2, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(network.eval()(x), loaded.network(x))
    description = json.loads((tmp_path / "model" / MODEL_JSON).read_text())
    description["arch_kwargs"]["pooling_sharpness"] = -1
    (tmp_path / "model" / MODEL_JSON).write_text(json.dumps(description))
    with pytest.raises(InvalidInputError, match="sharpness must be positive"):
        load_model(tmp_path / "model")


def test_a_gp_model_keeps_its_flat_negative_class(tmp_path: Path) -> None:
    torch.manual_seed(4)
    network = build_network("gp-unet", in_channels=2, num_classes=3, spatial_size=(16, 16, 16))
    network.set_negative_class(2)
    with torch.no_grad():
        network.negative_level.fill_(1.25)
    save_model_dir(tmp_path / "model", network=network, arch="gp-unet", classes=["a", "b", "normal"], task="weakseg",
                   preprocessing=CONFIG, training={"epochs": 1}, metrics={})
    loaded = load_model(tmp_path / "model")
    assert loaded.network.negative_class == 2 and float(loaded.network.negative_level) == 1.25
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(network.eval()(x), loaded.network(x))
    description = json.loads((tmp_path / "model" / MODEL_JSON).read_text())
    description["arch_kwargs"]["negative_class"] = 3
    (tmp_path / "model" / MODEL_JSON).write_text(json.dumps(description))
    with pytest.raises(InvalidInputError, match="negative_class 3 is not one of the 3 classes"):
        load_model(tmp_path / "model")
