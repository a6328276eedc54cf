"""The ``dicom`` pipeline stage: the DICOM objects of each case into ``OUT/<case_id>/dicom/``.

It runs after the other stages (it exports what they wrote into the case folder) and needs a DICOM series
input; a case read from NIfTI/NRRD fails with that reason. Turned on by ``dicom.enabled`` (and by
``medxai run --send``, whose sending the runner does once the case folder is in OUT, never this stage).
"""
from __future__ import annotations

from medxai.dicom_export.export import export_case
from medxai.pipeline.stages import CaseContext

FOLDER = "dicom"


def run(context: CaseContext) -> None:
    """Export the case folder against the case's input series (its first channel)."""
    case = context.case
    export_case(context.case_dir, case.image, context.case_dir / FOLDER, series_uid=case.series_uid)
