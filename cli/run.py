"""``medxai run PIPELINE.yaml --input IN -o OUT``: a batch pipeline, resumable, on local workers or Dask."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medxai.errors import UsageError

from . import console, options


def register(app: typer.Typer) -> None:
    from medxai.pipeline.shipped import shipped_pipelines

    shipped = ", ".join(sorted(shipped_pipelines())) or "none installed"

    @app.command("run")
    def run_command(
        pipeline: str = typer.Argument(..., metavar="PIPELINE", help=f"Pipeline YAML file, or the name of a shipped one: {shipped}."),
        input_path: str = typer.Option(..., "--input", "-i", metavar="IN", help="Folder of scans, CSV manifest, nnU-Net dataset folder, or a "
                                       "study in a PACS: dicomweb://HOST[:PORT]/PATH?StudyInstanceUID=UID[&SeriesInstanceUID=UID]."),
        out: Path = options.out_option("Output folder: OUT/<case_id>/ per case and OUT/manifest.csv."),
        workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Local worker processes [default: 1]."),
        resume: bool = typer.Option(False, "--resume", help="Keep cases already done in OUT; redo the others."),
        overrides: list[str] = typer.Option([], "--set", help="Override a pipeline key: section.key=value (repeatable)."),
        dask_scheduler: Optional[str] = typer.Option(None, "--dask-scheduler", help="Run on the Dask cluster at this address."),
        dask_local: Optional[int] = typer.Option(None, "--dask-local", min=1, help="Run on a new local Dask cluster of N workers."),
        json_output: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
        send: Optional[str] = typer.Option(None, "--send", metavar="URL", help="Store each case's DICOM outputs in this DICOMweb service "
                                           "(dicomweb://HOST[:PORT]/PATH); turns the dicom stage on."),
    ) -> None:
        """Run a pipeline over every case of IN; per-case status in OUT/manifest.csv (exit 3 if any failed)."""
        from medxai.dicom_export.pacs import is_pacs_address
        from medxai.pipeline.runner import run_pipeline
        from medxai.pipeline.schema import load_pipeline

        if dask_scheduler is not None and dask_local is not None:
            raise UsageError("--dask-scheduler and --dask-local are alternatives; give one")
        if workers is not None and (dask_scheduler is not None or dask_local is not None):
            raise UsageError("--workers is for local runs; a Dask cluster's size is set by the cluster")
        if send is not None:  # --send sends the dicom stage's outputs: it turns that stage on
            overrides = [*overrides, "dicom.enabled=true"]
        config = load_pipeline(pipeline, overrides=overrides)
        with console.progress() as callback:
            summary = run_pipeline(config, input_path=input_path if is_pacs_address(input_path) else Path(input_path),
                                   out_dir=out, workers=workers or 1, resume=resume, dask_scheduler=dask_scheduler,
                                   dask_local=dask_local, progress=callback, send=send)
        counts = {"done": len(summary.done), "failed": len(summary.failed), "skipped": len(summary.skipped)}
        if json_output:
            console.print_json({**counts, "reused": len(summary.reused), "sent": len(summary.sent), "seconds": summary.seconds,
                                "out": str(summary.out_dir), "manifest": str(summary.manifest),
                                "failed_cases": summary.failed, "model_loads": summary.model_loads})
        else:
            sent = f", {len(summary.sent)} sent to the PACS" if send is not None else ""
            typer.echo(f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped{sent} "
                       f"in {summary.seconds:.1f} s; per-case status in {summary.manifest}")
        summary.raise_for_failures()
