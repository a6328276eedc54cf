"""Paired, seed-then-case bootstrap of per-method means and ranks (Efron & Tibshirani 1993; percentile CIs).

The benchmark scores every method on the same held-out cases of several independently trained models
(seeds). One bootstrap replicate draws seeds with replacement, then cases with replacement within each
drawn seed, and takes every method's mean over the same drawn cases (paired), so the intervals carry both
the model-to-model and the case-to-case variability, and method ranks can be compared replicate by replicate.
Written by hand: SciPy's ``bootstrap`` resamples one level only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from medxai.errors import ConfigError


@dataclass(frozen=True)
class MethodSummary:
    """Mean of one metric for one method with its 95 % interval, and the interval of its rank (1 = best)."""

    method: str
    n: int
    mean: float
    low: float
    high: float
    rank: int
    rank_low: float
    rank_high: float


def _means(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-method nan-mean over the given row indices (NaN for a method without any value)."""
    chosen = values[rows]
    counts = np.sum(~np.isnan(chosen), axis=0)
    sums = np.nansum(chosen, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _ranks(means: np.ndarray, *, higher_is_better: bool) -> np.ndarray:
    """Ranks 1..M (ties share the average rank); a NaN mean ranks last."""
    key = np.where(np.isnan(means), -np.inf, means if higher_is_better else -means)
    return stats.rankdata(-key, method="average")


def bootstrap_summary(
    values: np.ndarray,
    groups: Sequence[int],
    methods: Sequence[str],
    *,
    higher_is_better: bool,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[MethodSummary]:
    """Summaries of ``values`` (cases x methods, NaN where a score is undefined), with ``groups`` giving each
    case's seed. Returned best first."""
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    if values.ndim != 2 or values.shape[1] != len(methods) or values.shape[0] != len(groups):
        raise ConfigError(f"values {values.shape} do not match {len(groups)} cases x {len(methods)} methods")
    if values.shape[0] == 0:
        raise ConfigError("no cases to summarise")
    if n_boot < 1 or not 0 < level < 1:
        raise ConfigError(f"bootstrap needs n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(seed)
    boot_means = np.empty((n_boot, len(methods)))
    boot_ranks = np.empty((n_boot, len(methods)))
    for b in range(n_boot):
        drawn = [members[i] for i in rng.integers(0, len(members), size=len(members))]
        rows = np.concatenate([cases[rng.integers(0, len(cases), size=len(cases))] for cases in drawn])
        boot_means[b] = _means(values, rows)
        boot_ranks[b] = _ranks(boot_means[b], higher_is_better=higher_is_better)
    tail = 100 * (1 - level) / 2
    means = _means(values, np.arange(values.shape[0]))
    ranks = _ranks(means, higher_is_better=higher_is_better)
    order = np.argsort(ranks, kind="stable")
    summaries = []
    for position, m in enumerate(order, start=1):
        finite = boot_means[:, m][~np.isnan(boot_means[:, m])]
        low, high = (np.percentile(finite, [tail, 100 - tail]) if finite.size else (math.nan, math.nan))
        rank_low, rank_high = np.percentile(boot_ranks[:, m], [tail, 100 - tail])
        summaries.append(MethodSummary(
            method=methods[m], n=int(np.sum(~np.isnan(values[:, m]))), mean=float(means[m]), low=float(low),
            high=float(high), rank=position, rank_low=float(rank_low), rank_high=float(rank_high),
        ))
    return summaries
