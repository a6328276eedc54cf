"""Paired seed-then-case bootstrap: hand-checkable means, intervals and rank intervals."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medxai.errors import ConfigError
from medxai.validation.stats import bootstrap_summary


def test_a_uniformly_better_method_ranks_first_with_a_certain_rank():
    values = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.95, 0.05]])
    summaries = bootstrap_summary(values, [0, 0, 1, 1], ["good", "bad"], higher_is_better=True, n_boot=500)
    good, bad = summaries
    assert (good.method, good.rank, bad.rank) == ("good", 1, 2)
    assert good.mean == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.95]))
    assert (good.rank_low, good.rank_high) == (1.0, 1.0)
    assert good.low <= good.mean <= good.high and 0.7 <= good.low and good.high <= 0.95
    assert good.n == bad.n == 4


def test_lower_is_better_reverses_the_order():
    values = np.array([[1.0, 5.0], [2.0, 6.0]])
    summaries = bootstrap_summary(values, [0, 0], ["near", "far"], higher_is_better=False, n_boot=100)
    assert [s.method for s in summaries] == ["near", "far"]


def test_constant_scores_have_a_zero_width_interval():
    values = np.full((6, 1), 0.25)
    (summary,) = bootstrap_summary(values, [0, 0, 1, 1, 2, 2], ["m"], higher_is_better=True, n_boot=200)
    assert (summary.mean, summary.low, summary.high) == (0.25, 0.25, 0.25)


def test_seeds_are_resampled_so_model_to_model_spread_widens_the_interval():
    # every case of seed 0 scores 0 and every case of seed 1 scores 1: a replicate draws both seeds 0
    # (p = 1/4), both 1 (p = 1/4) or one of each (mean 0.5), so the 95 % interval spans [0, 1]
    values = np.array([[0.0], [0.0], [0.0], [1.0], [1.0], [1.0]])
    (summary,) = bootstrap_summary(values, [0, 0, 0, 1, 1, 1], ["m"], higher_is_better=True, n_boot=2000, seed=1)
    assert summary.mean == 0.5
    assert (summary.low, summary.high) == (0.0, 1.0)


def test_undefined_scores_are_skipped_and_an_all_nan_method_ranks_last():
    values = np.array([[0.5, np.nan, 0.2], [np.nan, np.nan, 0.4]])
    summaries = bootstrap_summary(values, [0, 0], ["a", "never", "b"], higher_is_better=True, n_boot=100)
    assert [s.method for s in summaries] == ["a", "b", "never"]
    assert summaries[0].n == 1 and summaries[0].mean == 0.5
    assert math.isnan(summaries[2].mean) and math.isnan(summaries[2].low)


def test_shape_mismatch_is_refused():
    with pytest.raises(ConfigError):
        bootstrap_summary(np.zeros((3, 2)), [0, 0], ["a", "b"], higher_is_better=True)
