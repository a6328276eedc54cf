"""Segment stage: a weakly-supervised lesion mask cut from the class heatmap (Chatterjee et al.).

The same steps as ``medxai segment`` for one case (:mod:`medxai.segmentation`): the target-class map
(the model's own heatmaps, or a post-hoc method), thresholded on the model grid and applied on the scan's
own grid. Writes ``OUT/<case_id>/{mask,heatmap}.nii.gz`` and ``segmentation.json``; with an input mask also
``segmentation_scores.csv`` (Dice, IoU, HD95), merged into ``OUT/segmentation_scores.csv`` at the end.
The mask is left in ``context.results["segment_mask"]`` for the radiomics stage.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medxai.errors import ConfigError
from medxai.io.atomic import write_text_atomic
from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext
from medxai.pipeline.steps.checks import check_methods, check_target
from medxai.pipeline.tables import merge_case_tables

SCORES = "segmentation_scores.csv"


def settings_of(pipeline: Pipeline, model: Any) -> Any:
    from medxai.segmentation.segment import SegmentSettings
    from medxai.segmentation.threshold import parse_threshold

    options = pipeline["segment"]
    try:
        rule = parse_threshold(options["threshold"])
    except ConfigError as error:
        raise ConfigError(f"key 'segment.threshold': {error.problem}", path=pipeline.source) from None
    negative = options["negative_class"] if options["negative_class"] in model.classes else None
    return SegmentSettings(rule=rule, method=options["method"], target=options["target"], negative_class=negative,
                           keep_largest=options["keep_largest"], fill_holes=options["fill_holes"], seed=options["seed"])


def check(pipeline: Pipeline, model: Any, cases: Sequence[Case]) -> None:
    from medxai.models.weakseg import has_heatmaps
    from medxai.segmentation.heatmaps import OWN

    settings = settings_of(pipeline, model)
    if settings.method == OWN and not has_heatmaps(model.network):
        raise ConfigError(f"key 'segment.method': 'own' needs a model with its own class heatmaps (gp-unet, "
                          f"gp-shuffleunet, gp-reconresnet); this one is {model.arch!r}: use a post-hoc method",
                          path=pipeline.source)
    if settings.method != OWN:
        check_methods(pipeline, "segment.method", [settings.method])
    check_target(pipeline, "segment.target", settings.target, model)


def run(context: CaseContext) -> None:
    from medxai.io.nifti import write_nifti
    from medxai.segmentation.heatmaps import class_map
    from medxai.segmentation.overlap import overlap_scores, voxel_volume_ml
    from medxai.segmentation.reporting import case_record, scores_csv
    from medxai.segmentation.segment import cut_mask

    model, case, folder = context.model, context.case, context.case_dir
    settings = settings_of(context.pipeline, model)
    mapped = class_map(model, context.channels, method=settings.method, target=settings.target,
                       negative_class=settings.negative_class, seed=settings.seed)
    mask, level = cut_mask(mapped, rule=settings.rule, keep_largest=settings.keep_largest, fill=settings.fill_holes)
    scores = overlap_scores(mask, context.mask) if context.mask is not None else None
    write_nifti(mapped.heatmap, folder / "heatmap.nii.gz", dtype=np.float32)
    write_nifti(mask, folder / "mask.nii.gz", dtype=np.uint8)
    record = case_record(case.case_id, model, mapped, mask, rule=settings.rule, level=level, chosen_by="option",
                         settings=settings, scores=scores, voxel_ml=voxel_volume_ml(mask.affine), image=context.channels[0])
    record = {"case_id": case.case_id, "input": case.source, **record}
    write_text_atomic(folder / "segmentation.json", json.dumps(record, indent=2, default=_plain) + "\n")
    if scores is not None:
        row = {"case_id": case.case_id, "method": settings.method, "threshold": str(settings.rule), "status": record["status"],
               "label": case.label or "", "predicted": mapped.predicted, "target": mapped.target, **scores}
        write_text_atomic(folder / SCORES, scores_csv([row]))
    context.results["segment_mask"] = None if mapped.empty_reason else mask


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, (np.floating, np.integer)) else str(value)


def finish(pipeline: Pipeline, out_dir: Path, done: Sequence[str]) -> None:
    merge_case_tables(out_dir, done, SCORES)
