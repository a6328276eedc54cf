"""score_case end to end on an oblique, anisotropic, flipped scan: a linear model that looks only at the
lesion must be scored as looking at the lesion after its map is mapped back to the scan's own grid."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medxai.io.nifti import write_nifti
from medxai.models.loaded import LoadedModel
from medxai.models.preprocessing import ChannelIntensity, PreprocessingConfig, Preprocessor
from medxai.volume import Volume


class _Template(nn.Module):
    """Logits = <x, w_k>: class 1's weights are a model-grid template, class 0's are zero."""

    def __init__(self, template: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([torch.zeros_like(template), template])[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, None] * self.weight[None]).flatten(2).sum(dim=2)


def _oblique_affine() -> np.ndarray:
    angle = math.radians(25)
    rotation = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.2, 0.9, 2.5])  # flipped first axis, anisotropic
    affine[:3, 3] = [30.0, -12.0, 44.0]
    return affine


@pytest.fixture
def case(tmp_path: Path):
    shape = (22, 26, 12)
    affine = _oblique_affine()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    centre = np.array([5, 18, 3]) @ affine[:3, :3].T + affine[:3, 3]  # off-centre, near a corner
    mask = (np.linalg.norm(world - centre, axis=-1) <= 5.0).astype(np.uint8)
    rng = np.random.default_rng(0)
    image = (rng.normal(0, 0.2, shape) + 2.0 * mask).astype(np.float32)
    scan, mask_path = tmp_path / "oblique.nii.gz", tmp_path / "oblique_mask.nii.gz"
    write_nifti(Volume(image, affine), scan)
    write_nifti(Volume(mask, affine), mask_path)
    preprocessor = Preprocessor(PreprocessingConfig(spatial_size=(16, 16, 16), intensity=(ChannelIntensity("none"),)))
    template = preprocessor.prepare([Volume(mask.astype(np.float32), affine)]).tensor.as_tensor()[0]
    network = _Template(template).eval()
    model = LoadedModel(network=network, arch="template", classes=["normal", "lesion"], task="classification",
                        preprocessor=Preprocessor(PreprocessingConfig(spatial_size=(16, 16, 16))), sha256="0" * 64,
                        path=tmp_path)
    return model, scan, mask_path


def test_a_model_that_looks_at_the_lesion_is_localised_there_on_the_native_grid(case):
    from medxai.metrics.model_grid import ScoreSettings
    from medxai.metrics.scoring import score_case

    model, scan, mask = case
    settings = ScoreSettings(sensitivity=False, n_infidelity=4, deletion_steps=4, sanity_steps=1, block_mm=4.0)
    (row,) = score_case(model, scan, methods=["saliency"], mask=mask, target="lesion", settings=settings)
    assert row["target"] == "lesion" and row["case_id"] == "oblique"
    assert row["pointing_game"] == 1.0
    assert row["mass_in_mask"] > 0.6  # the rest is trilinear blur across the lesion border
    assert row["auroc"] > 0.95
    assert row["com_distance_mm"] == 0.0 and row["com_to_centre_mm"] < 2.5
    assert row["shell_mass_0_2mm"] + row["shell_mass_2_4mm"] > row["shell_mass_8_10mm"]
    assert row["sanity_pass"] is True  # the template is replaced by random weights: a different map
    # deleting the most-attributed blocks first removes the evidence sooner than inserting them restores it
    assert row["deletion_auc"] < row["insertion_auc"]
