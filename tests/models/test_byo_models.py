"""Bring-your-own models: TorchScript files and MONAI bundles built by the tests themselves."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import Classifier

from medxai.errors import ConfigError, InvalidInputError
from medxai.models.model_dir import load_model
from medxai.models.preprocessing import ChannelIntensity
from medxai.models.registry import build_network


def _tiny() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_network("tiny", in_channels=1, num_classes=2, spatial_size=(16, 16, 16)).eval()


def test_torchscript_file_loads_with_stated_preprocessing(tmp_path: Path) -> None:
    network = _tiny()
    path = tmp_path / "exported.pt"  # a .pt name: recognised by content, not by suffix
    torch.jit.save(torch.jit.trace(network, torch.zeros(1, 1, 16, 16, 16)), str(path))
    loaded = load_model(path, classes=["normal", "lesion"], spatial_size=(16, 16, 16), intensity="window:0,100", trust=True)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), network(x), atol=1e-6)
    assert loaded.classes == ["normal", "lesion"] and loaded.arch == "torchscript"
    assert loaded.preprocessor.config.spatial_size == (16, 16, 16)
    assert loaded.preprocessor.config.intensity == (ChannelIntensity("window", (0.0, 100.0)),)
    assert len(loaded.sha256) == 64
    assert load_model(path, spatial_size=(16, 16, 16), trust=True).classes == ["class_0", "class_1"]


def test_torchscript_needs_size_and_matching_classes(tmp_path: Path) -> None:
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(_tiny()), str(path))
    with pytest.raises(ConfigError, match="--spatial-size"):
        load_model(path, trust=True)
    with pytest.raises(ConfigError, match="3 classes given but the model has 2 outputs"):
        load_model(path, spatial_size=(16, 16, 16), classes=["a", "b", "c"], trust=True)
    with pytest.raises(InvalidInputError, match="does not run on a 2-channel"):
        load_model(path, spatial_size=(16, 16, 16), intensity="zscore;zscore", trust=True)
    with pytest.raises(InvalidInputError, match="--spatial-size"):
        load_model(path, spatial_size=(4096, 4096, 4096), trust=True)


NETWORK_DEF = {
    "_target_": "Classifier", "in_shape": [1, 16, 16, 16], "classes": "@num_classes",
    "channels": [4, 8], "strides": [2, 2],
}


def _bundle(folder: Path, *, network_def: dict | None = None, use_ts: bool = False) -> torch.nn.Module:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    inference = {
        "num_classes": 2,
        "network_def": network_def or NETWORK_DEF,
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image"},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0]},
                {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -100, "a_max": 300,
                 "b_min": 0.0, "b_max": 1.0, "clip": True},
                {"_target_": "Resized", "keys": "image", "spatial_size": [16, 16, 16]},
            ],
        },
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    metadata = {
        "name": "tiny test bundle",
        "network_data_format": {
            "inputs": {"image": {"num_channels": 1, "spatial_shape": [16, 16, 16]}},
            "outputs": {"pred": {"channel_def": {"0": "normal", "1": "lesion"}}},
        },
    }
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    torch.manual_seed(2)
    network = Classifier(in_shape=(1, 16, 16, 16), classes=2, channels=(4, 8), strides=(2, 2)).eval()
    if use_ts:
        torch.jit.save(torch.jit.script(network), str(folder / "models" / "model.ts"))
    else:
        torch.save(network.state_dict(), folder / "models" / "model.pt")
    return network


@pytest.mark.parametrize("use_ts", [False, True])
def test_monai_bundle_loads_network_weights_and_preprocessing(tmp_path: Path, use_ts: bool) -> None:
    network = _bundle(tmp_path / "bundle", use_ts=use_ts)
    loaded = load_model(tmp_path / "bundle", trust=use_ts)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), network(x), atol=1e-6)
    assert loaded.classes == ["normal", "lesion"]
    config = loaded.preprocessor.config
    assert config.spatial_size == (16, 16, 16) and config.spacing == (1.5, 1.5, 2.0) and config.fit == "resize"
    assert config.intensity == (ChannelIntensity("window", (-100.0, 300.0)),)
    assert loaded.info["format"] == "monai-bundle" and loaded.info["unmapped_transforms"] == []


def test_bundle_options_override_its_configs(tmp_path: Path) -> None:
    _bundle(tmp_path / "bundle")
    loaded = load_model(tmp_path / "bundle", classes=["neg", "pos"], spacing=(1.0, 1.0, 1.0), intensity="zscore")
    assert loaded.classes == ["neg", "pos"]
    assert loaded.preprocessor.config.spacing == (1.0, 1.0, 1.0)
    assert loaded.preprocessor.config.intensity == (ChannelIntensity("zscore"),)


def test_bundle_expressions_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    evil = dict(NETWORK_DEF, channels=f"$__import__('pathlib').Path('{marker}').touch() or [4, 8]")
    _bundle(tmp_path / "bundle", network_def=evil)
    with pytest.raises(InvalidInputError, match="Python expression"):
        load_model(tmp_path / "bundle")
    assert not marker.exists()


def test_bundle_with_foreign_target_is_refused(tmp_path: Path) -> None:
    _bundle(tmp_path / "bundle", network_def={"_target_": "subprocess.Popen", "args": ["true"]})
    with pytest.raises(InvalidInputError, match="not a network class from torch.nn or monai.networks"):
        load_model(tmp_path / "bundle")
