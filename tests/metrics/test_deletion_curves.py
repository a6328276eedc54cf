"""Deletion/insertion curves: analytic curves on a linear model with one informative block, batching."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from medxai.errors import ConfigError
from medxai.metrics.deletion import block_ranks, deletion_curve, target_probability

SPACING = (1.0, 2.0, 4.0)  # 8 mm blocks -> (8, 4, 2) voxels: an 8x8x8 grid holds 1 x 2 x 4 = 8 blocks


class _OneBlockModel(nn.Module):
    """Two logits: 0 and 0.5 x the sum of voxels in block (i 0..7, j 4..7, k 2..3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = 0.5 * x[:, :, :, 4:8, 2:4].sum(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


def _case():
    x = torch.ones((1, 1, 8, 8, 8))
    attribution = torch.zeros_like(x)
    attribution[:, :, :, 4:8, 2:4] = 1.0
    return x, attribution


def test_block_ranks_follow_the_attribution_in_mm_blocks():
    _, attribution = _case()
    ranks = block_ranks(attribution[0], spacing=SPACING, block_mm=8.0)
    assert ranks.shape == (8, 8, 8)
    assert torch.all(ranks[:, 4:8, 2:4] == 0)
    assert set(ranks.unique().tolist()) == set(range(8))
    assert int((ranks == 5).sum()) == 64  # every block holds 8 x 4 x 2 voxels


def test_deletion_of_the_informative_block_first_gives_the_analytic_curve():
    x, attribution = _case()
    model = _OneBlockModel()
    start = 1.0 / (1.0 + math.exp(-0.5 * 64))  # softmax of (0, 32)
    curve = deletion_curve(model, x, attribution, target=1, spacing=SPACING, n_steps=8)
    np.testing.assert_allclose(curve.fractions, np.arange(9) / 8)
    np.testing.assert_allclose(curve.scores, [start] + [0.5] * 8, rtol=1e-6)
    assert curve.auc == pytest.approx((start + 0.5) / 2 / 8 + 0.5 * 7 / 8, rel=1e-6)
    insertion = deletion_curve(model, x, attribution, target=1, spacing=SPACING, n_steps=8, mode="insertion")
    np.testing.assert_allclose(insertion.scores, [0.5] + [start] * 8, rtol=1e-6)
    assert insertion.auc == pytest.approx((start + 0.5) / 2 / 8 + start * 7 / 8, rel=1e-6)


def test_a_misplaced_attribution_deletes_slower_and_inserts_later():
    x, attribution = _case()
    model = _OneBlockModel()
    wrong = 1.0 - attribution  # the informative block ranked last
    good = deletion_curve(model, x, attribution, target=1, spacing=SPACING, n_steps=8)
    bad = deletion_curve(model, x, wrong, target=1, spacing=SPACING, n_steps=8)
    assert good.auc < bad.auc
    good_in = deletion_curve(model, x, attribution, target=1, spacing=SPACING, n_steps=8, mode="insertion")
    bad_in = deletion_curve(model, x, wrong, target=1, spacing=SPACING, n_steps=8, mode="insertion")
    assert good_in.auc > bad_in.auc
    assert 0.0 <= bad.auc <= 1.0 and 0.0 <= good_in.auc <= 1.0


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_batched_curve_equals_unbatched(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(2, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, 4)).eval()
    x = torch.randn((1, 2, 12, 10, 9))
    attribution = torch.randn((1, 1, 12, 10, 9))
    whole = deletion_curve(model, x, attribution, target=2, spacing=(1.5, 1.0, 3.0), block_mm=3.0, n_steps=10, mode=mode)
    for limit in (1, 3, 4):
        part = deletion_curve(
            model, x, attribution, target=2, spacing=(1.5, 1.0, 3.0), block_mm=3.0, n_steps=10, mode=mode,
            max_examples_per_batch=limit,
        )
        np.testing.assert_allclose(part.scores, whole.scores, rtol=1e-5)
    assert len(whole.scores) == 11


def test_single_logit_outputs_use_the_sigmoid():
    logits = torch.tensor([[0.0], [2.0]])
    torch.testing.assert_close(target_probability(logits, 1), torch.sigmoid(torch.tensor([0.0, 2.0])))
    torch.testing.assert_close(target_probability(logits, 0), 1 - torch.sigmoid(torch.tensor([0.0, 2.0])))


def test_bad_options_are_refused():
    x, attribution = _case()
    with pytest.raises(ConfigError):
        deletion_curve(_OneBlockModel(), x, attribution, target=1, spacing=SPACING, mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        deletion_curve(_OneBlockModel(), x, attribution, target=1, spacing=SPACING, block_mm=0.0)
