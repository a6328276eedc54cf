"""The stages a pipeline chains, in their fixed order, and the per-case context they share.

A stage is a function ``stage(context: CaseContext) -> None`` that writes its files into
``context.case_dir`` (a staging folder renamed to ``OUT/<case_id>/`` only when every stage succeeded) and
may leave results for later stages in ``context.results``. Stages are named by import path
(``"package.module:function"``) so worker processes, local or on a Dask cluster, import them themselves.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TYPE_CHECKING

import numpy as np

from medxai.errors import ConfigError
from medxai.io.atomic import write_text_atomic
from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Key, Pipeline, register_section
from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel


@dataclass
class CaseContext:
    """Everything one case's stages see: the case, its scan and mask, the loaded model, earlier results."""

    case: Case
    pipeline: Pipeline
    case_dir: Path
    model: LoadedModel | None = None
    scan: Volume | None = None
    channels: list[Volume] = field(default_factory=list)
    mask: Volume | None = None
    results: dict[str, Any] = field(default_factory=dict)


StageFunction = Callable[[CaseContext], None]


@dataclass(frozen=True)
class StageSpec:
    """A stage: the section that configures it, its per-case function (import path), whether it needs the
    model, the key that turns it on, and optional import paths of ``check(pipeline, model, cases)`` (once before
    any case: raise ConfigError early) and ``finish(pipeline, out_dir, done_case_ids)`` (run once after
    the last case, e.g. the cohort summary)."""

    section: str
    target: str
    needs_model: bool
    enabled_key: str = "enabled"
    check: str | None = None
    finish: str | None = None


_STEPS = "medxai.pipeline.steps"
# The fixed order stages run in; a pipeline turns them on with ``<section>.enabled`` (``model.predict``).
STAGES: list[StageSpec] = [
    StageSpec("model", f"{_STEPS}.predict:run", needs_model=True, enabled_key="predict", finish=f"{_STEPS}.predict:finish"),
    StageSpec("explain", f"{_STEPS}.explain:run", needs_model=True, check=f"{_STEPS}.explain:check"),
    StageSpec("score", f"{_STEPS}.score:run", needs_model=True, check=f"{_STEPS}.score:check",
              finish=f"{_STEPS}.score:finish"),
    StageSpec("segment", f"{_STEPS}.segment:run", needs_model=True, check=f"{_STEPS}.segment:check",
              finish=f"{_STEPS}.segment:finish"),
    StageSpec("radiomics", f"{_STEPS}.radiomics:run", needs_model=False, check=f"{_STEPS}.radiomics:check",
              finish=f"{_STEPS}.radiomics:finish"),
    StageSpec("report", f"{_STEPS}.report:run", needs_model=False, check=f"{_STEPS}.report:check",
              finish=f"{_STEPS}.report:finish"),
    StageSpec("dicom", "medxai.dicom_export.stage:run", needs_model=False),  # last: exports what the others wrote
]


def register_stage(spec: StageSpec, *, keys: Mapping[str, Key] | None = None) -> None:
    """Append a stage (and, with ``keys``, its new settings section) to the pipeline stages."""
    if any(existing.section == spec.section and existing.target == spec.target for existing in STAGES):
        raise ValueError(f"stage {spec.target} is already registered")
    if keys is not None:
        register_section(spec.section, keys)
    STAGES.append(spec)


def active_stages(pipeline: Pipeline) -> list[StageSpec]:
    """The stages ``pipeline`` turns on, in run order (the scan stage always runs first)."""
    return [SCAN_STAGE, *(s for s in STAGES if pipeline.sections.get(s.section, {}).get(s.enabled_key))]


def resolve(target: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``."""
    module_name, _, name = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"pipeline stage {target} cannot be imported ({error})") from None
    return function


def read_scan(context: CaseContext) -> None:
    """Read the case's scan (every channel; ``scan`` is the first) and its mask when the pipeline uses
    input masks; write ``scan.json``.

    ``scan.json`` records the grid every output of the case lies on (shape, spacing, affine, orientation)
    and the intensity range, and the input path it was read from (as every output records it; a path may
    name the patient, so share run folders as you would the inputs); never DICOM tags or times.
    """
    from medxai.io.readers import read_mask, read_volume

    case, settings = context.case, context.pipeline["input"]
    context.scan = read_volume(case.image, series_uid=case.series_uid)
    context.channels = [context.scan, *(read_volume(path) for path in case.extra_channels)]
    if case.mask is not None and settings["masks"]:
        context.mask = read_mask(case.mask, context.scan, label=settings["mask_label"])
    data = np.asarray(context.scan.data)
    record = {
        "case_id": case.case_id,
        "input": case.source,
        "label": case.label,
        "channels": len(context.channels),
        "shape": list(context.scan.shape),
        "spacing_mm": [round(s, 6) for s in context.scan.spacing],
        "orientation": context.scan.orientation,
        "affine": np.round(context.scan.affine, 6).tolist(),
        "dtype": str(data.dtype),
        "intensity": {"min": float(data.min()), "max": float(data.max()), "mean": float(data.mean())},
        "mask_voxels": None if context.mask is None else int(np.count_nonzero(context.mask.data)),
    }
    write_text_atomic(context.case_dir / "scan.json", json.dumps(record, indent=2) + "\n")


SCAN_STAGE = StageSpec(section="input", target=f"{__name__}:read_scan", needs_model=False)
