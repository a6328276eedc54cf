"""Score explanations of one case: faithfulness, robustness and sanity on the model grid, localisation on the
scan's own grid. One row (a flat dict) per case x method; :func:`write_scores_csv` writes ``scores.csv``.

Faithfulness: infidelity under Gaussian noise (``infidelity``) and under mm-sized block removal
(``infidelity_blocks``), max-sensitivity, deletion/insertion areas. Sanity: cascading randomisation.
Localisation (when a mask is given): pointing game, relevance mass/rank, AUROC, distances in mm and
peritumoral shell masses. Every metric is one of the plain functions of :mod:`medxai.metrics`. Each row gets
its verdict (:mod:`medxai.metrics.verdict`) from these scores, the same scores of the map's values shuffled
(a random map of the same sparsity) and how much denser the map is outside the body than inside it.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from medxai.attribution.method_runs import case_method_options
from medxai.errors import ConfigError, InvalidInputError
from medxai.io.atomic import write_text_atomic
from medxai.io.naming import scan_case_ids, scan_channels, scan_source
from medxai.io.readers import read_mask
from medxai.metrics.localisation import localisation_scores
from medxai.metrics.model_grid import (
    Explainer,
    ModelGridCase,
    ScoreSettings,
    empty_sanity,
    faithfulness_scores,
    sanity_scores,
)
from medxai.metrics.sanity import SANITY_EXTRA_COLUMNS, cascade_columns
from medxai.metrics.verdict import VERDICT_COLUMNS, decide, outside_body
from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel
    from medxai.attribution.engine import ScanInput

ProgressCallback = Callable[[str, int, int], None]


def model_grid_spacing(affine: torch.Tensor | np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm of a model-grid tensor from its (MONAI MetaTensor) affine."""
    matrix = np.asarray(affine, dtype=np.float64)
    return tuple(float(s) for s in np.linalg.norm(matrix[:3, :3], axis=0))  # type: ignore[return-value]


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def scores_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text of ``rows`` with ``columns`` (NaN and missing values as empty cells)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(column)) for column in columns])
    return buffer.getvalue()


def json_ready(value: Any) -> Any:
    """``value`` with NaN/inf as None and NumPy scalars as Python ones (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return json_ready(value.item())
    return value


BASELINE_COLUMNS = ("infidelity_random", "infidelity_blocks_random", "deletion_auc_random", "outside_body")


def score_columns(settings: ScoreSettings, *, with_mask: bool) -> list[str]:
    """``scores.csv``'s columns: :meth:`ScoreSettings.columns` with the verdict after ``case_id,method`` and the
    random-map baselines and sanity status before ``target``."""
    columns = settings.columns(with_mask=with_mask)
    end = columns.index("target")
    return [*columns[:2], *VERDICT_COLUMNS, *columns[2:end], *BASELINE_COLUMNS, *SANITY_EXTRA_COLUMNS, *columns[end:]]


def shuffled(heatmap: torch.Tensor, seed: int) -> torch.Tensor:
    """The map's own values at random voxels (seeded): a random attribution of the same sparsity."""
    generator = torch.Generator().manual_seed(seed)
    flat = heatmap.reshape(-1)
    order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
    return flat[order].reshape(heatmap.shape)


def random_baseline(case: ModelGridCase, heatmap: torch.Tensor, explain: Explainer, *, method: str,
                    settings: ScoreSettings, seed: int) -> dict[str, float]:
    """Infidelity and deletion area of the shuffled map, with the same seeded perturbations as the map's own
    (forward passes only: no explanation is recomputed)."""
    cheap = replace(settings, sensitivity=False)
    scores = faithfulness_scores(case, shuffled(heatmap, seed), explain, method=method, settings=cheap, seed=seed)
    return {"infidelity_random": scores["infidelity"], "infidelity_blocks_random": scores["infidelity_blocks"],
            "deletion_auc_random": scores["deletion_auc"]}


def write_scores_csv(rows: Sequence[dict[str, Any]], path: str | Path, *, columns: Sequence[str]) -> Path:
    """Write ``scores.csv`` atomically; rows that record their ``input`` (the scan path) get it as the last column."""
    if any("input" in row for row in rows) and "input" not in columns:
        columns = [*columns, "input"]
    write_text_atomic(path, scores_csv(rows, columns))
    return Path(path)


def class_index(classes: Sequence[str], logits: torch.Tensor, target: str) -> int:
    """``predicted`` (arg-max of the logits) or a class name of the model."""
    if target == "predicted":
        return int(logits[0].argmax())
    if target not in classes:
        raise ConfigError(f"unknown target class {target!r} (the model's classes: {', '.join(classes)})")
    return list(classes).index(target)


def method_explainer(name: str, network: nn.Module, *, seed: int, spacing: tuple[float, float, float], index: int,
                     options: Mapping[str, Any] | None = None) -> Explainer:
    """``explain(net, inputs)`` with the attribution method ``name`` for class ``index``.

    The method is built once for ``network`` (model surgery and layer lookup are not repeated for every
    perturbed input) and afresh for any other network, such as the sanity check's randomised copy, whose
    weights change between calls (methods that copy the network at construction must see the new ones).
    """
    from medxai.attribution.base import Execution
    from medxai.attribution.registry import create_method
    from medxai.attribution.targets import ClassTarget
    from medxai.models.sliding import SlidingWindowNetwork

    if isinstance(network, SlidingWindowNetwork):  # window by window, as the written map was made
        from medxai.attribution.windows import window_explainer

        return window_explainer(name, network, seed=seed, index=index, options=options)
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    execution = Execution(device=str(device), seed=seed, spacing_mm=spacing)
    main = create_method(name, network, execution=execution, options=options)

    def explain(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        method = main if net is network else create_method(name, net, execution=execution, options=options)
        return method.attribute(inputs, ClassTarget(index))

    return explain


def prepare_case(model: LoadedModel, volumes: Sequence[Volume], *, target: str = "predicted") -> tuple[Any, ModelGridCase]:
    """Preprocess ``volumes`` (one per input channel) for ``model``: the prepared input and the model-grid case
    with the class every explanation of it refers to (``predicted`` or a class name) and the class probabilities."""
    prepared = model.preprocessor.prepare(list(volumes))
    return prepared, model_grid_case(model, prepared.tensor.as_tensor()[None], prepared.tensor.affine, target=target)


def model_grid_case(model: LoadedModel, inputs: torch.Tensor, affine: Any, *, target: str = "predicted") -> ModelGridCase:
    """The model-grid case of a prepared input ``(1, C, X, Y, Z)`` with its affine: the class every explanation of
    it refers to (``predicted`` or a class name) and the class probabilities."""
    inputs = inputs.to(model.device)
    with torch.no_grad():
        logits = model.network(inputs)
    index = class_index(model.classes, logits, target)
    return ModelGridCase(model.network, inputs, model_grid_spacing(affine), index,
                         extra={"probabilities": torch.softmax(logits.float(), dim=1)[0].tolist()})


def score_explanation(
    model: LoadedModel,
    explanation: Any,
    case: ModelGridCase,
    *,
    mask: Volume | None = None,
    seed: int = 0,
    settings: ScoreSettings | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """One row per method of ``explanation`` (:class:`medxai.attribution.engine.CaseExplanation`): its
    model-grid map scored there (faithfulness, robustness, sanity) and its native-grid heatmap against
    ``mask`` (localisation). A method the explanation reports as failed gets a row with its ``error``."""
    settings = settings or ScoreSettings()
    methods = list(explanation.heatmaps) + list(explanation.failed)
    options = case_method_options(model, methods, method_options)
    target = model.classes[case.class_index]
    rows = []
    for done, name in enumerate(methods):
        row: dict[str, Any] = {"case_id": explanation.case_id, "method": name, "target": target}
        if name in explanation.failed:
            row["error"] = explanation.failed[name]
            rows.append({**row, **decide(row).as_columns()})
            continue
        explain = method_explainer(name, case.network, seed=seed, spacing=case.spacing, index=case.class_index,
                                   options=options[name])
        if case.inputs.shape[1] == 1:  # the map explain_case wrote, on the model grid
            heatmap = torch.from_numpy(explanation.model_maps[name])[None, None].to(case.inputs.device)
        else:  # explain_case sums channels; the model-grid metrics need the per-channel map
            heatmap = explain(case.network, case.inputs)
        row.update(faithfulness_scores(case, heatmap, explain, method=name, settings=settings, seed=seed))
        row.update(random_baseline(case, heatmap, explain, method=name, settings=settings, seed=seed))
        row["outside_body"] = outside_body(heatmap, case.inputs)
        row.update(sanity_scores(case, explain, settings=settings, seed=seed) if settings.sanity else empty_sanity())
        row.update(cascade_columns(row.get("sanity_cascade")))
        if mask is not None:
            row.update(localisation_scores(explanation.heatmaps[name], mask, tolerance_mm=settings.tolerance_mm,
                                           shell_edges_mm=settings.shells_mm))
        row.update(decide(row).as_columns())
        rows.append(row)
        if progress is not None:
            progress("Scoring methods", done + 1, len(methods))
    return rows


def score_case(
    model: LoadedModel,
    scan: ScanInput | Sequence[ScanInput],
    *,
    methods: Sequence[str],
    mask: str | Path | Volume | None = None,
    seed: int = 0,
    target: str = "predicted",
    settings: ScoreSettings | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    case_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """One row per method for ``scan`` explained by ``model`` (a :class:`medxai.models.loaded.LoadedModel`).

    ``scan`` is one input or one per channel, each a path or a ``Volume`` already read (a scan given as
    volumes needs ``case_id``); ``mask``, a path or a ``Volume``, must lie on the scan's grid. Only paths are
    read, once. The heatmaps are :func:`medxai.attribution.engine.explain_case`'s (the ones ``medxai explain``
    writes); the scan is preprocessed once more for the model-grid metrics (once per case, not per method).
    ``target`` is ``predicted`` or a class name.
    """
    from medxai.attribution.engine import explain_case, read_inputs, resolve_case_id, scan_inputs
    from medxai.attribution.registry import check_method_names

    if not methods:
        raise ConfigError("no attribution method to score")
    check_method_names(list(methods))
    if target != "predicted" and target not in model.classes:
        raise ConfigError(f"score explains one class: target must be 'predicted' or one of {', '.join(model.classes)}")
    channels = scan_inputs(scan)
    case_id = resolve_case_id(channels, case_id)
    volumes = read_inputs(channels)
    mask_volume = mask if isinstance(mask, Volume) or mask is None else read_mask(mask, volumes[0])
    explanation = explain_case(model, volumes, methods=methods, target=target, seed=seed, method_options=method_options,
                               case_id=case_id)
    return score_explained(model, volumes, explanation, mask=mask_volume, seed=seed, settings=settings,
                           method_options=method_options, progress=progress)


def score_explained(
    model: LoadedModel,
    volumes: Sequence[Volume],
    explanation: Any,
    *,
    mask: Volume | None = None,
    seed: int = 0,
    settings: ScoreSettings | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """:func:`score_explanation` of an explanation already made of ``volumes`` (the pipeline's explain
    stage's): the heatmaps are scored, not computed again, on the model-grid input they were made on (the scan
    is not preprocessed again); the class is the one the explanation resolved."""
    resolved = explanation.record["target"]["resolved"] or {}
    class_name = model.classes[resolved["class_index"]] if "class_index" in resolved else explanation.record["target"]["requested"]
    if explanation.model_input is not None:  # the input the maps were made on: not preprocessed again
        case = model_grid_case(model, explanation.model_input, explanation.model_affine, target=class_name)
    else:
        _, case = prepare_case(model, volumes, target=class_name)
    return score_explanation(model, explanation, case, mask=mask, seed=seed, settings=settings,
                             method_options=method_options, progress=progress)


def score_cases(
    model: LoadedModel,
    scans: Sequence[str | Path | Sequence[str | Path]],
    *,
    methods: Sequence[str],
    masks: Sequence[str | Path] | None = None,
    seed: int = 0,
    target: str = "predicted",
    settings: ScoreSettings | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, InvalidInputError]]]:
    """:func:`score_case` over several scans (each one path, ``a.nii.gz;b.nii.gz`` or a sequence of channel
    paths; ``masks`` empty or one per scan, in order); a scan that cannot be used is recorded in the failures (case id, error) and the batch goes on."""
    if masks and len(masks) != len(scans):
        raise ConfigError(f"give one mask per scan or none: {len(masks)} masks for {len(scans)} scans")
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, InvalidInputError]] = []
    if target != "predicted" and target not in model.classes:  # an option error: before the first case
        raise ConfigError(f"score explains one class: target must be 'predicted' or one of {', '.join(model.classes)}")
    for done, (scan, case_id) in enumerate(zip(scans, scan_case_ids(scans))):
        try:
            rows += [{**row, "input": scan_source(scan)} for row in score_case(
                model, list(scan_channels(scan)), methods=methods, mask=masks[done] if masks else None, seed=seed,
                target=target, settings=settings, case_id=case_id)]
        except InvalidInputError as error:
            failures.append((case_id, error))
        if progress is not None:
            progress("Scoring cases", done + 1, len(scans))
    return rows, failures
