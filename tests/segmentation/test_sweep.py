"""The threshold sweep: candidates whose masks coincide are named and dropped; body quantiles; the choice kept
with the model (threshold.json) and used by default."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medxai.errors import ConfigError, InvalidInputError
from medxai.segmentation.heatmaps import ClassMap
from medxai.segmentation.postprocess import cut_mask
from medxai.segmentation.segment import AUTO, DEFAULT_RULE, SegmentSettings, resolve_settings
from medxai.segmentation.sweep import (
    THRESHOLD_FILE, check_threshold_destination, read_saved_threshold, saved_threshold_record, sweep_thresholds,
)
from medxai.segmentation.threshold import PAPER_SWEEP, ThresholdRule, parse_threshold
from medxai.volume import Volume

# An oblique, anisotropic, flipped grid: the rules must not care about geometry.
OBLIQUE = np.array([[0.0, -1.5, 0.2, 10.0], [2.0, 0.0, 0.0, -4.0], [0.0, 0.3, -1.0, 7.0], [0.0, 0.0, 0.0, 1.0]])


def _class_map(values: np.ndarray) -> ClassMap:
    heatmap = Volume(values.astype(np.float32), OBLIQUE)
    return ClassMap(model_map=values, heatmap=heatmap, predicted="lesion", probabilities={"lesion": 0.9, "normal": 0.1},
                    target="lesion", method="own")


def _low_top_map(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A map whose top multi-Otsu threshold lies below 0.4 of its peak: a large 0.3 plateau over a weak 0.1 one
    and a few peak voxels (Otsu's three classes split 0 | 0.1 | 0.3 + peak or 0 | 0.1 + 0.3 | peak, both below
    0.4), so every paper offset (0.4..1.0) cuts at 0: map > 0. The reference is the 0.3 plateau + peak."""
    values = np.zeros((16, 16, 16))
    values[2:12, 2:12, 2:8] = 0.1
    values[4:10, 4:10, 3:7] = 0.3
    values[6:8, 6:8, 4:6] = 1.0
    values[0, 0, 0] = -0.5  # negative evidence counts as zero
    truth = values >= 0.3
    shift = np.random.default_rng(seed).integers(0, 4)
    return np.roll(values, shift, axis=0), np.roll(truth, shift, axis=0)


def _pairs(count: int = 3) -> list[tuple[ClassMap, Volume]]:
    pairs = []
    for seed in range(count):
        values, truth = _low_top_map(seed)
        pairs.append((_class_map(values), Volume(truth.astype(np.uint8), OBLIQUE)))
    return pairs


def test_offsets_that_all_give_map_above_zero_are_reported_degenerate_and_dropped() -> None:
    candidates = (*PAPER_SWEEP, parse_threshold("multiotsu:3"), parse_threshold("fixed:0.2"))
    record = sweep_thresholds(_pairs(), candidates, keep_largest=False, fill=False)
    kept = [row["threshold"] for row in record["candidates"]]
    assert kept == ["multiotsu-offset:0.4", "multiotsu:3", "fixed:0.2"]  # the six later offsets duplicate the first
    assert [d["threshold"] for d in record["duplicates"]] == [str(rule) for rule in PAPER_SWEEP[1:]]
    assert {d["same_masks_as"] for d in record["duplicates"]} == {"multiotsu-offset:0.4"}
    assert record["n_candidates"] == 9 and record["n_distinct"] == 3
    assert record["degenerate"] == ["multiotsu-offset 0.4..1 all give map > 0 on the 3 case(s): degenerate, "
                                    "kept multiotsu-offset:0.4 only"]
    # a fifth of the peak cuts exactly the 0.3 plateau + peak: the reference (Dice 1); three classes keep the peak only
    assert record["chosen"] == "fixed:0.2" and record["candidates"][2]["median_dice"] == pytest.approx(1.0)
    assert record["candidates"][1]["median_dice"] == pytest.approx(2 * 8 / (8 + 144))


def test_a_sweep_of_one_mask_says_it_chose_nothing() -> None:
    record = sweep_thresholds(_pairs(2), PAPER_SWEEP, keep_largest=False, fill=False)
    assert record["n_distinct"] == 1 and record["chosen"] == "multiotsu-offset:0.4"
    assert any("the sweep chose nothing" in note for note in record["degenerate"])


def test_distinct_candidates_are_not_reported() -> None:
    rules = tuple(parse_threshold(spec) for spec in ("fixed:0.05", "fixed:0.2", "fixed:0.5"))
    record = sweep_thresholds(_pairs(2), rules, keep_largest=False, fill=False)
    assert record["n_distinct"] == 3 and record["duplicates"] == [] and record["degenerate"] == []


def _body_phantom() -> tuple[Volume, np.ndarray, int]:
    """A bright ball (the body) in air on an oblique grid, and a map positive everywhere (like Grad-CAM's):
    distinct values inside the body, a lower positive level outside it."""
    grid = np.stack(np.meshgrid(*[np.arange(24)] * 3, indexing="ij"))
    body = np.sum((grid - 11.5) ** 2, axis=0) <= 9.0**2
    image = Volume(np.where(body, 100.0, 0.0).astype(np.float32), OBLIQUE)
    values = np.full(body.shape, 0.01)
    count = int(body.sum())
    values[body] = np.random.default_rng(3).permutation(np.arange(1, count + 1)) / count
    return image, values, count


@pytest.mark.parametrize("quantile", [0.9, 0.95])
def test_body_quantile_keeps_the_top_share_of_the_body(quantile: float) -> None:
    image, values, body_voxels = _body_phantom()
    mask, level = cut_mask(_class_map(values), rule=parse_threshold(f"body-quantile:{quantile}"), keep_largest=False,
                           fill=False, image=image)
    kept = int(np.count_nonzero(mask.data))
    assert abs(kept - (1 - quantile) * body_voxels) <= 1
    assert np.allclose(mask.affine, OBLIQUE) and mask.shape == image.shape
    assert mask.metadata["threshold_computed_on"].startswith("native-grid map inside the body")
    # percentile over the whole grid (mostly air) would keep far more: the body is what makes the rule bounded
    whole, _ = cut_mask(_class_map(values), rule=parse_threshold(f"percentile:{100 * quantile:g}"), keep_largest=False,
                        fill=False)
    assert np.count_nonzero(whole.data) > 2 * kept


def test_body_quantile_needs_the_scan() -> None:
    _, values, _ = _body_phantom()
    with pytest.raises(ConfigError, match="needs the scan"):
        cut_mask(_class_map(values), rule=parse_threshold("body-quantile:0.9"), keep_largest=False, fill=False)


def test_multiotsu_class_counts_give_distinct_rising_cuts() -> None:
    values = np.concatenate([np.full(n, v) for v, n in ((0.0, 3000), (0.2, 600), (0.45, 300), (0.7, 150), (1.0, 46))])
    values = np.random.default_rng(0).permutation(values).reshape(16, 16, 16)
    sizes = [int(np.count_nonzero(cut_mask(_class_map(values), rule=parse_threshold(f"multiotsu:{k}"), keep_largest=False,
                                           fill=False)[0].data)) for k in (2, 3, 4, 5)]
    assert sizes == sorted(sizes, reverse=True)  # more classes: a higher top threshold
    assert sizes[2:] == [150 + 46, 46]  # four classes: the two top plateaus; five: the peak plateau alone
    assert sizes[0] >= 300 + 150 + 46
    for bad in ("multiotsu:1", "multiotsu:6", "multiotsu:2.5", "body-quantile:1", "body-quantile:0"):
        with pytest.raises(ConfigError):
            parse_threshold(bad)


def _model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "medxai-model.json").write_text("{}")
    return folder


def test_the_saved_threshold_is_used_by_default_with_its_refinement(tmp_path: Path) -> None:
    folder = _model_dir(tmp_path)
    sweep = sweep_thresholds(_pairs(), (*PAPER_SWEEP, parse_threshold("fixed:0.2")), keep_largest=False, fill=False)
    record = saved_threshold_record(None, method="own", rule=sweep["chosen"], refine=None, sweep=sweep,
                                    weights_sha256="a" * 64)
    check_threshold_destination(folder).write_text(json.dumps(record))
    saved = read_saved_threshold(folder, weights_sha256="a" * 64)
    settings, rule, source = resolve_settings(SegmentSettings(rule=None, refine=AUTO), saved)
    assert (str(rule), source, settings.refine) == ("fixed:0.2", "model threshold.json", None)
    # another method has no saved choice: the paper's default, and refinement only for the model's own map
    _, rule, source = resolve_settings(SegmentSettings(rule=None, method="gradcam", refine=AUTO), saved)
    assert (rule, source) == (DEFAULT_RULE, "default")
    # an explicit --threshold wins; refinement then defaults by method
    settings, rule, source = resolve_settings(SegmentSettings(rule=ThresholdRule("otsu"), refine=AUTO), saved)
    assert (str(rule), source, settings.refine) == ("otsu", "option", "otsu")
    with pytest.raises(InvalidInputError, match="other weights"):
        read_saved_threshold(folder, weights_sha256="b" * 64)


def test_a_broken_threshold_record_names_its_file(tmp_path: Path) -> None:
    folder = _model_dir(tmp_path)
    (folder / THRESHOLD_FILE).write_text(json.dumps({"format": "medxai-threshold/1", "weights_sha256": "a" * 64,
                                                     "methods": {"own": {"rule": "bogus:1", "refine": None}}}))
    with pytest.raises(InvalidInputError, match="unknown threshold") as error:
        read_saved_threshold(folder, weights_sha256="a" * 64)
    assert str(error.value.path) == str(folder / THRESHOLD_FILE)
    with pytest.raises(ConfigError, match="medxai model directory"):
        check_threshold_destination(tmp_path / "elsewhere")
