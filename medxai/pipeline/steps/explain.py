"""Explain stage: attribution heatmaps of the case on the scan's own grid, as ``medxai explain`` writes them.

:func:`medxai.attribution.engine.explain_case` explains the channels the scan stage read (a DICOM folder's
series is the case's own, nothing is read again) with every method of ``explain.methods`` (seeded, with an
explicit batch size so results do not depend on free memory) and :func:`medxai.attribution.writer.write_case`
writes ``OUT/<case_id>/<method>.nii.gz`` and ``explanations.json``. A case where any method fails (out of
memory, non-finite map) fails as a whole with the methods' reasons, and ``--resume`` redoes it.
``explanations.json`` records its date, each method's wall time and peak memory, and the SHA-256 of each
input channel's voxels and affine (provenance).
"""
from __future__ import annotations

from typing import Sequence, TYPE_CHECKING

from medxai.errors import ConfigError, MedxaiError
from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext
from medxai.pipeline.steps.checks import check_methods

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel


def check(pipeline: Pipeline, model: LoadedModel, cases: Sequence[Case]) -> None:
    from medxai.attribution.engine import parse_target

    options = pipeline["explain"]
    check_methods(pipeline, "explain.methods", options["methods"])
    if options["time_budget"] is not None and not options["time_budget"] > 0:
        raise ConfigError(f"key 'explain.time_budget': expected a positive number of seconds, got {options['time_budget']}",
                          path=pipeline.source)
    try:
        parse_target(options["target"], model.classes)
    except ConfigError as error:
        raise ConfigError(f"key 'explain.target': {error.problem}", path=pipeline.source) from None


def run(context: CaseContext) -> None:
    from medxai.attribution.engine import explain_case
    from medxai.attribution.writer import write_case

    options, case = context.pipeline["explain"], context.case
    explanation = explain_case(context.model, context.channels, methods=options["methods"],
                               target=options["target"], seed=options["seed"], batch_size=options["batch_size"],
                               case_id=case.case_id, time_budget=options["time_budget"])
    if explanation.failed:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in explanation.failed.items())
        raise MedxaiError(f"attribution failed ({reasons})")
    write_case(explanation, context.case_dir.parent, source=case.source)
    context.results["explanation"] = explanation  # the score stage scores these heatmaps, not new ones
