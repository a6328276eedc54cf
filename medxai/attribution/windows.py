"""Attribution of a patch-trained model on a whole scan, window by window (models with ``sliding_window``).

Each window the sliding-window inferer places is explained on its own, as the network saw it in training: the
target is *this class's logit of this window* (or the contrast of two classes' logits of this window), never
the scan-level score. The window maps are blended with the weights the inferer uses for the class maps
(MONAI :class:`~monai.inferers.SlidingWindowInferer`: ``gaussian`` or ``constant``): at every voxel the
weighted mean of the overlapping windows' attributions, where each window's weight is its importance map.

How each method's meaning carries over (also written in ``explanations.json``, ``window_combination``):

* ``own`` (GP class maps, ``medxai segment``): each window's class map, blended by the inferer itself.
* gradient methods (``saliency``, ``input_x_gradient``, ``smoothgrad``, ``guided_backprop``, ``deeplift``,
  ``lrp``, ``integrated_gradients``): each window's map is that method's map for the window's own logit;
  where windows overlap, the weighted mean. Completeness (integrated gradients, DeepLIFT, LRP's
  conservation) holds per window: a window's map sums to ``f(window) - f(baseline window)``; for the whole
  scan it holds only where the windows do not overlap (``overlap`` 0, ``constant`` blend), since the blend
  is a mean, not a sum.
* CAM methods (``gradcam``, ``gradcampp``, ``smooth_gradcampp``): each window's CAM, upsampled to the window,
  blended as above: a map of where each window's own evidence for the class lies.
* perturbation methods (``occlusion``, ``feature_ablation``): patches occluded inside each window, the change
  of that window's logit; blended as above.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence, TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from medxai.attribution.admission import admit, sample_cost
from medxai.attribution.base import Execution
from medxai.attribution.memory import PeakMemorySampler, auto_batch_size
from medxai.attribution.method_runs import CAM_METHODS, case_method_options, check_time, method_record, run_methods
from medxai.attribution.registry import create_method
from medxai.attribution.targets import ClassTarget, PredictedClass, Target
from medxai.attribution.timing import Passes, TimeEstimate, estimate
from medxai.errors import ConfigError
from medxai.volume import Volume
from medxai.models.loaded import window_record
from medxai.models.sliding import SlidingWindow, SlidingWindowNetwork, padded_to_window, window_slices

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

COMPLETE_METHODS = frozenset({"integrated_gradients", "deeplift", "lrp"})
PERTURBATION_METHODS = frozenset({"occlusion", "feature_ablation", "kernel_shap"})


def window_combination(name: str, blend: str) -> str:
    """How ``name``'s window maps make the scan's map (recorded per method)."""
    blended = f"blended voxel-wise with the inferer's {blend} window weights (weighted mean where windows overlap)"
    if name == "own":
        return f"each window's own class map (the network's output), {blended}"
    if name in CAM_METHODS:
        return f"each window's CAM for its own logit of the target class, upsampled to the window, {blended}"
    if name in PERTURBATION_METHODS:
        return f"occlusion inside each window, the change of that window's own logit of the target class, {blended}"
    text = f"each window explained for its own logit of the target class, {blended}"
    if name in COMPLETE_METHODS:
        text += ("; completeness holds per window (a window's map sums to f(window) - f(baseline)), for the whole "
                 "scan only where windows do not overlap")
    return text


def window_target(target: Target, scan_logits: torch.Tensor) -> Target:
    """The per-window target: the scan's predicted class becomes that class's logit in every window."""
    if isinstance(target, PredictedClass):
        return ClassTarget(int(scan_logits[0].argmax()))
    if getattr(target, "region", None) is not None:
        raise ConfigError("a mask, box or voxel target is not supported for models trained on patches")
    return target


def stitch_attributions(method: Any, window: SlidingWindow, inputs: torch.Tensor, target: Target, *,
                        on_window: Callable[[], None] | None = None) -> torch.Tensor:
    """``method``'s (an attribution method built on the window network) map of every window of ``inputs``
    (1, C, X, Y, Z) for ``target``, blended by MONAI's inferer with the class maps' weights: (1, C, X, Y, Z)."""

    def explain(windows: torch.Tensor) -> torch.Tensor:  # (B, C, *patch) -> (B, C, *patch)
        maps = []
        for one in windows:
            maps.append(method.attribute(one[None], target).to(windows.device))
            if on_window is not None:
                on_window()
        return torch.cat(maps)

    return window.inferer()(inputs, explain)


def window_explainer(name: str, network: SlidingWindowNetwork, *, seed: int, index: int,
                     options: Mapping[str, Any] | None = None) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """``explain(net, inputs) -> (1, C, X, Y, Z)`` for the scores' re-explanations (perturbed inputs, randomised
    copies ``net`` of ``network``): method ``name`` window by window for class ``index``, as
    :func:`attribute_in_windows` draws the written map (per channel, not summed)."""
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    execution = Execution(device=str(device), seed=seed, spacing_mm=network.window.spacing_mm)
    main = create_method(name, network.base, execution=execution, options=options)

    def explain(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        method = main if net is network else create_method(name, net.base, execution=execution, options=options)  # type: ignore[union-attr]
        return stitch_attributions(method, net.window, inputs, ClassTarget(index))  # type: ignore[union-attr]

    return explain


def windows_estimate(one_window: TimeEstimate, windows: int) -> TimeEstimate:
    """The time of ``windows`` windows from the estimate of one."""
    passes = one_window.passes
    return TimeEstimate(method=one_window.method, passes=Passes(count=windows, unit="windows", forward=passes.forward * windows,
                                                                backward=passes.backward * windows, batch=passes.batch),
                        forward_s=one_window.forward_s, backward_s=one_window.backward_s, seconds=one_window.seconds * windows)


def attribute_in_windows(
    model: LoadedModel, inputs: torch.Tensor, target: Target, name: str, *, seed: int = 0, batch_size: int | str = "auto",
    options: Mapping[str, Any] | None = None, device: torch.device | None = None, time_budget: float | None = None,
    notice: Callable[[str], None] | None = None, progress: Callable[[str, int, int], None] | None = None, label: str = "",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Method ``name``'s map of a whole prepared scan ``inputs`` (1, C, X, Y, Z) (summed over channels), its
    windows explained one by one for ``target`` (a class or contrast of each window's logits) and blended
    like the class maps; and its record. Before anything runs, one window's pass is admitted for memory and
    the time of all windows estimated (one window's estimate x the windows): over ``time_budget`` it is
    refused (TimeBudgetExceeded), over 30 s announced to ``notice``; ``progress`` counts the windows."""
    window = model.sliding_window
    base = model.network.base
    device = device or inputs.device
    options = case_method_options(model, [name], {name: options or {}})[name]
    slices = window_slices(inputs.shape[2:], window)
    probe = padded_to_window(inputs, window)[(slice(None), slice(None), *slices[0])]
    cost = sample_cost(base, probe, [name])
    batch = auto_batch_size(base, probe, sample_bytes=cost.backward) if batch_size == "auto" else int(batch_size)
    needed = admit(name, cost, batch_size=batch, device=device)
    execution = Execution(device=str(device), batch_size=batch, seed=seed, spacing_mm=window.spacing_mm)
    method = create_method(name, base, execution=execution, options=options)
    count = len(slices)
    expected = windows_estimate(estimate(name, method.plan(probe), base, probe, model_key=(str(model.sha256), "window"),
                                         dtype=method.autocast_dtype), count)
    label = f"{name} ({label})" if label else name
    check_time(expected, budget_s=time_budget, notice=notice, label=label)
    deltas: list[float] = []
    done = 0

    def on_window() -> None:
        nonlocal done
        delta = method.diagnostics.get("convergence_delta")
        if delta is not None:
            deltas.append(float(np.max(np.abs(delta))))
        done += 1
        if progress is not None:
            progress(label, done, count)

    with PeakMemorySampler(device) as memory:
        started = time.perf_counter()
        stitched = stitch_attributions(method, window, inputs.to(device, torch.float32), target, on_window=on_window)
        wall = time.perf_counter() - started
    record = method_record(method, stitched, expected=expected, wall_s=wall, needed_bytes=needed, memory=memory.result,
                           convergence_delta=max(deltas) if deltas else None)
    record.update(window_combination=window_combination(name, window.blend), windows=count, batch_size=batch)
    return stitched[0].sum(dim=0).detach().cpu().numpy().astype(np.float32), record


def explain_in_windows(
    model: LoadedModel, prepared: Any, channels: Sequence[Any], *, case_id: str, methods: Sequence[str], goal: Target,
    output: torch.Tensor, prediction: Mapping[str, Any], region_kind: str | None, seed: int, device: torch.device,
    batch_size: int | str, options: Mapping[str, Mapping[str, Any]], progress: Any = None,
    time_budget: float | None = None, notice: Callable[[str], None] | None = None,
) -> tuple[dict[str, Volume], dict[str, np.ndarray], dict[str, Any], dict[str, str]]:
    """The methods of :func:`medxai.attribution.engine.explain_case` for a patch-trained model, each through
    :func:`attribute_in_windows` for ``goal`` (the parsed target; ``predicted`` is the class of the scan-level
    ``output``), the maps mapped to the scan's grid by the recorded inverse preprocessing. Returns the native
    heatmaps, the model-grid maps, the record (``explanations.json`` but its ``target``, which the engine
    resolves) and the failed methods."""
    from medxai.attribution.provenance import input_records, library_versions, utc_now

    if region_kind is not None:
        raise ConfigError(f"a --{region_kind} target is not supported for models trained on patches (sliding windows)")
    inputs = prepared.tensor.as_tensor()[None].to(device, torch.float32)
    goal = window_target(goal, output)
    runs = run_methods(
        methods, lambda name: attribute_in_windows(
            model, inputs, goal, name, seed=seed, batch_size=batch_size, options=options.get(name, {}), device=device,
            time_budget=time_budget, notice=notice, progress=progress, label=case_id),
        lambda model_map: model.preprocessor.to_native(model_map, prepared, interpolation="linear"),
        case_id=case_id, progress=progress)
    reference = prepared.reference
    spacing = [round(float(s), 6) for s in np.linalg.norm(np.asarray(prepared.tensor.affine)[:3, :3], axis=0)]
    record = {
        "case_id": case_id, "inputs": input_records(channels),
        "model": {"sha256": model.sha256, "arch": model.arch, "classes": list(model.classes), "task": model.task},
        "output": "classification", "explained_output": "each window's class logits (sliding windows)",
        "prediction": dict(prediction), "seed": seed, "device": str(device),
        "batch_size": {"requested": str(batch_size), "used": next((r["batch_size"] for r in runs.records.values()), None)},
        "grid": {"native_shape": list(reference.shape), "native_affine": reference.affine.tolist(),
                 "model_shape": list(inputs.shape[2:]), "model_spacing_mm": spacing},
        "sliding_window": window_record(model),
        "versions": library_versions(), "date": utc_now(), "methods": runs.records, "failed_methods": runs.failed,
        "time_budget": {"budget_s": time_budget, "refused": runs.refused},
    }
    return runs.heatmaps, runs.model_maps, record, runs.failed
