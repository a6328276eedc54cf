"""Deep supervision of GP networks: a training-only auxiliary classifier on an encoder level's features."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from medxai.errors import ConfigError
from medxai.models.model_dir import load_model
from medxai.models.registry import build_network
from medxai.models.train import train_model
from medxai.models.weakseg.deep_supervision import DeepSupervision
from medxai.testing.sphere_cohort import write_sphere_cohort

GP_ARCHS = ("gp-unet", "gp-shuffleunet", "gp-reconresnet")


@pytest.mark.parametrize("arch", GP_ARCHS)
def test_the_auxiliary_loss_trains_the_encoder_only(arch: str) -> None:
    """Its gradient reaches every encoder parameter feeding the named layer and none of the decoder's or the
    1x1 class convolution's: the maps are still learnt from the pooled-map loss alone."""
    torch.manual_seed(0)
    network = build_network(arch, in_channels=2, num_classes=3, spatial_size=(24, 24, 24)).train()
    supervision = DeepSupervision(network, num_classes=3, weight=0.5)
    network(torch.randn(2, 2, 24, 20, 28))
    loss = supervision.loss(nn.CrossEntropyLoss(), torch.tensor([0, 2]))
    loss.backward()
    encoder = network.backbone.get_submodule(network.encoder_layer)
    reached = {name for name, p in network.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    encoder_names = {f"backbone.{network.encoder_layer}.{name}" for name, _ in encoder.named_parameters()}
    assert encoder_names and encoder_names <= reached
    classifier = [name for name, _ in network.named_parameters()][-2:]  # the last layer's weight and bias
    assert not set(classifier) & reached
    assert all(p.grad is not None for p in supervision.parameters())
    supervision.remove()
    network(torch.randn(1, 2, 24, 24, 24))
    with pytest.raises(RuntimeError, match="forward pass first"):
        supervision.loss(nn.CrossEntropyLoss(), torch.tensor([0]))


def test_the_head_is_not_part_of_the_saved_model(tmp_path: Path) -> None:
    labels = write_sphere_cohort(tmp_path / "data", cases=8, size=24, seed=2)
    common = dict(arch="gp-unet", task="weakseg", epochs=2, batch_size=4, spatial_size=24, val_fraction=0.25, device="cpu",
                  negative_class=None)  # no flat absence map: only the deep-supervision head is in question
    train_model(labels, tmp_path / "supervised", **common)
    train_model(labels, tmp_path / "plain", deep_supervision=0.0, **common)
    fresh = build_network("gp-unet", in_channels=1, num_classes=2, spatial_size=(24, 24, 24))
    for name, weight in (("supervised", 0.5), ("plain", 0.0)):
        info = json.loads((tmp_path / name / "medxai-model.json").read_text())
        assert info["training"]["deep_supervision"] == weight
        with open(tmp_path / name / "metrics.csv", newline="") as handle:
            auxiliary = [row["train_auxiliary_loss"] for row in csv.DictReader(handle)]
        assert all(float(value) > 0 for value in auxiliary) if weight else auxiliary == ["", ""]
        model = load_model(tmp_path / name)  # strict load into the plain architecture
        assert set(model.network.state_dict()) == set(fresh.state_dict())
    assert load_model(tmp_path / "supervised").sha256 != load_model(tmp_path / "plain").sha256


def test_deep_supervision_is_refused_where_it_does_not_apply(tmp_path: Path) -> None:
    labels = write_sphere_cohort(tmp_path / "data", cases=8, size=24, seed=2)
    with pytest.raises(ConfigError, match="weakly-supervised architectures"):
        train_model(labels, tmp_path / "m", arch="tiny", deep_supervision=0.5, epochs=1, spatial_size=24)
    with pytest.raises(ConfigError, match="weight >= 0"):
        train_model(labels, tmp_path / "m", arch="gp-unet", task="weakseg", deep_supervision=-1.0, epochs=1, spatial_size=24)
    assert not (tmp_path / "m").exists()


def test_training_with_a_flat_negative_class(tmp_path: Path) -> None:
    labels = write_sphere_cohort(tmp_path / "data", cases=8, size=24, seed=2)
    common = dict(arch="gp-unet", task="weakseg", epochs=1, batch_size=4, spatial_size=24, val_fraction=0.25, device="cpu")
    train_model(labels, tmp_path / "m", negative_class="normal", **common)
    info = json.loads((tmp_path / "m" / "medxai-model.json").read_text())
    assert info["training"]["negative_class"] == "normal" and info["arch_kwargs"]["negative_class"] == 1
    model = load_model(tmp_path / "m")
    with torch.no_grad():
        maps = model.network.heatmaps(torch.randn(1, 1, 24, 24, 24))
    assert int(torch.unique(maps[0, 1]).numel()) == 1 and float(maps[0, 0].std()) > 0
    with pytest.raises(ConfigError, match="not one of the classes"):
        train_model(labels, tmp_path / "n", negative_class="benign", **common)
    with pytest.raises(ConfigError, match="--negative-class applies to the weakly-supervised"):
        train_model(labels, tmp_path / "n", arch="tiny", negative_class="normal", epochs=1, spatial_size=24)
    assert not (tmp_path / "n").exists()
