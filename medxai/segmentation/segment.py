"""``medxai segment``: weakly-supervised masks cut from class heatmaps, on each scan's own grid.

Chatterjee et al., "Weakly-supervised segmentation using inherently-explainable classification models and
their application to brain tumour classification": the heatmap of the predicted class is thresholded
(top multi-Otsu threshold minus an offset, the offset chosen on validation cases by median Dice).

Geometry: the class map is computed on the model grid, mapped to the native grid with *linear*
interpolation, and thresholded there. The level itself is computed on the model-grid map (what the
network produced, independent of how much background a scan's field of view adds; rules over the body, on
the native map inside the scan's foreground: ``postprocess.map_level``), then applied to the
interpolated native map, so the written mask is exactly ``heatmap > level`` (before optional clean-up)
voxel for voxel and its boundary follows the interpolated iso-surface. Thresholding on the model grid and
resampling the mask with nearest neighbour instead would give staircase boundaries one model voxel
coarse (worse Dice/HD95 on any scan finer than the model grid) and a mask that disagrees with its heatmap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence, TYPE_CHECKING

import numpy as np

from medxai import __version__
from medxai.errors import ConfigError, InvalidInputError, one_line
from medxai.io.atomic import output_folder, write_text_atomic
from medxai.io.naming import check_case_folder, input_label, record_case_input, unique_case_ids
from medxai.segmentation.heatmaps import OWN, ClassMap
from medxai.segmentation.overlap import overlap_scores, voxel_volume_ml
from medxai.segmentation.postprocess import cut_mask
from medxai.segmentation.reporting import case_record, scores_csv, summarise
from medxai.segmentation.sweep import (
    check_threshold_destination, read_saved_threshold, saved_choice, saved_threshold_record, sweep_thresholds,
)
from medxai.segmentation.threshold import PAPER_SWEEP, ThresholdRule
from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

__all__ = ["PAPER_SWEEP", "SegmentInput", "SegmentSettings", "collect_inputs", "cut_mask", "segment_scans",
           "sweep_thresholds"]

Progress = Callable[[str, int, int], None]
DEFAULT_RULE = ThresholdRule("multiotsu-offset", 0.5)  # Chatterjee et al.'s default
AUTO = "auto"  # --refine auto: the model's saved choice, else otsu for the model's own map (docs/weakseg.md)


@dataclass(frozen=True)
class SegmentInput:
    """One case: its channel files (model order), an optional reference mask and label."""

    case_id: str
    images: tuple[Path, ...]
    mask: Path | None = None
    label: str | None = None


@dataclass(frozen=True)
class SegmentSettings:
    """How a heatmap becomes a mask (see :mod:`medxai.segmentation.threshold`). ``rule`` None: the rule saved
    in the model directory's ``threshold.json`` for this method, else :data:`DEFAULT_RULE`; ``refine``
    :data:`AUTO`: the saved refinement, else :func:`default_refine`."""

    rule: ThresholdRule | None = DEFAULT_RULE
    method: str = OWN
    target: str = "predicted"
    negative_class: str | None = "normal"
    keep_largest: bool = False
    fill_holes: bool = False
    seed: int = 0
    refine: str | None = None  # a box segmenter re-drawing the margin from the image (medxai.segmentation.refine)
    refine_margin_mm: float = 3.0


def collect_inputs(scans: Sequence[str | Path], *, masks: Sequence[str | Path] = ()) -> list[SegmentInput]:
    """Cases from SCAN arguments: a scan (``a.nii.gz;b.nii.gz`` for several channels) or a ``labels.csv``
    manifest (``case_id,image,mask,label``, or its folder). ``masks`` pair with the scans in order."""
    from medxai.models.dataset import read_labels, split_channels

    if masks and len(masks) != len(scans):
        raise ConfigError(f"{len(masks)} --mask for {len(scans)} scans: give one reference mask per scan, in order")
    cases: list[SegmentInput] = []
    fixed: list[str | None] = []  # a manifest's case ids are kept; a scan's id derives from its path
    for position, scan in enumerate(scans):
        text = str(scan)
        if text.lower().endswith(".csv") or (Path(text).is_dir() and (Path(text) / "labels.csv").is_file()):
            if masks:
                raise ConfigError(f"{text}: a manifest lists its own masks; --mask goes with single scans only")
            listed = read_labels(text).cases
            cases += [SegmentInput(c.case_id, c.images, c.mask, c.label) for c in listed]
            fixed += [c.case_id for c in listed]
            continue
        images = split_channels(text, Path())
        if not images:
            raise InvalidInputError("empty scan argument", path=text)
        cases.append(SegmentInput("", images, Path(masks[position]) if masks else None))
        fixed.append(None)
    # A missing file is not checked here: reading it fails that case alone (exit 4 for one scan, 3 in a batch).
    ids = unique_case_ids([case.images[0] for case in cases], fixed=fixed)
    return [replace(case, case_id=case_id) for case, case_id in zip(cases, ids)]


def default_refine(method: str) -> str | None:
    """``otsu`` for a GP model's own map, where it was measured to help (phantoms 0.32 -> 0.89, BRATS 0.67 ->
    0.76 median Dice, docs/weakseg.md), none for post-hoc maps (Grad-CAM 0.00 -> 0.01, SmoothGrad 0.06 -> 0.00)."""
    return "otsu" if method == OWN else None


def resolve_settings(settings: SegmentSettings, saved: dict[str, Any] | None) -> tuple[SegmentSettings, ThresholdRule, str]:
    """``settings`` with a concrete rule and refinement, the rule, and where it came from (``option``,
    ``model threshold.json``, ``default``)."""
    choice = saved_choice(saved, settings.method)
    rule, source = settings.rule, "option"
    if rule is None:
        rule, source = (choice[0], "model threshold.json") if choice else (DEFAULT_RULE, "default")
    refine = settings.refine
    if refine == AUTO:
        refine = choice[1] if choice and source != "option" else default_refine(settings.method)
    return replace(settings, rule=rule, refine=refine), rule, source


def segment_scans(
    model_path: str | Path, cases: Sequence[SegmentInput], out_dir: str | Path, *, settings: SegmentSettings,
    sweep: Sequence[ThresholdRule] | None = None, device: str = "cpu", trust: bool = False,
    progress: Progress | None = None, save_threshold: bool = False, model: LoadedModel | None = None,
) -> dict[str, Any]:
    """Write ``OUT/<case_id>/{mask,heatmap}.nii.gz`` + ``segmentation.json`` for every case, and
    ``OUT/segmentation_scores.csv`` for cases with a reference mask. With ``sweep`` (candidate rules) the
    rule is chosen on the cases with reference masks first (``OUT/sweep.json``); their scores are then
    optimistic, so choose on validation cases and apply the choice to test cases in a second run. With
    ``save_threshold`` the chosen rule (and refinement) is written to the model directory's ``threshold.json``,
    which later runs without ``--threshold`` use. ``model``: the model at ``model_path`` already loaded (the
    CLI's shared model options), else it is loaded on ``device``.

    With one case, its error propagates (the CLI's exit 4). With several, a case whose scan or mask cannot be
    used is left out (no folder) and listed in the summary's ``failed`` as ``(case_id, reason)``."""
    from medxai.segmentation.refine import check_refiner

    if not cases:
        raise ConfigError("no scans to segment")
    if settings.refine != AUTO:
        check_refiner(settings.refine)
    if save_threshold:
        if not sweep:
            raise ConfigError("--save-threshold keeps the threshold a --sweep chose: add --sweep")
        check_threshold_destination(model_path)
    out = Path(out_dir)
    sources = {case.case_id: input_label(case.images) for case in cases}
    for case in cases:  # before any work: never replace another input's folder
        check_case_folder(out / case.case_id, sources[case.case_id])
    with output_folder(out):  # writable, checked before the work; removed again if left empty
        if model is None:
            from medxai.models.model_dir import load_model

            model = load_model(model_path, device=device, trust=trust)
        return _segment_into(model_path, model, cases, out, sources, settings=settings, sweep=sweep, progress=progress,
                             save_threshold=save_threshold)


def _segment_into(
    model_path: str | Path, model: LoadedModel, cases: Sequence[SegmentInput], out: Path, sources: dict[str, str], *,
    settings: SegmentSettings, sweep: Sequence[ThresholdRule] | None, progress: Progress | None, save_threshold: bool,
) -> dict[str, Any]:
    """:func:`segment_scans` once the output folder is checked."""
    from medxai.io.readers import read_mask, read_volume
    from medxai.segmentation.heatmaps import class_map

    saved = read_saved_threshold(model_path, weights_sha256=model.sha256)
    settings, rule, chosen_by = resolve_settings(settings, saved)
    if settings.target != "predicted" and settings.target not in model.classes:
        raise ConfigError(f"target class {settings.target!r} is not one of the model's classes ({', '.join(model.classes)})")
    negative = settings.negative_class if settings.negative_class in model.classes else None

    def compute(case: SegmentInput) -> tuple[ClassMap, Volume | None, Volume | None]:
        channels = [read_volume(path) for path in case.images]
        mapped = class_map(model, channels, method=settings.method, target=settings.target,
                           negative_class=negative, seed=settings.seed)
        truth = read_mask(case.mask, channels[0]) if case.mask else None
        return mapped, truth, channels[0]  # the image: the body a failed mask is measured against, and --refine's

    failed: list[tuple[str, str]] = []

    def compute_or_skip(case: SegmentInput) -> tuple[ClassMap, Volume | None, Volume | None] | None:
        try:
            return compute(case)
        except InvalidInputError as error:  # a bad scan or mask; a wrong option fails every case and stops the run
            if len(cases) == 1:
                raise
            failed.append((case.case_id, one_line(error)))
            return None

    refine = dict(refine=settings.refine, refine_margin_mm=settings.refine_margin_mm)

    sweep_record = None
    computed: dict[str, tuple[ClassMap, Volume | None, Volume | None] | None] = {}
    if sweep:
        for number, case in enumerate(cases, start=1):
            computed[case.case_id] = compute_or_skip(case)
            if progress:
                progress("Heatmaps", number, len(cases))
        scored = [done for done in computed.values() if done is not None and done[1] is not None]
        sweep_record = sweep_thresholds([(m, t) for m, t, _ in scored], sweep, keep_largest=settings.keep_largest,
                                        fill=settings.fill_holes, images=[image for _, _, image in scored],  # type: ignore[arg-type]
                                        **refine)
        rule = next(r for r in sweep if str(r) == sweep_record["chosen"])
        chosen_by = "sweep"
        write_text_atomic(out / "sweep.json", _json({**sweep_record, "method": settings.method,
                                                     "refine": settings.refine, "cases": [c.case_id for c in cases]}))
        if save_threshold:
            record = saved_threshold_record(saved, method=settings.method, rule=str(rule),
                                            refine=settings.refine, sweep=sweep_record, weights_sha256=model.sha256)
            write_text_atomic(check_threshold_destination(model_path), _json(record))
    rows: list[dict[str, Any]] = []
    unusable: list[tuple[str, str]] = []
    for number, case in enumerate(cases, start=1):
        done = computed.pop(case.case_id) if case.case_id in computed else compute_or_skip(case)
        if done is None:
            continue
        mapped, truth, image = done
        case_dir = out / case.case_id
        record_case_input(case_dir, case.case_id, sources[case.case_id])
        record, row, _ = write_segmentation(case_dir, case.case_id, sources[case.case_id], model, mapped, truth, image,
                                            rule=rule, chosen_by=chosen_by, settings=settings, label=case.label)
        if record["status"] == "failed":
            unusable.append((case.case_id, record["reason"]))
        if row is not None:
            rows.append(row)
        if progress:
            progress("Segmenting", number, len(cases))
    if rows:
        write_text_atomic(out / "segmentation_scores.csv", scores_csv(rows))
    return summarise(out, cases=len(cases), rule=rule, chosen_by=chosen_by, rows=rows, sweep=sweep_record,
                     method=settings.method, version=__version__, failed=failed, unusable=unusable,
                     refine=settings.refine)


def write_segmentation(
    case_dir: Path, case_id: str, source: str, model: LoadedModel, mapped: ClassMap, truth: Volume | None, image: Volume, *,
    rule: ThresholdRule, chosen_by: str, settings: SegmentSettings, label: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, Volume]:
    """One case's segmentation, the one body ``medxai segment`` and the pipeline's segment stage share: cut the
    class map with ``rule`` (and ``settings``' refinement and post-processing), write ``heatmap.nii.gz``,
    ``mask.nii.gz`` and ``segmentation.json`` into ``case_dir``; return the record, the scores row (with a
    reference mask ``truth``, else None) and the mask."""
    from medxai.io.nifti import write_nifti

    mask, level = cut_mask(mapped, rule=rule, keep_largest=settings.keep_largest, fill=settings.fill_holes,
                           image=image, seed=settings.seed, refine=settings.refine,
                           refine_margin_mm=settings.refine_margin_mm)
    scores = overlap_scores(mask, truth) if truth is not None else None
    write_nifti(mapped.heatmap, case_dir / "heatmap.nii.gz", dtype=np.float32)
    write_nifti(mask, case_dir / "mask.nii.gz", dtype=np.uint8)
    record = case_record(case_id, model, mapped, mask, rule=rule, level=level, chosen_by=chosen_by,
                         settings=settings, scores=scores, voxel_ml=voxel_volume_ml(mask.affine), image=image)
    write_text_atomic(case_dir / "segmentation.json", _json({"case_id": case_id, "input": source, **record}))
    row = None if scores is None else {
        "case_id": case_id, "method": settings.method, "threshold": str(rule), "status": record["status"],
        "label": label or "", "predicted": mapped.predicted, "target": mapped.target, **scores}
    return record, row, mask


def _json(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload, indent=2, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
