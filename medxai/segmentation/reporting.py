"""What ``medxai segment`` records: the per-case ``segmentation.json``, the scores CSV and the run summary."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel
    from medxai.segmentation.heatmaps import ClassMap
    from medxai.segmentation.threshold import ThresholdRule

SCORE_COLUMNS = ("case_id", "method", "threshold", "status", "label", "predicted", "target", "dice", "iou", "hd95_mm",
                 "volume_ml", "reference_volume_ml")
OK, FAILED = "ok", "failed"
MAX_BODY_SHARE = 0.5  # a "lesion" mask over half of the body (or of the volume) segments nothing in particular


class PostprocessSettings(Protocol):
    """What a case record reports of the settings (``segment.SegmentSettings`` has these; a protocol keeps
    this module free of an import of ``segment``, which imports it)."""

    keep_largest: bool
    fill_holes: bool
    refine: str | None


def body_share(mask: Volume, image: Volume | None) -> tuple[float, str]:
    """The share of the body (the image's voxels above Otsu's threshold) the mask covers, or of the whole
    volume when no image is given, and which of the two it is."""
    from medxai.metrics.sanity import foreground_array

    binary = np.asarray(mask.data) > 0
    if image is not None and image.same_grid(mask):
        body = foreground_array(np.asarray(image.data, dtype=np.float64))
        if body.any():
            return float(np.count_nonzero(binary & body) / np.count_nonzero(body)), "body"
    return float(np.count_nonzero(binary) / max(1, binary.size)), "scanned volume"


def failure_reason(mapped: "ClassMap", mask: Volume, level: float, *, image: Volume | None = None) -> str | None:
    """Why the mask is not a segmentation (a flat or non-positive map, a level at the map's minimum, a mask
    over most of the body), or None when it is one. A negative prediction's deliberately empty mask is not
    a failure."""
    if mapped.empty_reason:
        return None
    values = np.asarray(mapped.model_map, dtype=np.float64)
    if values.size == 0 or np.ptp(values) == 0:
        return "the heatmap is flat: it highlights nothing to segment"
    if not math.isfinite(level):
        return "the heatmap has no positive value: it highlights nothing to segment"
    if level <= float(values.min()) + 1e-6 * float(np.ptp(values)):  # at the minimum, up to rounding
        return (f"the threshold (level {level:.3g}) lies at the heatmap's minimum, so it keeps every voxel the map "
                "covers instead of a lesion")
    share, of = body_share(mask, image)
    if share > MAX_BODY_SHARE:
        return f"the mask covers {100 * share:.0f}% of the {of}: it does not delineate a lesion"
    return None


def case_record(
    case_id: str, model: "LoadedModel", mapped: "ClassMap", mask: Volume, *, rule: "ThresholdRule", level: float,
    chosen_by: str, settings: PostprocessSettings, scores: dict[str, float] | None, voxel_ml: float,
    image: Volume | None = None,
) -> dict[str, Any]:
    """Provenance and result of one case (no file paths: they may carry patient identifiers). ``status`` is
    ``failed`` with a ``reason`` when the mask is no segmentation (:func:`failure_reason`; ``image``, the scan's
    first channel, gives the body), else ``ok``."""
    peak = float(np.max(mapped.model_map)) if mapped.model_map.size else 0.0
    voxels = int(np.count_nonzero(mask.data))
    reason = failure_reason(mapped, mask, level, image=image)
    return {
        "case_id": case_id,
        "status": FAILED if reason else OK,
        "reason": reason,
        "model": {"arch": model.arch, "task": model.task, "classes": list(model.classes), "sha256": model.sha256},
        "method": mapped.method,
        "target": mapped.target,
        "predicted": mapped.predicted,
        "probabilities": mapped.probabilities,
        "empty_reason": mapped.empty_reason or (None if math.isfinite(level) else "the class map has no positive value"),
        "threshold": {
            "rule": str(rule), "chosen_by": chosen_by, "level": level if math.isfinite(level) else None,
            "level_fraction_of_peak": (level / peak) if math.isfinite(level) and peak > 0 else None,
            "peak": peak,
            "computed_on": mask.metadata.get("threshold_computed_on", "model-grid map (positive part)"),
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
              failed: Sequence[tuple[str, str]] = (), unusable: Sequence[tuple[str, str]] = (),
              refine: str | None = None) -> dict[str, Any]:
    """The run's summary (what the command prints); ``failed`` holds ``(case_id, reason)`` of cases left out,
    ``unusable`` those of cases whose segmentation failed (``status`` failed in their segmentation.json)."""
    summary: dict[str, Any] = {"out_dir": str(out), "cases": cases, "segmented": cases - len(failed), "method": method,
                               "threshold": str(rule), "chosen_by": chosen_by, "refine": refine, "scored": len(rows), "medxai": version,
                               "failed": [list(item) for item in failed],
                               "failed_segmentations": [list(item) for item in unusable]}
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
