"""Segment stage: a weakly-supervised lesion mask cut from the class heatmap (Chatterjee et al.).

The same per-case body as ``medxai segment`` (:func:`medxai.segmentation.segment.write_segmentation`) with the
same defaults (the model's saved ``threshold.json`` rule and refinement, else the default rule and
``refine: auto``): the target-class map (the model's own heatmaps, or a post-hoc method), thresholded and
written on the scan's own grid. Writes ``OUT/<case_id>/{mask,heatmap}.nii.gz`` and ``segmentation.json``; with an input mask also
``segmentation_scores.csv`` (Dice, IoU, HD95), merged into ``OUT/segmentation_scores.csv`` at the end.
The mask is left in ``context.results["segment_mask"]`` for the radiomics stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, TYPE_CHECKING

from medxai.errors import ConfigError
from medxai.io.atomic import write_text_atomic
from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext
from medxai.pipeline.steps.checks import check_methods, check_target
from medxai.pipeline.tables import merge_case_tables

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel
    from medxai.segmentation.segment import SegmentSettings

SCORES = "segmentation_scores.csv"


def settings_of(pipeline: Pipeline, model: LoadedModel) -> SegmentSettings:
    """The segment section as :class:`SegmentSettings` (as ``medxai segment`` takes its options): a rule, or
    None for the model's saved ``threshold.json`` rule else the default; ``refine: auto`` likewise."""
    from medxai.segmentation.refine import check_refiner
    from medxai.segmentation.segment import AUTO, SegmentSettings
    from medxai.segmentation.threshold import parse_threshold

    options = pipeline["segment"]
    refine = None if options["refine"] == "none" else options["refine"]
    try:
        rule = None if options["threshold"] is None else parse_threshold(options["threshold"])
    except ConfigError as error:
        raise ConfigError(f"key 'segment.threshold': {error.problem}", path=pipeline.source) from None
    try:
        if refine != AUTO:
            check_refiner(refine)
    except ConfigError as error:
        raise ConfigError(f"key 'segment.refine': {error.problem}", path=pipeline.source) from None
    negative = options["negative_class"] if options["negative_class"] in model.classes else None
    return SegmentSettings(rule=rule, method=options["method"], target=options["target"], negative_class=negative,
                           keep_largest=options["keep_largest"], fill_holes=options["fill_holes"], seed=options["seed"],
                           refine=refine, refine_margin_mm=float(options["refine_margin_mm"]))


def check(pipeline: Pipeline, model: LoadedModel, cases: Sequence[Case]) -> None:
    from medxai.models.weakseg import has_heatmaps
    from medxai.segmentation.heatmaps import OWN
    from medxai.segmentation.sweep import read_saved_threshold

    settings = settings_of(pipeline, model)
    if settings.method == OWN and not has_heatmaps(model.network):
        raise ConfigError(f"key 'segment.method': 'own' needs a model with its own class heatmaps (gp-unet, "
                          f"gp-shuffleunet, gp-reconresnet); this one is {model.arch!r}: use a post-hoc method",
                          path=pipeline.source)
    if settings.method != OWN:
        check_methods(pipeline, "segment.method", [settings.method])
    check_target(pipeline, "segment.target", settings.target, model)
    read_saved_threshold(pipeline["model"]["path"], weights_sha256=model.sha256)  # a broken record: before any case


def run(context: CaseContext) -> None:
    from medxai.segmentation.heatmaps import class_map
    from medxai.segmentation.reporting import scores_csv
    from medxai.segmentation.segment import resolve_settings, write_segmentation
    from medxai.segmentation.sweep import read_saved_threshold

    model, case, folder = context.model, context.case, context.case_dir
    saved = read_saved_threshold(context.pipeline["model"]["path"], weights_sha256=model.sha256)
    settings, rule, chosen_by = resolve_settings(settings_of(context.pipeline, model), saved)
    mapped = class_map(model, context.channels, method=settings.method, target=settings.target,
                       negative_class=settings.negative_class, seed=settings.seed)
    _, row, mask = write_segmentation(folder, case.case_id, case.source, model, mapped, context.mask, context.channels[0],
                                      rule=rule, chosen_by=chosen_by, settings=settings, label=case.label)
    if row is not None:
        write_text_atomic(folder / SCORES, scores_csv([row]))
    context.results["segment_mask"] = None if mapped.empty_reason else mask


def finish(pipeline: Pipeline, out_dir: Path, done: Sequence[str]) -> None:
    merge_case_tables(out_dir, done, SCORES)
