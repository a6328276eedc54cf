"""Write a :class:`CaseExplanation`: ``OUT/<case_id>/<method>.nii.gz`` (float32, the scan's affine) and
``OUT/<case_id>/explanations.json``.

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
from medxai.io.nifti import write_nifti

RECORD_NAME = "explanations.json"


def _write_files(explanation: CaseExplanation, folder: Path) -> None:
    for name, heatmap in explanation.heatmaps.items():
        write_nifti(heatmap.with_data(heatmap.data.astype(np.float32)), folder / f"{name}.nii.gz")
    write_text_atomic(folder / RECORD_NAME, json.dumps(explanation.record, indent=2) + "\n")


def write_case(explanation: CaseExplanation, out_dir: str | Path) -> Path:
    """Write the heatmaps and the record of one case under ``out_dir``; returns the case folder."""
    out_dir = Path(out_dir)
    folder = out_dir / explanation.case_id
    if folder.is_dir():
        _write_files(explanation, folder)
        return folder
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{explanation.case_id}.", suffix=".tmp", dir=out_dir))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        _write_files(explanation, staging)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
