"""``medxai export-dicom CASE_DIR --source SCAN -o DIR``: a case's results as DICOM objects."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options


def register(app: typer.Typer) -> None:
    @app.command("export-dicom")
    def export_dicom(
        case_dir: Path = typer.Argument(..., metavar="CASE_DIR", help="A case folder written by explain, segment, radiomics --save-masks or a pipeline."),
        source: Path = typer.Option(..., "--source", help="The scan the case came from: a DICOM series (folder or multi-frame file), or a NIfTI/NRRD/MHA file with --patient-id, --patient-name and --modality."),
        out_dir: Path = options.out_option("Output folder: seg.dcm, pm-<method>.dcm, report-pdf.dcm, sr.dcm (and scan-0001.dcm... for a NIfTI source)."),
        series_uid: Optional[str] = typer.Option(None, "--series-uid", help="SeriesInstanceUID of the source series when the folder holds several."),
        patient_id: Optional[str] = typer.Option(None, "--patient-id", help="NIfTI source only: the Patient ID the new DICOM series carries."),
        patient_name: Optional[str] = typer.Option(None, "--patient-name", help="NIfTI source only: the Patient's Name (DICOM form, e.g. DOE^JANE)."),
        modality: Optional[str] = typer.Option(None, "--modality", help="NIfTI source only: CT or MR."),
        study_uid: Optional[str] = typer.Option(None, "--study-uid", help="NIfTI source only: StudyInstanceUID of the study to join (default: a new one derived from the scan and the identifiers)."),
        send: Optional[str] = typer.Option(None, "--send", help="Then store them in this DICOMweb service (dicomweb://HOST[:PORT]/PATH); instances it holds already are skipped."),
    ) -> None:
        """Write SEG (masks), Parametric Maps (heatmaps), Encapsulated PDF (report) and a TID 1500 SR into the source study."""
        from medxai.dicom_export.export import export_case, new_study

        study = new_study(source, patient_id=patient_id, patient_name=patient_name, modality=modality, study_uid=study_uid)
        if send is not None:
            from medxai.dicom_export.send import dicomweb_url

            dicomweb_url(send)  # a malformed address fails before any work
        written = export_case(case_dir, source, out_dir, series_uid=series_uid, study=study)
        slices = [path for path in written if path.name.startswith("scan-")]  # a NIfTI source's own series
        if slices:
            typer.echo(f"wrote {len(slices)} image(s) of the scan: {slices[0].parent}/scan-*.dcm")
        for path in written:
            if path not in slices:
                typer.echo(f"wrote {path}")
        if send is not None:
            from medxai.dicom_export.send import send_dicomweb

            report = send_dicomweb(written, send)
            typer.echo(f"sent {len(report.sent)} instance(s); {len(report.present)} already in the PACS")
