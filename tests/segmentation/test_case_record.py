"""``segmentation.json``: an empty mask always says why."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from medxai.segmentation.heatmaps import ClassMap
from medxai.segmentation.reporting import case_record
from medxai.segmentation.segment import SegmentSettings, cut_mask
from medxai.segmentation.threshold import parse_threshold
from medxai.volume import Volume


def _record(model_map: np.ndarray, empty_reason: str | None = None) -> dict:
    heatmap = Volume(model_map.astype(np.float32), np.eye(4))
    mapped = ClassMap(model_map=model_map, heatmap=heatmap, predicted="lesion", probabilities={"lesion": 0.6, "normal": 0.4},
                      target="lesion", method="own", empty_reason=empty_reason)
    rule = parse_threshold("percentile:90")
    mask, level = cut_mask(mapped, rule=rule, keep_largest=False, fill=False)
    model = SimpleNamespace(arch="gp-unet", task="weakseg", classes=("lesion", "normal"), sha256="0" * 64)
    return case_record("c1", model, mapped, mask, rule=rule, level=level, chosen_by="option", settings=SegmentSettings(),
                       scores=None, voxel_ml=0.001)


def test_a_map_without_positive_values_gives_an_empty_mask_with_its_reason() -> None:
    record = _record(-np.linspace(0.1, 1.0, 8 * 8 * 8).reshape(8, 8, 8))
    assert record["mask"]["voxels"] == 0 and record["threshold"]["level"] is None
    assert record["empty_reason"] == "the class map has no positive value"


def test_a_positive_map_has_a_level_and_no_empty_reason() -> None:
    values = np.linspace(-1.0, 1.0, 8 * 8 * 8).reshape(8, 8, 8)
    record = _record(values)
    assert record["empty_reason"] is None and math.isfinite(record["threshold"]["level"])
    assert record["mask"]["voxels"] > 0
    forced = _record(values, empty_reason="predicted class is the negative class 'normal'")
    assert forced["empty_reason"].startswith("predicted class") and forced["mask"]["voxels"] == 0


def _blob(size: int = 16) -> np.ndarray:
    """A positive map peaking on a small blob (a lesion-like map)."""
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"))
    return np.exp(-np.sum((grid - 5.0) ** 2, axis=0) / 4.0) - 0.01


def test_a_lesion_sized_mask_is_ok_and_says_so() -> None:
    record = _record(_blob())
    assert record["status"] == "ok" and record["reason"] is None
    assert 0 < record["mask"]["voxels"] <= 0.1 * 16**3


def test_a_map_without_positive_values_is_a_failed_segmentation() -> None:
    record = _record(-np.linspace(0.1, 1.0, 8 * 8 * 8).reshape(8, 8, 8))
    assert record["status"] == "failed" and "no positive value" in record["reason"]
    flat = _record(np.zeros((8, 8, 8)))
    assert flat["status"] == "failed" and "flat" in flat["reason"]


def test_a_negative_prediction_empty_mask_is_not_a_failure() -> None:
    record = _record(_blob(), empty_reason="predicted class is the negative class 'normal'")
    assert record["status"] == "ok" and record["mask"]["voxels"] == 0


def test_a_threshold_at_the_maps_minimum_or_a_mask_over_most_of_the_volume_failed() -> None:
    everywhere = _blob() + np.linspace(1.0, 2.0, 16**3).reshape(16, 16, 16)  # positive everywhere, distinct values
    heatmap = Volume(everywhere.astype(np.float32), np.eye(4))
    mapped = ClassMap(model_map=everywhere, heatmap=heatmap, predicted="lesion", probabilities={"lesion": 0.6},
                      target="lesion", method="own")
    model = SimpleNamespace(arch="gp-unet", task="weakseg", classes=("lesion", "normal"), sha256="0" * 64)
    for spec, words in (("fixed:0", "minimum"), ("percentile:20", "80% of the scanned volume")):
        rule = parse_threshold(spec)
        mask, level = cut_mask(mapped, rule=rule, keep_largest=False, fill=False)
        record = case_record("c1", model, mapped, mask, rule=rule, level=level, chosen_by="option",
                             settings=SegmentSettings(), scores=None, voxel_ml=0.001)
        assert record["status"] == "failed" and words in record["reason"], record["reason"]
