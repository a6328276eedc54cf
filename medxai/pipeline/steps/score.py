"""Score stage: faithfulness, robustness, sanity and (with an input mask) localisation of each method.

Per case :func:`medxai.metrics.scoring.score_case`, on the channels and mask the scan stage read, writes
``OUT/<case_id>/scores.csv`` (the ``medxai score`` columns); at the end ``OUT/scores.csv`` holds every done
case (one row per case x method).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, TYPE_CHECKING

from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext
from medxai.pipeline.steps.checks import check_methods, check_target
from medxai.pipeline.tables import merge_case_tables

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

SCORES = "scores.csv"


def methods_of(pipeline: Pipeline) -> list[str]:
    return list(pipeline["score"]["methods"] or pipeline["explain"]["methods"])


def check(pipeline: Pipeline, model: LoadedModel, cases: Sequence[Case]) -> None:
    key = "score.methods" if pipeline["score"]["methods"] else "explain.methods"
    check_methods(pipeline, key, methods_of(pipeline))
    check_target(pipeline, "score.target", pipeline["score"]["target"], model)


def reusable_explanation(context: CaseContext) -> Any:
    """The explain stage's explanation of this case when it is the one scoring needs (the same methods, class
    target and seed), else None: each heatmap is computed once per case."""
    explanation = context.results.get("explanation")
    explain, score = context.pipeline["explain"], context.pipeline["score"]
    if explanation is None or (explain["target"], explain["seed"]) != (score["target"], score["seed"]):
        return None
    methods = methods_of(context.pipeline)
    if sorted(methods) != sorted([*explanation.heatmaps, *explanation.failed]):
        return None
    return explanation


def run(context: CaseContext) -> None:
    from medxai.metrics.model_grid import ScoreSettings
    from medxai.metrics.scoring import score_case, score_columns, score_explained, write_scores_csv

    options = context.pipeline["score"]
    settings = ScoreSettings(tolerance_mm=float(options["tolerance_mm"]), sanity_threshold=float(options["sanity_threshold"]),
                             sensitivity=options["sensitivity"], sanity=options["sanity"])
    explanation = reusable_explanation(context)
    if explanation is None:
        rows = score_case(context.model, context.channels, methods=methods_of(context.pipeline), mask=context.mask,
                          seed=options["seed"], target=options["target"], settings=settings, case_id=context.case.case_id)
    else:
        rows = score_explained(context.model, context.channels, explanation, mask=context.mask, seed=options["seed"],
                               settings=settings)
    rows = [{**row, "input": context.case.source} for row in rows]
    write_scores_csv(rows, context.case_dir / SCORES, columns=score_columns(settings, with_mask=context.mask is not None))


def finish(pipeline: Pipeline, out_dir: Path, done: Sequence[str]) -> None:
    merge_case_tables(out_dir, done, SCORES)
