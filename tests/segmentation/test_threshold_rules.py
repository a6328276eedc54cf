"""Threshold rules on hand-made heatmaps whose answers are known without the code under test."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from medxai.errors import ConfigError
from medxai.segmentation.threshold import ThresholdRule, binarize, parse_threshold, threshold_level


def _plateau_map(levels_counts: list[tuple[float, int]], *, scale: float, negatives: int) -> np.ndarray:
    values = np.concatenate([np.full(n, v * scale) for v, n in levels_counts] + [np.full(negatives, -3.0 * scale)])
    values = np.random.default_rng(0).permutation(values)
    return values.reshape(20, 15, -1)


def _brute_force_top_split(levels_counts: list[tuple[float, int]]) -> tuple[float, float]:
    """Exhaustive three-class Otsu over the distinct levels: the (lower, upper) levels around the top split."""
    values = np.array([v for v, _ in levels_counts])
    counts = np.array([n for _, n in levels_counts], dtype=float)
    mean = (values * counts).sum() / counts.sum()
    best, split = -1.0, None
    for i, j in itertools.combinations(range(1, len(values)), 2):
        variance = 0.0
        for part in (slice(0, i), slice(i, j), slice(j, None)):
            weight = counts[part].sum()
            variance += weight * ((values[part] * counts[part]).sum() / weight - mean) ** 2
        if variance > best:
            best, split = variance, j
    return float(values[split - 1]), float(values[split])


def test_multiotsu_offset_zero_keeps_exactly_the_top_class_and_is_scale_free() -> None:
    # negatives count as zero (they join the 0.0 plateau), as in the paper
    levels = [(0.0, 2400), (0.12, 300), (0.35, 300), (1.0, 90)]
    negatives = 210
    below, above = _brute_force_top_split([(0.0, 2400 + negatives), *levels[1:]])
    for scale in (1.0, 250.0):
        heatmap = _plateau_map(levels, scale=scale, negatives=negatives)
        level = threshold_level(heatmap, ThresholdRule("multiotsu-offset", 0.0))
        assert below * scale <= level < above * scale
        mask = binarize(heatmap, level)
        assert mask.sum() == sum(n for v, n in levels if v >= above)


def test_multiotsu_offset_lowers_the_level_by_a_fraction_of_the_peak() -> None:
    levels = [(0.0, 2400), (0.12, 300), (0.35, 300), (1.0, 90)]
    heatmap = _plateau_map(levels, scale=8.0, negatives=210)
    top = threshold_level(heatmap, ThresholdRule("multiotsu-offset", 0.0)) / 8.0
    assert 0.35 <= top < 1.0
    # offset 0.5 from a top split in [0.35, 1.0) gives a level below 0.5 of the peak: 0.35 plateau joins iff top-0.5 < 0.35
    for offset in (0.2, 0.5, 0.9):
        level = threshold_level(heatmap, ThresholdRule("multiotsu-offset", offset))
        assert level == pytest.approx(max(0.0, top - offset) * 8.0)
        expected = sum(n for v, n in levels if v > 0 and v * 8.0 > level)
        assert binarize(heatmap, level).sum() == expected
    # an offset of 1.0 keeps every positive voxel and never the negative ones
    assert binarize(heatmap, threshold_level(heatmap, ThresholdRule("multiotsu-offset", 1.0))).sum() == 690


def test_percentile_fixed_and_otsu() -> None:
    heatmap = np.random.default_rng(1).permutation(np.arange(1, 1001, dtype=float)).reshape(10, 10, 10)
    level = threshold_level(heatmap, parse_threshold("percentile:90"))
    assert binarize(heatmap, level).sum() == 100  # values 901..1000
    level = threshold_level(heatmap, parse_threshold("fixed:0.25"))
    assert level == pytest.approx(250.0) and binarize(heatmap, level).sum() == 750
    two = np.zeros((10, 10, 10))
    two[2:5, 2:5, 2:5] = 7.0
    two[0, 0, 0] = -2.0
    assert binarize(two, threshold_level(two, parse_threshold("otsu"))).sum() == 27


def test_map_without_positive_voxels_gives_an_empty_mask() -> None:
    heatmap = -np.ones((8, 8, 8))
    for spec in ("multiotsu-offset:0.5", "otsu", "percentile:95", "fixed:0.1"):
        level = threshold_level(heatmap, parse_threshold(spec))
        assert level == float("inf") and not binarize(heatmap, level).any()


@pytest.mark.parametrize("spec", ["bogus", "otsu:3", "percentile", "percentile:0", "percentile:100", "fixed:1.0",
                                  "fixed:-0.1", "multiotsu-offset:abc", "multiotsu-offset:1.5"])
def test_bad_threshold_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_threshold(spec)


def test_parse_round_trip_and_default_offset() -> None:
    assert parse_threshold("multiotsu-offset") == ThresholdRule("multiotsu-offset", 0.5)
    assert str(parse_threshold("percentile:97.5")) == "percentile:97.5"
    assert str(parse_threshold("otsu")) == "otsu"
