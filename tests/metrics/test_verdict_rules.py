"""Verdict rules (medxai.metrics.verdict) and the randomisation check's degenerate maps (medxai.metrics.sanity)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medxai.metrics.localisation import localisation_scores
from medxai.metrics.sanity import cascading_randomisation, degenerate
from medxai.metrics.verdict import decide, outside_body
from medxai.volume import Volume

GOOD = {"sanity_status": "pass", "sanity_pass": True, "infidelity": 0.2, "infidelity_random": 0.5,
        "deletion_auc": 0.2, "deletion_auc_random": 0.6, "outside_body": 0.1}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 2))


def _case() -> torch.Tensor:
    return torch.rand((1, 1, 8, 8, 8), generator=torch.Generator().manual_seed(1))


def test_a_constant_randomised_map_is_inconclusive_never_a_pass() -> None:
    net, case = _net(), _case()
    original = torch.rand((1, 1, 8, 8, 8), generator=torch.Generator().manual_seed(2))
    result = cascading_randomisation(net, case, lambda model: original if model is net else torch.zeros_like(case),
                                     seed=0, n_steps=1)
    assert result.final.spearman_abs == 0.0  # what the original test counted as a clear pass
    assert result.status == "inconclusive" and result.passed is None
    assert "randomised model's map is constant" in result.final.detail
    row = {**GOOD, "sanity_status": result.status, "sanity_pass": result.passed, "sanity_detail": result.final.detail}
    verdict = decide(row)
    assert verdict.label == "inconclusive"
    assert "could not be read" in verdict.reason


def test_a_randomised_map_numerically_zero_or_mostly_tied_is_degenerate() -> None:
    original = np.random.default_rng(0).random((8, 8, 8))
    assert degenerate(1e-9 * original, reference_peak=1.0) == "is numerically zero"
    tied = np.zeros((8, 8, 8))
    tied[0, 0, :3] = (1.0, 2.0, 3.0)
    assert "one value" in degenerate(tied, reference_peak=1.0)
    assert degenerate(original, reference_peak=1.0) is None


def test_a_sparse_original_map_is_not_degenerate_but_a_flat_one_fails() -> None:
    net, case = _net(), _case()
    sparse = torch.zeros_like(case)
    sparse[0, 0, 2:4, 2:4, 2:4] = torch.arange(1.0, 9.0).reshape(2, 2, 2)  # a lesion-only map: 1.6 % of the voxels
    randomised = torch.rand((1, 1, 8, 8, 8), generator=torch.Generator().manual_seed(3))
    result = cascading_randomisation(net, case, lambda model: sparse if model is net else randomised, seed=0, n_steps=1)
    assert result.status in ("pass", "fail") and result.final.detail == ""
    flat = cascading_randomisation(net, case, lambda model: torch.ones_like(case) if model is net else randomised,
                                   seed=0, n_steps=1)
    assert flat.status == "fail" and flat.final.detail == "the map itself is constant"
    assert decide({**GOOD, "sanity_status": "fail", "sanity_detail": flat.final.detail}).label == "do-not-use"


def _localised(peak: tuple[int, int, int]) -> dict[str, float]:
    """Localisation scores of a map peaking at ``peak`` against a 3 mm cube lesion near one corner (2 mm voxels)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros((20, 20, 20), dtype=np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    grid = np.stack(np.meshgrid(*[np.arange(20)] * 3, indexing="ij"))
    heat = np.exp(-np.sum((grid - np.reshape(peak, (3, 1, 1, 1))) ** 2, axis=0) / 8.0)
    return localisation_scores(Volume(heat, affine), Volume(mask, affine))


def test_a_map_far_from_the_reference_mask_is_never_trusted() -> None:
    near, far = _localised((3, 3, 3)), _localised((16, 16, 16))
    assert decide({**GOOD, **near}).label == "trusted"
    assert far["peak_distance_mm"] > 20
    verdict = decide({**GOOD, **far})
    assert verdict.label == "do-not-use"
    assert "mm from the reference lesion" in verdict.reason
    # near in mm but not separating lesion from background: never trusted either
    assert decide({**GOOD, **near, "auroc": 0.55}).label == "do-not-use"
    # without the mask the same map would be trusted: the mask's evidence is what demotes it
    assert decide({**GOOD, **far}, use_localisation=False).label == "trusted"


def test_a_map_no_more_faithful_than_a_random_one_is_caution() -> None:
    assert decide({**GOOD, "deletion_auc": 0.6}).label == "caution"  # deletion no faster than a shuffled map's
    without_deletion = {**GOOD, "deletion_auc": "", "deletion_auc_random": ""}
    assert decide(without_deletion).label == "trusted"
    assert decide({**without_deletion, "infidelity": 0.5}).label == "caution"  # then infidelity decides
    assert decide({**without_deletion, "infidelity_random": None}).label == "caution"  # nothing compared
    assert decide({**GOOD, "sanity_status": "", "sanity_pass": ""}).label == "caution"  # check not run


def test_a_map_denser_outside_the_body_is_do_not_use_and_read_from_csv_text() -> None:
    row = {key: str(value) for key, value in GOOD.items()}
    assert decide(row).label == "trusted"
    assert decide({**row, "outside_body": "0.9"}).label == "trusted"
    verdict = decide({**row, "outside_body": "inf"})
    assert verdict.label == "do-not-use" and "all of its weight lies outside the body" in verdict.reason
    assert "1.5 times denser outside the body" in decide({**row, "outside_body": "1.5"}).reason
    assert decide({"error": "out of memory"}).label == "inconclusive"


def test_outside_body_measures_how_much_denser_the_map_is_in_the_air() -> None:
    inputs = torch.zeros((1, 1, 12, 12, 12))
    inputs[0, 0, 3:9, 3:9, 3:9] = 1.0  # the body: a 6^3 cube
    inside = torch.zeros_like(inputs)
    inside[0, 0, 5, 5, 5] = 1.0
    air = torch.zeros_like(inputs)
    air[0, 0, 0, 0, 0] = 1.0
    assert outside_body(inside, inputs) == 0.0
    assert outside_body(air, inputs) == float("inf")
    assert outside_body(torch.ones_like(inputs), inputs) == pytest.approx(1.0)  # as dense in the air as in the body
    both = inside + air  # one voxel of weight in 216 body voxels, one in 1512 air voxels
    assert outside_body(both, inputs) == pytest.approx(216 / 1512)
