"""What ``medxai segment`` records: the per-case ``segmentation.json``, the scores CSV and the run summary."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.models.model_dir import LoadedModel
    from medxai.segmentation.heatmaps import ClassMap
    from medxai.segmentation.segment import SegmentSettings
    from medxai.segmentation.threshold import ThresholdRule

SCORE_COLUMNS = ("case_id", "method", "threshold", "label", "predicted", "target", "dice", "iou", "hd95_mm",
                 "volume_ml", "reference_volume_ml")


def case_record(
    case_id: str, model: "LoadedModel", mapped: "ClassMap", mask: Volume, *, rule: "ThresholdRule", level: float,
    chosen_by: str, settings: "SegmentSettings", scores: dict[str, float] | None, voxel_ml: float,
) -> dict[str, Any]:
    """Provenance and result of one case (no file paths: they may carry patient identifiers)."""
    peak = float(np.max(mapped.model_map)) if mapped.model_map.size else 0.0
    voxels = int(np.count_nonzero(mask.data))
    return {
        "case_id": case_id,
        "model": {"arch": model.arch, "task": model.task, "classes": list(model.classes), "sha256": model.sha256},
        "method": mapped.method,
        "target": mapped.target,
        "predicted": mapped.predicted,
        "probabilities": mapped.probabilities,
        "empty_reason": mapped.empty_reason or (None if math.isfinite(level) else "the class map has no positive value"),
        "threshold": {
            "rule": str(rule), "chosen_by": chosen_by, "level": level if math.isfinite(level) else None,
            "level_fraction_of_peak": (level / peak) if math.isfinite(level) and peak > 0 else None,
            "peak": peak, "computed_on": "model-grid map (positive part)",
        },
        "postprocess": {"largest_component": settings.keep_largest, "fill_holes": settings.fill_holes,
                        "refine": mask.metadata.get("refine")},
        "mask": {"voxels": voxels, "volume_ml": voxels * voxel_ml, "voxel_volume_ml": voxel_ml},
        "grid": {"shape": list(mask.shape), "spacing_mm": list(mask.spacing), "orientation": mask.orientation},
        "heatmap": {"file": "heatmap.nii.gz", "values": "raw class map (not normalised), model grid -> native grid "
                    "by linear interpolation; mask = heatmap > level, then post-processing"
                    + (" and refinement from the image (postprocess.refine)" if settings.refine else "")},
        "diagnostics": mapped.diagnostics,
        "scores": scores,
    }


def scores_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCORE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def _median(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def summarise(out: Path, *, cases: int, rule: "ThresholdRule", chosen_by: str, rows: Sequence[dict[str, Any]],
              sweep: dict[str, Any] | None, method: str, version: str,
              failed: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The run's summary (what the command prints); ``failed`` holds ``(case_id, reason)`` of cases left out."""
    summary: dict[str, Any] = {"out_dir": str(out), "cases": cases, "segmented": cases - len(failed), "method": method,
                               "threshold": str(rule), "chosen_by": chosen_by, "scored": len(rows), "medxai": version,
                               "failed": [list(item) for item in failed]}
    if rows:
        dices = [float(r["dice"]) for r in rows]
        summary.update(
            median_dice=_median(dices), mean_dice=float(np.mean(dices)),
            median_iou=_median([float(r["iou"]) for r in rows]),
            median_hd95_mm=_median([float(r["hd95_mm"]) for r in rows]),
            scores_csv=str(out / "segmentation_scores.csv"),
        )
    if sweep is not None:
        summary["sweep"] = sweep
    return summary
