"""Running one case's methods: the options each method gets and the loop over the methods.

One piece of code for every path that explains a case: the engine (whole volumes), the sliding-window path
(:mod:`medxai.attribution.windows`), the scores' re-explanations (:mod:`medxai.metrics.scoring`) and post-hoc
maps for segmentation (:mod:`medxai.segmentation.heatmaps`), so the map scored or thresholded is made with the
options of the map written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TYPE_CHECKING

import numpy as np

from medxai.attribution.timing import LONG_WORK_S, TimeBudgetExceeded, TimeEstimate, check_budget
from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

CAM_METHODS = frozenset({"gradcam", "gradcampp", "smooth_gradcampp"})
ROI_METHODS = frozenset({"occlusion", "feature_ablation"})  # perturbation methods: the given ROI, else the body
ProgressCallback = Callable[[str, int, int], None]
NORMALISATION = "none, raw attribution"


def case_method_options(model: LoadedModel, methods: Sequence[str], given: Mapping[str, Mapping[str, Any]] | None = None, *,
                        roi: Any = None, layer_prefix: str = "") -> dict[str, dict[str, Any]]:
    """Each method's options: those ``given``, plus the region perturbation methods are restricted to (``roi``,
    else ``"body"``, the scan's foreground) and for CAM methods the layer the architecture registered
    (``layer_prefix`` when the network is wrapped), unless given."""
    options = {name: dict((given or {}).get(name, {})) for name in methods}
    for name in ROI_METHODS & set(methods):
        options[name].setdefault("roi", roi if roi is not None else "body")
    layer = getattr(model, "target_layer", None)
    for name in CAM_METHODS & set(methods):
        if layer:
            options[name].setdefault("layer", f"{layer_prefix}{layer}")
    return options


def check_time(expected: TimeEstimate, *, budget_s: float | None, notice: Callable[[str], None] | None,
               label: str) -> None:
    """The time pre-flight of one method: refused over ``budget_s`` (TimeBudgetExceeded), announced to ``notice``
    when it is long work."""
    check_budget(expected, budget_s)
    if notice is not None and expected.seconds > LONG_WORK_S:
        notice(expected.summary(label))


def method_record(method: Any, heatmap: Any, *, expected: TimeEstimate, wall_s: float, needed_bytes: int, memory: Any,
                  convergence_delta: float | None) -> dict[str, Any]:
    """What ``explanations.json`` says of one method run: its parameters, sign and reference, time against the
    estimate, memory against the admission estimate (``memory``: a finished PeakMemorySampler's result) and the
    completeness gap. ``heatmap`` (1, C, X, Y, Z) must be finite (ArithmeticError otherwise)."""
    import torch

    if not bool(torch.isfinite(heatmap).all()):
        raise ArithmeticError("the heatmap holds non-finite values")
    diagnostics = {key: value for key, value in method.diagnostics.items() if key != "convergence_delta"}
    return {
        "parameters": dict(method.params), "sign": method.sign, "normalisation": NORMALISATION,
        "needs_gradients": method.needs_gradients, "reference": method.reference, "wall_s": round(wall_s, 4),
        **expected.to_record(), "actual_seconds": round(wall_s, 3),
        "estimated_pass_mib": round(needed_bytes / 2**20, 1), "peak_rss_mib": round(memory.rss_mib, 1),
        "peak_cuda_mib": None if memory.cuda_mib is None else round(memory.cuda_mib, 1),
        "convergence_delta": convergence_delta, "diagnostics": diagnostics,
        "channel_reduction": "sum over input channels" if heatmap.shape[1] > 1 else "none (one channel)",
    }


@dataclass
class MethodRuns:
    """What a case's methods gave: native heatmaps, model-grid maps, records, failed (method -> one line) and
    those refused by the time budget (method -> estimate)."""

    heatmaps: dict[str, Volume] = field(default_factory=dict)
    model_maps: dict[str, np.ndarray] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, Any] = field(default_factory=dict)


def run_methods(methods: Sequence[str], attribute: Callable[[str], tuple[np.ndarray, dict[str, Any]]],
                to_native: Callable[[np.ndarray], Volume], *, case_id: str,
                progress: ProgressCallback | None = None) -> MethodRuns:
    """``attribute(name) -> (model-grid map, record)`` for each method, mapped to the scan's grid by
    ``to_native``; a method refused by the time budget, out of memory or with non-finite values is recorded
    as failed and the others still run (bad input and bugs propagate)."""
    runs = MethodRuns()
    for done, name in enumerate(methods):
        if progress is not None:  # one bar per case, advancing method by method
            progress(f"explain {case_id}", done, len(methods))
        try:
            model_map, record = attribute(name)
        except TimeBudgetExceeded as error:  # refused before it ran
            runs.failed[name], runs.refused[name] = str(error), error.estimate.to_record()
            continue
        except (RuntimeError, MemoryError, ArithmeticError) as error:  # resources or numerics, not bad input
            text = str(error).strip()
            runs.failed[name] = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
            continue
        runs.heatmaps[name] = to_native(model_map)
        runs.model_maps[name] = model_map
        runs.records[name] = {"file": f"{name}.nii.gz", **record}
    if progress is not None:
        progress(f"explain {case_id}", len(methods), len(methods))
    return runs
