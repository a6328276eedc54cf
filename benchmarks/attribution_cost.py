"""Each attribution method's cost as a ratio to its floor: seconds / (passes it needs x best per-sample
pass time), with the passes counted per method from its parameters and its run-time diagnostics.

Every method is timed as a user pays for it per case of a cohort: construction plus ``attribute``, with
the target and the internal batch size resolved once per case as ``explain_case`` does (the target
from the prediction's clean forward pass, which every case needs anyway, so no method pays for it).
Network copies made for hook-based methods (model surgery, in-place-free copies, the LRP graph) are
built once per model and reused while its weights are unchanged; ``first_call_s`` is the first call,
which pays for them.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn

from benchmarks.common import measure, record
from benchmarks.floor import PassFloor

CAM_METHODS = ("gradcam", "gradcampp", "smooth_gradcampp")
# One sample per pass: nothing to batch, so the batch-1 pass is their floor too.
SINGLE_SAMPLE_METHODS = ("saliency", "input_x_gradient", "guided_backprop", "gradcam", "gradcampp", "lrp")


def cam_layer(arch: str) -> str | None:
    """The CAM layer the architecture registers (as ``explain_case`` passes it), if any."""
    from medxai.models.registry import get_architecture

    return get_architecture(arch).target_layer


def occlusion_windows(shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Captum's window count: prod over axes of ceil((length - window) / stride) + 1."""
    return math.prod(math.ceil((n - w) / s) + 1 for n, w, s in zip(shape, window, stride))


def passes(name: str, params: dict[str, Any], diagnostics: dict[str, Any], shape: tuple[int, ...]) -> dict[str, int]:
    """Forward-only and forward+backward sample passes a method needs (the target's clean pass is the case's)."""
    if name == "integrated_gradients":
        # F(x) and F(0) once (the completeness gap); every step count tried (doubling) is a full run.
        used, steps, total = diagnostics["n_steps_used"], params["n_steps"], 0
        while steps <= used:
            total, steps = total + steps, steps * 2
        return {"forward": 2, "backward": total}
    if name == "smoothgrad":
        return {"forward": 0, "backward": params["n_samples"]}
    if name == "smooth_gradcampp":
        return {"forward": 0, "backward": 1 + params["n_samples"]}
    if name == "deeplift":  # input and baseline in one batch of 2 (its outputs give the completeness gap)
        return {"forward": 0, "backward": 2}
    if name == "occlusion":
        windows = diagnostics.get("windows_evaluated")
        if windows is None:
            windows = occlusion_windows(shape, diagnostics["window_voxels"], diagnostics["stride_voxels"])
        return {"forward": 1 + windows, "backward": 0}
    if name == "feature_ablation":
        return {"forward": 1 + diagnostics["supervoxels"], "backward": 0}
    if name == "lrp":  # Captum's LRP: a forward with the rules' weight hooks, then a forward+backward on the graph
        return {"forward": 1, "backward": 1}
    return {"forward": 0, "backward": 1}  # saliency, input x gradient, guided backprop, Grad-CAM(++)


def method_runner(name: str, network: nn.Module, inputs: torch.Tensor, *, device: str, batch_size: int,
                  options: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    """A call that builds and runs the medxai method once, and the dict its last params/diagnostics land in."""
    from medxai.attribution.base import Execution
    from medxai.attribution.registry import create_method
    from medxai.attribution.targets import PredictedClass

    execution = Execution(device=device, batch_size=batch_size, seed=0)
    target = PredictedClass().resolve(network, inputs)
    last: dict[str, Any] = {}

    def call() -> torch.Tensor:
        method = create_method(name, network, execution=execution, options=options)
        heatmap = method.attribute(inputs, target)
        last.update(params=dict(method.params), diagnostics=dict(method.diagnostics))
        return heatmap

    return call, last


def pre_flight_estimate(name: str, network: nn.Module, inputs: torch.Tensor, *, device: str, batch_size: int,
                        options: dict[str, Any], model_key: tuple[str, str]) -> float:
    """What ``explain``'s time pre-flight (:func:`medxai.attribution.timing.estimate`) predicts for this method
    here, its passes timed (issue 30's goal: the actual time within +-30 % of it)."""
    from medxai.attribution.base import Execution
    from medxai.attribution.registry import create_method
    from medxai.attribution.timing import estimate

    method = create_method(name, network, execution=Execution(device=device, batch_size=batch_size, seed=0), options=options)
    return estimate(name, method.plan(inputs), method.network, inputs, model_key=model_key,
                    dtype=method.autocast_dtype).seconds


def method_options(name: str, arch: str, configured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    options = dict(configured.get(name, {}))
    layer = cam_layer(arch)
    if name in CAM_METHODS and layer:
        options.setdefault("layer", layer)
    return options


def attribution_records(network: nn.Module, inputs: torch.Tensor, floor: PassFloor, *, arch: str, device: str,
                        repeats: int, configured: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per registered method: median seconds, passes, floor and ratio to floor."""
    from medxai.attribution.memory import auto_batch_size
    from medxai.attribution.registry import METHODS

    batch_size = auto_batch_size(network, inputs)
    size = "x".join(str(n) for n in inputs.shape[2:])
    rows = []
    for name in METHODS:
        options = method_options(name, arch, configured)
        call, last = method_runner(name, network, inputs, device=device, batch_size=batch_size, options=options)
        try:
            started = time.perf_counter()
            call()
            first_call_s = time.perf_counter() - started
            timing = measure(call, repeats=repeats, device=device, warmup=0)
        except (RuntimeError, MemoryError) as error:
            rows.append({"name": f"method/{name}", "method": name, "error": str(error).splitlines()[0]})
            continue
        counted = passes(name, last["params"], last["diagnostics"], tuple(inputs.shape[2:]))
        predicted = pre_flight_estimate(name, network, inputs, device=device, batch_size=batch_size, options=options,
                                        model_key=(arch, size))
        row = record(f"method/{name}", name, size, device, timing, model=arch, batch_size=batch_size,
                     passes=counted, floor_s=floor.cost(**counted), first_call_s=first_call_s,
                     params={k: v for k, v in last["params"].items() if k != "roi"}, estimated_s=predicted,
                     estimate_ratio=timing["median_s"] / max(predicted, 1e-9))
        if name in SINGLE_SAMPLE_METHODS and not math.isnan(floor.forward_b1_s + floor.backward_b1_s):
            row["floor_b1_s"] = floor.cost_at_batch_1(**counted)
            row["ratio_to_b1_floor"] = row["median_s"] / row["floor_b1_s"]
        rows.append(row)
    return rows
