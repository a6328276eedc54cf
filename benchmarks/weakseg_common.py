"""Shared steps of the weakly-supervised segmentation benchmarks: class maps once, threshold sweep on
validation cases, scores on held-out cases, records in the benchmarks/results JSON format."""
from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medxai.errors import ConfigError
from medxai.io.readers import read_mask, read_volume
from medxai.models.loaded import LoadedModel
from medxai.segmentation.heatmaps import ClassMap, class_map
from medxai.segmentation.overlap import overlap_scores
from medxai.segmentation.segment import SegmentInput, cut_mask, sweep_thresholds
from medxai.segmentation.threshold import ThresholdRule, parse_threshold
from medxai.volume import Volume

# The paper's offsets (0.4-1.0) extended down to 0, fractions of the peak and percentile rules.
SWEEP = (tuple(parse_threshold(f"multiotsu-offset:{o / 10:g}") for o in range(0, 11))
         + tuple(parse_threshold(f"fixed:{t / 10:g}") for t in range(1, 10))
         + tuple(parse_threshold(f"percentile:{p:g}") for p in (90, 95, 97.5, 99, 99.5, 99.7, 99.8, 99.9)))
PAPER_DEFAULT = parse_threshold("multiotsu-offset:0.5")
REFINER = "otsu"  # medxai segment --refine otsu: the margin re-drawn from the image around the map's peak


@dataclass
class Mapped:
    case: SegmentInput
    map: ClassMap
    truth: Volume | None
    seconds: float
    image: Volume | None = None


def class_maps(model: LoadedModel, cases: Sequence[SegmentInput], *, method: str, target: str,
               negative_class: str) -> list[Mapped]:
    """The class map of every case (timed), with its reference mask when the case has one."""
    result = []
    for case in cases:
        channels = [read_volume(p) for p in case.images]
        started = time.perf_counter()
        mapped = class_map(model, channels, method=method, target=target, negative_class=negative_class, seed=0)
        seconds = time.perf_counter() - started
        truth = read_mask(case.mask, channels[0]) if case.mask else None
        result.append(Mapped(case, mapped, truth, seconds, channels[0]))
    return result


def predictions(model: LoadedModel, cases: Sequence[SegmentInput]) -> list[dict[str, Any]]:
    """Label and predicted probabilities of every case (one forward pass each)."""
    import torch

    rows = []
    for case in cases:
        prepared = model.preprocessor.prepare([read_volume(p) for p in case.images])
        with torch.no_grad():
            logits = model.network.eval()(prepared.tensor.as_tensor()[None].to(model.device, torch.float32))
        probabilities = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
        rows.append({"case_id": case.case_id, "label": case.label,
                     "predicted": model.classes[int(np.argmax(probabilities))],
                     **{f"p_{c}": float(p) for c, p in zip(model.classes, probabilities)}})
    return rows


def classification(rows: Sequence[dict[str, Any]], positive: str) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    truth = [r["label"] == positive for r in rows]
    scores = [r[f"p_{positive}"] for r in rows]
    tp = sum(t and r["predicted"] == positive for t, r in zip(truth, rows))
    fp = sum((not t) and r["predicted"] == positive for t, r in zip(truth, rows))
    fn = sum(t and r["predicted"] != positive for t, r in zip(truth, rows))
    return {"n": len(rows), "auc": float(roc_auc_score(truth, scores)) if 0 < sum(truth) < len(truth) else None,
            "accuracy": float(np.mean([r["predicted"] == r["label"] for r in rows])),
            "f1_positive": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None}


def scores_for(items: Sequence[Mapped], rule: ThresholdRule, *, keep_largest: bool,
               refine: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        if item.truth is None:
            continue
        mask, level = cut_mask(item.map, rule=rule, keep_largest=keep_largest, fill=False, refine=refine, image=item.image)
        rows.append({"case_id": item.case.case_id, "predicted": item.map.predicted, **overlap_scores(mask, item.truth)})
    return rows


def median_ci95(values: Sequence[float], *, seed: int = 0) -> list[float] | None:
    """Percentile-bootstrap 95 % interval of the median (scipy.stats.bootstrap, 2000 resamples)."""
    from scipy.stats import bootstrap

    if len(values) < 2:
        return None
    result = bootstrap((np.asarray(values, dtype=float),), np.median, n_resamples=2000, method="percentile",
                       random_state=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    dices = [r["dice"] for r in rows]
    hd = [r["hd95_mm"] for r in rows if np.isfinite(r["hd95_mm"])]
    return {
        "n_cases": len(rows), "median_dice": float(np.median(dices)), "median_dice_ci95": median_ci95(dices),
        "cases_dice_at_least_0.75": sum(d >= 0.75 for d in dices), "mean_dice": float(np.mean(dices)),
        "q1_dice": float(np.percentile(dices, 25)), "q3_dice": float(np.percentile(dices, 75)),
        "median_iou": float(np.median([r["iou"] for r in rows])),
        "median_hd95_mm": float(np.median(hd)) if hd else None,
        "per_case": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }


def evaluate(val: Sequence[Mapped], test: Sequence[Mapped], *, label: str) -> list[dict[str, Any]]:
    """Paper default on test; threshold chosen on validation by median Dice (without and with LCC, then with
    the image refinement) and applied unchanged to test."""
    entries = [{"variant": f"{label} multiotsu-offset:0.5 (paper default, no selection)", "threshold": str(PAPER_DEFAULT),
                "largest_component": False, "refine": None, "chosen_by": "default",
                **summary(scores_for(test, PAPER_DEFAULT, keep_largest=False))}]
    scored = [m for m in val if m.truth is not None]
    pairs = [(m.map, m.truth) for m in scored]
    for lcc, refine in ((False, None), (True, None), (False, REFINER)):
        name = f"{label} swept on validation" + (" + LCC" if lcc else "") + (f" + refine {refine}" if refine else "")
        try:
            swept = sweep_thresholds(pairs, SWEEP, keep_largest=lcc, fill=False, refine=refine,
                                     images=[m.image for m in scored] if refine else None)
        except ConfigError as error:  # every validation case predicted negative: nothing to choose from
            entries.append({"variant": name, "threshold": None, "chosen_by": f"none: {error}", "n_cases": 0})
            continue
        rule = parse_threshold(swept["chosen"])
        entries.append({"variant": name, "threshold": str(rule), "largest_component": lcc, "refine": refine,
                        "chosen_by": "validation sweep (median Dice)", "validation_sweep": swept["candidates"],
                        "validation_cases": swept["n_cases"], **summary(scores_for(test, rule, keep_largest=lcc, refine=refine))})
    return entries


def machine() -> dict[str, Any]:
    import torch

    return {"device": "cpu", "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "machine": platform.machine()}


def record(name: str, method: str, size: str, seconds: Sequence[float], **extra: Any) -> dict[str, Any]:
    return {"name": name, "method": method, "size": size, "device": "cpu",
            "median_s": float(statistics.median(seconds)) if seconds else None, **extra}


def write_results(path: Path, records: list[dict[str, Any]]) -> None:
    from medxai.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(records, indent=2, default=str) + "\n")
