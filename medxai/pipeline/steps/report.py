"""Report stage: the radiologist's PDF per case and the one-page cohort summary at the end (issue 8).

Per case :func:`medxai.report.loader.load_case` gathers what the earlier stages wrote into the case folder
(prediction, heatmaps, scores, segmentation, radiomics) and :func:`medxai.report.pdf.write_case_report`
writes ``OUT/<case_id>/report.pdf``; after the last case :func:`medxai.report.cohort.write_cohort_summary`
writes ``OUT/summary.pdf`` from ``OUT/manifest.csv`` (failed cases listed with their reasons). Reports of
a batch never carry patient identifiers (``medxai report --include-identifiers`` does, one case at a time).
PDFs carry their creation time, so they are the one output that differs between two identical runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, TYPE_CHECKING

from medxai.errors import ConfigError
from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

CASE_REPORT = "report.pdf"
SUMMARY = "summary.pdf"


def check(pipeline: Pipeline, model: LoadedModel | None, cases: Sequence[Case]) -> None:
    from medxai.report.layout import page_size

    options = pipeline["report"]
    try:
        page_size(options["page_size"])
    except ConfigError as error:
        raise ConfigError(f"key 'report.page_size': {error.problem}", path=pipeline.source) from None
    if not 0 <= options["percentile"] < 100:
        raise ConfigError("key 'report.percentile': expected a value in [0, 100)", path=pipeline.source)
    if options["window"] is not None:
        from medxai.report.windows import parse_window

        try:
            parse_window(options["window"])
        except ConfigError as error:
            raise ConfigError(f"key 'report.window': {error.problem}", path=pipeline.source) from None


def run(context: CaseContext) -> None:
    from medxai.report.loader import load_case
    from medxai.report.pdf import write_case_report

    options = context.pipeline["report"]
    if not options["case_pdf"]:
        return
    model_path = context.pipeline["model"]["path"]
    results = load_case([context.case_dir], scan=context.scan, mask=context.mask,
                        model_dir=model_path if context.model is not None else None)
    write_case_report(results, context.case_dir / CASE_REPORT, page_size=options["page_size"],
                      percentile=float(options["percentile"]), window=options["window"])


def finish(pipeline: Pipeline, out_dir: Path, done: Sequence[str]) -> None:
    from medxai.report.cohort import write_cohort_summary

    options = pipeline["report"]
    if options["cohort_summary"]:
        write_cohort_summary(out_dir, out_dir / SUMMARY, page_size=options["page_size"])
