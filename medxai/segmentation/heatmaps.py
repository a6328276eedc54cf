"""The class heatmap a weakly-supervised mask is cut from: a GP model's own map or a post-hoc attribution.

``own`` is the network's output map of the target class (GP-UNet & co., Chatterjee et al.); any method
name of :mod:`medxai.attribution` (``gradcam``, ``smoothgrad``, ...) gives that method's map of the same
class, so post-hoc maps of an ordinary classifier are thresholded by exactly the same rules. The map is
computed on the model grid and mapped to the scan's native grid with linear interpolation.

A model trained on patches (``sliding_window``) is run over the whole scan at its training spacing: its own
class maps are the windows' maps blended by MONAI's sliding-window inferer, a post-hoc map is each window's
attribution for its own logit blended the same way (:mod:`medxai.attribution.windows`); the record says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from medxai.attribution.targets import ClassTarget
from medxai.attribution.windows import attribute_in_windows, window_combination
from medxai.errors import ConfigError
from medxai.models.loaded import LoadedModel, window_record
from medxai.models.weakseg import has_heatmaps
from medxai.volume import Volume

OWN = "own"


@dataclass(frozen=True, eq=False)
class ClassMap:
    """One case's target-class map: on the model grid (``model_map``) and on the native grid (``heatmap``).

    ``empty_reason`` is set when no mask should be cut (the prediction is the negative class)."""

    model_map: np.ndarray
    heatmap: Volume
    predicted: str
    probabilities: dict[str, float]
    target: str
    method: str
    empty_reason: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _target_index(classes: Sequence[str], target: str, predicted: int) -> int:
    if target == "predicted":
        return predicted
    if target not in classes:
        raise ConfigError(f"target class {target!r} is not one of the model's classes ({', '.join(classes)})")
    return list(classes).index(target)


def _attribution_map(model: LoadedModel, inputs: torch.Tensor, *, method: str, index: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    from medxai.attribution.admission import admit, sample_cost
    from medxai.attribution.base import Execution
    from medxai.attribution.memory import auto_batch_size
    from medxai.attribution.registry import create_method

    from medxai.attribution.method_runs import case_method_options

    options = case_method_options(model, [method])[method]  # as explain makes this method's map
    cost = sample_cost(model.network, inputs, [method])
    batch_size = auto_batch_size(model.network, inputs, sample_bytes=cost.backward)
    admit(method, cost, batch_size=batch_size, device=inputs.device)  # as explain does: refuse, not be killed
    explainer = create_method(method, model.network, execution=Execution(device=str(model.device), seed=seed,
                                                                         batch_size=batch_size), options=options)
    attribution = explainer.attribute(inputs, ClassTarget(index))
    # input-space methods give one map per input channel: their sum is the voxel's total attribution
    return attribution[0].sum(dim=0).cpu().numpy(), dict(explainer.diagnostics)


def class_map(
    model: LoadedModel, channels: Sequence[Volume], *, method: str = OWN, target: str = "predicted",
    negative_class: str | None = "normal", seed: int = 0,
) -> ClassMap:
    """The ``target`` class map of one scan (its channel volumes, in the model's channel order).

    With ``target="predicted"`` and a prediction equal to ``negative_class`` the map is still computed
    (for inspection) but ``empty_reason`` says the mask must be empty: a scan classified as lesion-free
    has no lesion to segment."""
    prepared = model.preprocessor.prepare(list(channels))
    inputs = prepared.tensor.as_tensor()[None].to(model.device, torch.float32)
    network = model.network.eval()
    with torch.no_grad():
        logits = network(inputs)
    probabilities = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
    predicted = int(np.argmax(probabilities))
    index = _target_index(model.classes, target, predicted)
    # a GP model trained with --negative-class gives that class one learnt level, not a map
    flat = method == OWN and index == getattr(network, "negative_class", None)
    diagnostics: dict[str, Any] = {}
    if method == OWN:
        if not has_heatmaps(network.base if model.sliding_window is not None else network):
            raise ConfigError(f"method 'own' needs a model with its own class heatmaps (--arch gp-unet, gp-shuffleunet, "
                              f"gp-reconresnet); this one is {model.arch!r}: use a post-hoc method such as gradcam")
        if flat and target != "predicted":
            raise ConfigError(f"class {target!r} has no map of its own in this model (trained with --negative-class "
                              f"{target}): segment another class, or --target predicted")
        with torch.no_grad():
            model_map = network.heatmaps(inputs)[0, index].float().cpu().numpy()
    elif model.sliding_window is not None:
        model_map, record = attribute_in_windows(model, inputs, ClassTarget(index), method, seed=seed)
        diagnostics = {key: record[key] for key in ("diagnostics", "window_combination", "windows", "convergence_delta")}
    else:
        model_map, diagnostics = _attribution_map(model, inputs, method=method, index=index, seed=seed)
    if model.sliding_window is not None:
        diagnostics.setdefault("window_combination", window_combination(method, model.sliding_window.blend))
        diagnostics["sliding_window"] = window_record(model)
    heatmap = model.preprocessor.to_native(model_map, prepared, interpolation="linear")
    name = model.classes[index]
    empty = None
    if target == "predicted" and negative_class is not None and name == negative_class:
        empty = f"predicted class is the negative class {negative_class!r}"
    elif flat:
        empty = f"predicted class {name!r} is the model's flat class (the absence of a finding)"
    return ClassMap(
        model_map=model_map, heatmap=heatmap.with_data(heatmap.data.astype(np.float32)),
        predicted=model.classes[predicted], probabilities={c: float(p) for c, p in zip(model.classes, probabilities)},
        target=name, method=method, empty_reason=empty, diagnostics=diagnostics,
    )
