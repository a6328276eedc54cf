"""Explain one case: read the scan once, preprocess once, run each method on the model grid, map every
heatmap back to the scan's own grid (the model's recorded inverse preprocessing, linear interpolation).

Heatmaps keep their raw values (no normalisation, never MONAI's inverted min-max default); each record
states the sign convention. Multi-channel inputs give one map per channel on the model grid; the written
heatmap is their sum (the voxel's total attribution), and the record says so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from medxai.attribution.base import Execution
from medxai.attribution.admission import SampleCost, admit, sample_cost
from medxai.attribution.memory import PeakMemorySampler, auto_batch_size
from medxai.attribution.method_runs import case_method_options, check_time, method_record, run_methods
from medxai.attribution.provenance import input_records, library_versions, utc_now
from medxai.attribution.regions import box_mask, to_model_grid, voxel_mask
from medxai.attribution.defaults import DEFAULT_METHOD
from medxai.attribution.registry import check_method_names, create_method
from medxai.attribution.targets import ClassTarget, ContrastTarget, PredictedClass, Target, output_kind
from medxai.attribution.timing import estimate, synchronize
from medxai.errors import ConfigError
from medxai.io.naming import case_id_from_path
from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

ProgressCallback = Callable[[str, int, int], None]
Notice = Callable[[str], None]  # a one-line diagnostic for the user (the CLI prints it on stderr)
ScanInput = str | Path | Volume  # a scan channel: a path to read, or a volume already read


@dataclass(frozen=True, eq=False)
class CaseExplanation:
    """Heatmaps of one case on its native grid (``method -> Volume``), the model-grid maps, the record
    (``explanations.json``) and the methods that failed with their one-line reason; ``model_input`` and
    ``model_affine`` are the prepared model-grid input (1, C, X, Y, Z) the maps were made on and its affine, so
    scoring these maps does not preprocess the scan again."""

    case_id: str
    heatmaps: dict[str, Volume]
    model_maps: dict[str, np.ndarray]
    record: dict[str, Any]
    failed: dict[str, str] = field(default_factory=dict)
    model_input: torch.Tensor | None = None
    model_affine: np.ndarray | None = None


class HeatmapOutput(nn.Module):
    """A weakly-supervised model seen through its class heatmaps ``(N, K, X, Y, Z)`` instead of its
    pooled logits, so region targets (mask, box, voxel) can explain its segmentation."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network.heatmaps(inputs)


def parse_target(spec: str, classes: Sequence[str], *, region: torch.Tensor | None = None) -> Target:
    """``predicted``, a class name (or index), or ``A-B``: the contrast of class A against class B."""
    names = [str(c) for c in classes]
    if spec == "predicted":
        return PredictedClass(region=region)
    if spec in names:
        return ClassTarget(names.index(spec), region=region)
    for cut in (i for i, character in enumerate(spec) if character == "-"):
        first, second = spec[:cut], spec[cut + 1 :]
        if first in names and second in names:
            if region is not None:
                raise ConfigError("a contrast target cannot be combined with a mask, box or voxel region")
            return ContrastTarget(names.index(first), names.index(second))
    if spec.isdigit() and int(spec) < max(len(names), 1):
        return ClassTarget(int(spec), region=region)
    raise ConfigError(f"unknown target {spec!r} (use 'predicted', a class ({', '.join(names)}) or CLASS_A-CLASS_B)")


def scan_inputs(scan: ScanInput | Sequence[ScanInput]) -> list[Path | Volume]:
    """The channels of ``scan`` (one input, or one per channel) as paths or volumes."""
    items = [scan] if isinstance(scan, (str, Path, Volume)) else list(scan)
    return [item if isinstance(item, Volume) else Path(item) for item in items]


def resolve_case_id(inputs: Sequence[Path | Volume], case_id: str | None) -> str:
    """``case_id``, else the first channel's file name; a scan given already read needs ``case_id``."""
    if case_id:
        return case_id
    if isinstance(inputs[0], Volume):
        raise ValueError("case_id is required when the scan is given as a Volume")
    return case_id_from_path(inputs[0])


def read_inputs(inputs: Sequence[Path | Volume]) -> list[Volume]:
    """Every channel as a volume, reading only those given as paths."""
    from medxai.io.readers import read_volume

    return [item if isinstance(item, Volume) else read_volume(item) for item in inputs]


def _prediction(output: torch.Tensor, kind: str, classes: Sequence[str]) -> dict[str, Any]:
    names = [str(c) for c in classes] or [str(i) for i in range(output.shape[1])]
    if kind == "classification":
        logits = output[0].float()
        probabilities = torch.softmax(logits, 0) if logits.numel() > 1 else torch.sigmoid(logits)
        index = int(logits.argmax())
        return {"class": names[index] if index < len(names) else str(index),
                "probabilities": {n: float(p) for n, p in zip(names, probabilities)}}
    labels = output[0].argmax(0) if output.shape[1] > 1 else (output[0, 0] > 0).long()
    counts = torch.bincount(labels.flatten(), minlength=output.shape[1]).float()
    fractions = (counts / counts.sum()).tolist()
    return {"class": names[int(counts[1:].argmax()) + 1] if output.shape[1] > 1 else names[0],
            "voxel_fractions": {n: float(f) for n, f in zip(names, fractions)}}


def _target_record(requested: str, region: str | None, records: Mapping[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """What was asked, and what it resolved to (indices and class names)."""
    resolved = next((dict(r["diagnostics"]["target"]) for r in records.values() if "target" in r["diagnostics"]), None)
    names = [str(c) for c in classes]
    for key, name_key in (("class_index", "class"), ("versus_index", "versus")):
        if resolved and key in resolved and resolved[key] < len(names):
            resolved[name_key] = names[resolved[key]]
    return {"requested": requested, "region": region, "resolved": resolved}


def _regions(reference: Volume, spatial: Any, *, mask: Path | None, box: Sequence[int] | None,
             voxel: Sequence[int] | None) -> tuple[torch.Tensor | None, str | None]:
    """The one native-grid region the user gave, on the model grid, and how it was given."""
    from medxai.io.readers import read_mask

    given = [name for name, value in (("mask", mask), ("box", box), ("voxel", voxel)) if value is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of --mask, --box, --voxel (got {', '.join(given)})")
    if not given:
        return None, None
    if mask is not None:
        native = read_mask(mask, reference).data.astype(bool)
    elif box is not None:
        native = box_mask(reference, box)
    else:
        native = voxel_mask(reference, voxel or ())
    return to_model_grid(native, reference, spatial), given[0]


@dataclass(frozen=True)
class TimePolicy:
    """The time pre-flight of one case: the model's key for cached pass times, the budget per method (None: no
    limit), where to announce long work, and the progress callback with the case's label."""

    model_key: tuple[str, str]
    clean_forward_s: float | None = None  # the case's clean forward pass (batch 1): single-pass methods' pass time
    budget_s: float | None = None
    notice: Notice | None = None
    progress: ProgressCallback | None = None
    label: str = ""


def _run_method(name: str, network: nn.Module, inputs: torch.Tensor, target: Target, *, execution: Execution,
                options: Mapping[str, Any], cost: SampleCost, timing: TimePolicy) -> tuple[np.ndarray, dict[str, Any]]:
    """One method's model-grid map (X, Y, Z) and its record (parameters, sign, timing, memory, delta).
    A method whose estimated largest pass exceeds the free memory is refused (MemoryError) before it runs, one whose
    estimated time exceeds the budget too (TimeBudgetExceeded); work estimated over LONG_WORK_S is announced."""
    needed = admit(name, cost, batch_size=int(execution.batch_size), device=inputs.device)
    method = create_method(name, network, execution=execution, options=options)
    expected = estimate(name, method.plan(inputs), network, inputs, model_key=timing.model_key, dtype=method.autocast_dtype,
                        clean_forward_s=timing.clean_forward_s)
    label = f"{name} ({timing.label})"
    check_time(expected, budget_s=timing.budget_s, notice=timing.notice, label=label)
    report = timing.progress if expected.passes.count > 1 else None  # a single pass has nothing to count
    with PeakMemorySampler(inputs.device) as memory:
        started = time.perf_counter()
        heatmap = method.attribute(inputs, target, progress=None if report is None else
                                   (lambda done, total: report(label, done, total)))
        wall = time.perf_counter() - started
    record = method_record(method, heatmap, expected=expected, wall_s=wall, needed_bytes=needed, memory=memory.result,
                           convergence_delta=method.diagnostics.get("convergence_delta"))
    return heatmap[0].sum(0).cpu().numpy().astype(np.float32), record


def explain_case(
    model: LoadedModel,
    scan: ScanInput | Sequence[ScanInput],
    *,
    methods: Sequence[str] = (DEFAULT_METHOD,),
    target: str = "predicted",
    mask: Path | None = None,
    box: Sequence[int] | None = None,
    voxel: Sequence[int] | None = None,
    seed: int = 0,
    device: str | None = None,
    batch_size: int | str = "auto",
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    case_id: str | None = None,
    progress: ProgressCallback | None = None,
    time_budget: float | None = None,
    notice: Notice | None = None,
) -> CaseExplanation:
    """Explain ``scan`` (one input, or one per channel: a path, or a ``Volume`` already read, such as one
    series of a DICOM folder) with ``model`` (a ``LoadedModel``). A scan given as volumes needs ``case_id``;
    the record hashes each path's file, each volume's voxels and affine.

    ``target``: ``predicted``, a class name or ``A-B``. ``mask``/``box``/``voxel`` (native grid): for
    segmentation outputs (or weakly-supervised models' heatmaps) the region whose summed class logit is
    explained; for classification models the region of interest occlusion and supervoxel ablation are
    restricted to (by default: the body, the scan's foreground on the model grid). A method that runs out of
    memory or yields non-finite values is reported in ``failed``; the others still run.

    Before each method runs its time is estimated (its passes x a timed pass of this model on this device; for a
    single-pass method, this case's clean forward pass unless that pass was timed already, ``timing.estimate``):
    ``time_budget`` (seconds) refuses a method estimated over it (reported in ``failed``), ``notice`` gets a line
    for work estimated over 30 s, and ``progress`` counts each method's windows, samples or steps as
    ``"<method> (<case_id>)"``. The record holds each method's ``estimated_seconds`` and ``actual_seconds``.
    """
    if time_budget is not None and not time_budget > 0:
        raise ConfigError(f"the time budget must be a positive number of seconds, got {time_budget}")
    methods = list(methods) or [DEFAULT_METHOD]
    check_method_names(methods)
    options = {name: dict(value) for name, value in (method_options or {}).items()}
    check_method_names(list(options))
    channels = scan_inputs(scan)
    case_id = resolve_case_id(channels, case_id)
    volumes = read_inputs(channels)
    prepared = model.preprocessor.prepare(volumes)
    reference = prepared.reference
    torch_device = torch.device(device) if device else model.device
    network = model.network.to(torch_device).eval()
    inputs = prepared.tensor.as_tensor()[None].to(torch_device, torch.float32)
    spacing = tuple(float(s) for s in np.linalg.norm(np.asarray(prepared.tensor.affine)[:3, :3], axis=0))
    region, region_kind = _regions(reference, model.preprocessor.spatial, mask=mask, box=box, voxel=voxel)
    with torch.no_grad():
        started = time.perf_counter()
        output = network(inputs).float()
        synchronize(torch_device)
        clean_forward_s = time.perf_counter() - started
    kind = output_kind(output, inputs)
    prediction = _prediction(output, kind, model.classes)
    if getattr(model, "sliding_window", None) is not None:  # trained on patches: each window explained on its own
        from medxai.attribution.windows import explain_in_windows

        heatmaps, model_maps, record, failed = explain_in_windows(
            model, prepared, channels, case_id=case_id, methods=methods, goal=parse_target(target, model.classes),
            output=output, prediction=prediction, region_kind=region_kind, seed=seed, device=torch_device,
            batch_size=batch_size, options=options, progress=progress, time_budget=time_budget, notice=notice)
        record["target"] = _target_record(target, None, record["methods"], model.classes)
        return CaseExplanation(case_id=case_id, heatmaps=heatmaps, model_maps=model_maps, record=record, failed=failed,
                               model_input=inputs, model_affine=np.asarray(prepared.tensor.affine))
    explained, target_region, roi = network, None, None
    if region is not None and kind == "classification" and hasattr(network, "heatmaps"):
        explained, target_region = HeatmapOutput(network), region
    elif region is not None and kind == "segmentation":
        target_region = region
    elif region is not None:
        if region_kind == "voxel":
            raise ConfigError("a voxel target needs a segmentation model; for a classifier give --mask or --box as occlusion ROI")
        roi = region
    options = case_method_options(model, methods, options, roi=roi, layer_prefix="network." if explained is not network else "")
    # Resolved once for every method (one clean pass in all, the prediction's own when it is the output explained).
    goal = parse_target(target, model.classes, region=target_region).resolve(
        explained, inputs, output=output if explained is network else None)
    cost = sample_cost(explained, inputs, methods)
    resolved_batch = auto_batch_size(explained, inputs, sample_bytes=cost.backward) if batch_size == "auto" else int(batch_size)
    execution = Execution(device=str(torch_device), batch_size=resolved_batch, seed=seed, spacing_mm=spacing)  # type: ignore[arg-type]

    timing = TimePolicy(model_key=(str(model.sha256), type(explained).__name__), budget_s=time_budget, notice=notice,
                        progress=progress, label=case_id, clean_forward_s=clean_forward_s if explained is network else None)
    runs = run_methods(
        methods, lambda name: _run_method(name, explained, inputs, goal, execution=execution, options=options.get(name, {}),
                                          cost=cost, timing=timing),
        lambda model_map: model.preprocessor.to_native(model_map, prepared, interpolation="linear"),
        case_id=case_id, progress=progress)
    record = {
        "case_id": case_id,
        "inputs": input_records(channels),
        "model": {"sha256": model.sha256, "arch": model.arch, "classes": list(model.classes), "task": model.task},
        "output": kind,
        "explained_output": "class heatmaps (weakly supervised)" if explained is not network else kind,
        "prediction": prediction,
        "target": _target_record(target, region_kind, runs.records, model.classes),
        "seed": seed, "device": str(torch_device),
        "batch_size": {"requested": str(batch_size), "used": resolved_batch},
        "grid": {"native_shape": list(reference.shape), "native_affine": reference.affine.tolist(),
                 "model_shape": list(inputs.shape[2:]), "model_spacing_mm": [round(s, 6) for s in spacing]},
        "versions": library_versions(), "date": utc_now(),
        "methods": runs.records, "failed_methods": runs.failed,
        "time_budget": {"budget_s": time_budget, "refused": runs.refused},
    }
    return CaseExplanation(case_id=case_id, heatmaps=runs.heatmaps, model_maps=runs.model_maps, record=record,
                           failed=runs.failed, model_input=inputs, model_affine=np.asarray(prepared.tensor.affine))
