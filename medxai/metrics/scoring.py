"""Score explanations of one case: faithfulness, robustness and sanity on the model grid, localisation on the
scan's own grid. One row (a flat dict) per case x method; :func:`write_scores_csv` writes ``scores.csv``.

Faithfulness: infidelity under Gaussian noise (``infidelity``) and under mm-sized block removal
(``infidelity_blocks``), max-sensitivity, deletion/insertion areas. Sanity: cascading randomisation.
Localisation (when a mask is given): pointing game, relevance mass/rank, AUROC, distances in mm and
peritumoral shell masses. Every metric is one of the plain functions of :mod:`medxai.metrics`.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.atomic import write_text_atomic
from medxai.io.naming import case_id_from_path
from medxai.io.readers import read_mask, read_volume
from medxai.metrics.localisation import localisation_scores
from medxai.metrics.model_grid import (
    Explainer,
    ModelGridCase,
    ScoreSettings,
    empty_sanity,
    faithfulness_scores,
    sanity_scores,
)
from medxai.volume import Volume

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


def write_scores_csv(rows: Sequence[dict[str, Any]], path: str | Path, *, columns: Sequence[str]) -> Path:
    """Write ``scores.csv`` atomically."""
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

    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    execution = Execution(device=str(device), seed=seed, spacing_mm=spacing)
    main = create_method(name, network, execution=execution, options=options)

    def explain(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        method = main if net is network else create_method(name, net, execution=execution, options=options)
        return method.attribute(inputs, ClassTarget(index))

    return explain


def prepare_case(model: Any, volume: Volume, *, target: str = "predicted") -> tuple[Any, ModelGridCase]:
    """Preprocess ``volume`` once for ``model``: the prepared input (for mapping maps back) and the model-grid
    case with the class every explanation of it refers to (``predicted`` or a class name)."""
    prepared = model.preprocessor.prepare([volume])
    inputs = prepared.tensor.as_tensor()[None].to(model.device)
    with torch.no_grad():
        logits = model.network(inputs)
    index = class_index(model.classes, logits, target)
    case = ModelGridCase(model.network, inputs, model_grid_spacing(prepared.tensor.affine), index,
                         extra={"probabilities": torch.softmax(logits.float(), dim=1)[0].tolist()})
    return prepared, case


def score_methods(
    model: Any,
    prepared: Any,
    case: ModelGridCase,
    *,
    methods: Sequence[str],
    case_id: str,
    mask: Volume | None = None,
    seed: int = 0,
    settings: ScoreSettings | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """One row per method: model-grid scores, and localisation on the native grid when ``mask`` is given."""
    settings = settings or ScoreSettings()
    rows = []
    for done, name in enumerate(methods):
        explain = method_explainer(name, case.network, seed=seed, spacing=case.spacing, index=case.class_index,
                                   options=(method_options or {}).get(name))
        heatmap = explain(case.network, case.inputs)
        row: dict[str, Any] = {"case_id": case_id, "method": name, "target": model.classes[case.class_index]}
        row.update(faithfulness_scores(case, heatmap, explain, method=name, settings=settings, seed=seed))
        row.update(sanity_scores(case, explain, settings=settings, seed=seed) if settings.sanity else empty_sanity())
        if mask is not None:
            native = model.preprocessor.to_native(heatmap[0].sum(dim=0), prepared, interpolation="linear")
            row.update(localisation_scores(native, mask, tolerance_mm=settings.tolerance_mm,
                                           shell_edges_mm=settings.shells_mm))
        rows.append(row)
        if progress is not None:
            progress("Scoring methods", done + 1, len(methods))
    return rows


def score_case(
    model: Any,
    scan: str | Path | Volume,
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
    """One row per method for ``scan`` explained by ``model`` (a :class:`medxai.models.model_dir.LoadedModel`).

    The scan is read and preprocessed once; each method's map is scored on the model grid (faithfulness,
    robustness, sanity) and, when ``mask`` (a file on the scan's grid or a Volume) is given, mapped back to the
    scan's own grid by the model's preprocessor and scored for localisation there.
    """
    from medxai.attribution.registry import check_method_names

    if not methods:
        raise ConfigError("no attribution method to score")
    check_method_names(list(methods))
    volume = scan if isinstance(scan, Volume) else read_volume(scan)
    case_id = case_id or (case_id_from_path(scan) if not isinstance(scan, Volume) else "case")
    mask_volume = None
    if mask is not None:
        mask_volume = mask if isinstance(mask, Volume) else read_mask(mask, volume)
        if not mask_volume.same_grid(volume):
            raise InvalidInputError("mask grid does not match the scan grid", path=mask_volume.metadata.get("source"))
    prepared, case = prepare_case(model, volume, target=target)
    return score_methods(model, prepared, case, methods=methods, case_id=case_id, mask=mask_volume, seed=seed,
                         settings=settings, method_options=method_options, progress=progress)


def score_cases(
    model: Any,
    scans: Sequence[str | Path],
    *,
    methods: Sequence[str],
    masks: Sequence[str | Path] | None = None,
    seed: int = 0,
    target: str = "predicted",
    settings: ScoreSettings | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, InvalidInputError]]]:
    """:func:`score_case` over several scans (``masks`` empty or one per scan, in order); a scan that cannot
    be used is recorded in the failures (case id, error) and the batch goes on."""
    if masks and len(masks) != len(scans):
        raise ConfigError(f"give one mask per scan or none: {len(masks)} masks for {len(scans)} scans")
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, InvalidInputError]] = []
    for done, scan in enumerate(scans):
        case_id = case_id_from_path(scan)
        try:
            rows += score_case(model, scan, methods=methods, mask=masks[done] if masks else None, seed=seed,
                               target=target, settings=settings, case_id=case_id)
        except InvalidInputError as error:
            failures.append((case_id, error))
        if progress is not None:
            progress("Scoring cases", done + 1, len(scans))
    return rows, failures
