"""``medxai export-dicom CASE_DIR --source DICOM_SERIES -o DIR``: a case's results as DICOM objects."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("export-dicom")
    def export_dicom(
        case_dir: Path = typer.Argument(..., metavar="CASE_DIR", help="A case folder written by explain, segment, radiomics --save-masks or a pipeline."),
        source: Path = typer.Option(..., "--source", help="The DICOM series the case came from (folder or multi-frame file)."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder: seg.dcm, pm-<method>.dcm, report-pdf.dcm, sr.dcm."),
        series_uid: Optional[str] = typer.Option(None, "--series-uid", help="SeriesInstanceUID of the source series when the folder holds several."),
        send: Optional[str] = typer.Option(None, "--send", help="Then store them in this DICOMweb service (dicomweb://HOST[:PORT]/PATH); instances it holds already are skipped."),
    ) -> None:
        """Write SEG (masks), Parametric Maps (heatmaps), Encapsulated PDF (report) and a TID 1500 SR into the source study."""
        from medxai.dicom_export.export import export_case

        if send is not None:
            from medxai.dicom_export.send import dicomweb_url

            dicomweb_url(send)  # a malformed address fails before any work
        written = export_case(case_dir, source, out_dir, series_uid=series_uid)
        for path in written:
            typer.echo(f"wrote {path}")
        if send is not None:
            from medxai.dicom_export.send import send_dicomweb

            report = send_dicomweb(written, send)
            typer.echo(f"sent {len(report.sent)} instance(s); {len(report.present)} already in the PACS")
