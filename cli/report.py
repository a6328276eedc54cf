"""``medxai report CASE_DIR... -o report.pdf``: the radiologist's PDF of one case (or ``--summary`` of a run)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import console, options


def _split(values: List[str] | None) -> list[str] | None:
    names = [name.strip() for value in values or [] for name in value.split(",") if name.strip()]
    return names or None


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        case_dirs: List[Path] = typer.Argument(..., metavar="CASE_DIR", help="Folders of one case written by explain/score/segment/radiomics or a pipeline (a radiomics study folder may be added); with --summary, a run folder."),
        out_pdf: Path = options.out_option("The PDF to write."),
        scan: Optional[Path] = typer.Option(None, "--scan", help="The explained scan. Default: the scan `explain` recorded in CASE_DIR/explanations.json (its first channel; one DICOM series by its UID); give it when that scan has moved."),
        mask: Optional[Path] = typer.Option(None, "--mask", help="Reference lesion mask on the scan's grid: outline and views through the lesion."),
        model_dir: Optional[Path] = typer.Option(None, "--model", help="Model folder: architecture, validation AUC/F1, calibration."),
        scores: Optional[Path] = typer.Option(None, "--scores", help="A scores.csv (medxai score) holding this case's rows."),
        methods: Optional[List[str]] = typer.Option(None, "--methods", "--method", help="Methods to show (repeat or comma-separate; default: all found)."),
        include_identifiers: bool = typer.Option(False, "--include-identifiers", help="Print patient name and ID from the scan's DICOM header (off by default)."),
        page_size: str = typer.Option("A4", "--page-size", help="A4 or letter."),
        percentile: float = typer.Option(95.0, "--percentile", help="Show heatmap voxels whose |attribution| is above this percentile of |attribution| inside the body (weaker voxels are not drawn)."),
        window: Optional[str] = typer.Option(None, "--window", help="Grey window of every image: soft-tissue (W400 L40), lung (W1500 L-600), brain (W80 L40), bone (W1800 L400) or WIDTH,LEVEL. Default: a CT window from the scan's body part / series description (soft tissue if none); MR, PET and unknown modalities: 1st-99th percentile inside the body."),
        summary: bool = typer.Option(False, "--summary", help="Write the one-page cohort summary of a run folder instead."),
    ) -> None:
        """Write a PDF a radiologist can read in two minutes: prediction, trust in each heatmap, overlays, provenance."""
        if summary:
            from medxai.report.cohort import write_cohort_summary

            if len(case_dirs) != 1:
                raise typer.BadParameter("--summary takes exactly one run folder")
            write_cohort_summary(case_dirs[0], out_pdf, page_size=page_size)
            typer.echo(f"wrote {out_pdf}")
            return
        from medxai.report.pdf import report_case

        results = report_case(case_dirs, out_pdf, scan=scan, mask=mask, model_dir=model_dir, scores_csv=scores,
                              methods=_split(methods), include_identifiers=include_identifiers, page_size=page_size,
                              percentile=percentile, window=window)
        for warning in results.warnings:
            console.info(f"warning: {warning}")
        shown = ", ".join(m.name for m in results.methods) or "no heatmaps"
        console.info(f"case {results.case_id}: {shown}")
        typer.echo(f"wrote {out_pdf}")
