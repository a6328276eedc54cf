"""Write a :class:`CaseExplanation`: ``OUT/<case_id>/<method>.nii.gz`` (float32, the scan's affine),
``OUT/<case_id>/explanations.json`` and ``OUT/<case_id>/input.json`` (the input the folder belongs to, see
:func:`medxai.io.naming.check_case_folder`).

A new case folder is built in a hidden sibling and renamed into place, so a crash leaves no half-written
folder; in an existing case folder (other commands may have written there) each file is replaced
atomically and ``explanations.json`` last.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from medxai.attribution.engine import CaseExplanation
from medxai.io.atomic import write_text_atomic
from medxai.io.naming import record_case_input
from medxai.io.nifti import write_nifti

RECORD_NAME = "explanations.json"


def _write_files(explanation: CaseExplanation, folder: Path, source: str | None) -> None:
    if source is not None:
        record_case_input(folder, explanation.case_id, source)
    for name, heatmap in explanation.heatmaps.items():
        write_nifti(heatmap.with_data(heatmap.data.astype(np.float32)), folder / f"{name}.nii.gz")
    record = {"case_id": explanation.case_id, **({"input": source} if source is not None else {}), **explanation.record}
    write_text_atomic(folder / RECORD_NAME, json.dumps(record, indent=2) + "\n")


def write_case(explanation: CaseExplanation, out_dir: str | Path, *, source: str | None = None) -> Path:
    """Write the heatmaps and the record of one case under ``out_dir``; returns the case folder. ``source``
    is the input the case came from (:func:`medxai.io.naming.input_label`), recorded in its files (every
    command passes it)."""
    out_dir = Path(out_dir)
    folder = out_dir / explanation.case_id
    if folder.is_dir():
        _write_files(explanation, folder, source)
        return folder
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{explanation.case_id}.", suffix=".tmp", dir=out_dir))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        _write_files(explanation, staging, source)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
