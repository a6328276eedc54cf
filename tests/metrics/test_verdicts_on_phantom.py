"""On a phantom whose Grad-CAM points outside the body and whose SmoothGrad points into the lesion, the verdicts
of the real scoring path (:func:`medxai.metrics.scoring.score_explanation`) say so.

The network is crafted, not trained, so what each method must show is known: a 3D convolution with two
channels, a "lesion" unit ReLU(x - 1.5) that fires only on the lesion (intensity 2) and an "air" unit
sigmoid(-20 (x - 0.5)) that is saturated at 1 all over the background (intensity 0) and 0 in the body
(intensity 1). Both pass through ``features`` (the Grad-CAM layer) to the lesion logit with the same weight,
and a skip connection around ``features`` subtracts the air unit again: the output depends on the lesion
alone, but Grad-CAM, which sees only the ``features`` path (gradient times activation), finds the large air
activation there and paints the air around the body (a manipulated model of the kind Grad-CAM cannot see
through). SmoothGrad follows the input gradient, where the two air paths cancel: it shows the lesion.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from medxai.metrics.model_grid import ModelGridCase, ScoreSettings
from medxai.metrics.scoring import method_explainer, score_explanation
from medxai.volume import Volume

SIZE = 32
WEIGHT = 2000.0  # lesion unit: 2000 x 0.5 x ~65 voxels / 32^3 = about 2 logits
OPTIONS = {"gradcam": {"layer": "features"}, "smoothgrad": {"n_samples": 4, "noise_level": 0.02}}


class LesionOrAir(nn.Module):
    """Crafted classifier (class 1: lesion); ``features`` is the Grad-CAM layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.features = nn.Identity()
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1, 1] = 1.0  # lesion unit: x - 1.5
            self.conv.weight[1, 0, 1, 1, 1] = -20.0  # air unit: -20 (x - 0.5)
            self.conv.bias.copy_(torch.tensor([-1.5, 10.0]))
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [WEIGHT, WEIGHT]]))
            self.head.bias.copy_(torch.tensor([0.0, -1.0]))  # the lesion's ~2 logits decide the class

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.conv(x)
        air = torch.sigmoid(pre[:, 1:])
        logits = self.head(self.features(torch.cat([torch.relu(pre[:, :1]), air], dim=1)).mean(dim=(2, 3, 4)))
        skip = torch.cat([torch.zeros_like(logits[:, :1]), WEIGHT * air.mean(dim=(1, 2, 3, 4))[:, None]], dim=1)
        return logits - skip


def _phantom() -> tuple[torch.Tensor, np.ndarray]:
    """A body (sphere, radius 10 mm, intensity 1 with texture) in air (0 with noise), a 2.5 mm lesion (2) inside it."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij")).astype(float)

    def radius(centre: tuple[int, int, int]) -> np.ndarray:
        return np.sqrt(np.sum((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2, axis=0))

    image = np.where(radius((16, 16, 16)) <= 10, 1.0, 0.0) + 0.03 * rng.standard_normal((SIZE,) * 3)
    lesion = radius((12, 16, 16)) <= 2.5
    image[lesion] = 2.0
    return torch.from_numpy(image).float()[None, None], lesion


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    network = LesionOrAir().eval()
    inputs, lesion = _phantom()
    case = ModelGridCase(network, inputs, (1.0, 1.0, 1.0), 1)
    maps = {name: method_explainer(name, network, seed=0, spacing=case.spacing, index=1, options=options)(network, inputs)
            for name, options in OPTIONS.items()}
    volumes = {name: Volume(m[0].sum(0).detach().numpy().astype(np.float64), np.eye(4)) for name, m in maps.items()}
    explanation = SimpleNamespace(case_id="phantom", heatmaps=volumes, failed={},
                                  model_maps={name: v.data.astype(np.float32) for name, v in volumes.items()})
    model = SimpleNamespace(classes=["normal", "lesion"], target_layer="features")
    settings = ScoreSettings(n_infidelity=8, sensitivity=False, sanity_steps=1, deletion_steps=8, block_mm=4.0)
    scored = score_explanation(model, explanation, case, mask=Volume(lesion.astype(np.uint8), np.eye(4)), seed=0,
                               settings=settings, method_options=OPTIONS)
    return {row["method"]: row for row in scored}


def test_gradcam_points_outside_the_body_and_is_do_not_use(rows) -> None:
    gradcam = rows["gradcam"]
    assert not gradcam["pointing_game"] and gradcam["auroc"] < 0.5  # the crafted failure really happened
    assert gradcam["outside_body"] > 1
    # its randomised model's map is flat: once counted as a pass (Spearman 0), now inconclusive
    assert gradcam["sanity_spearman"] == 0.0 and gradcam["sanity_status"] == "inconclusive"
    assert gradcam["sanity_pass"] is None
    assert gradcam["verdict"] == "do-not-use"
    assert "Do not use" in gradcam["verdict_reason"]


def test_smoothgrad_points_into_the_lesion_and_is_trusted(rows) -> None:
    smoothgrad = rows["smoothgrad"]
    assert smoothgrad["pointing_game"] and smoothgrad["auroc"] > 0.9
    assert smoothgrad["verdict"] == "trusted", smoothgrad["verdict_reason"]
    assert "reference lesion" in smoothgrad["verdict_reason"]
