"""A case that kills its worker process fails alone: the pool is rebuilt and the other cases complete."""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np

from medxai.pipeline import schema, stages
from medxai.pipeline.runner import run_pipeline
from medxai.pipeline.schema import load_pipeline
from medxai.pipeline.stages import StageSpec, register_stage

CRASH_STAGE = '''
import os
from pathlib import Path


def run(context):
    if context.case.case_id == "boom":
        with open(Path(context.case.image).parent.parent / "attempts.txt", "a") as handle:
            handle.write("attempt\\n")
        os._exit(7)                       # what a segfault or the out-of-memory killer does to a worker
    Path(context.case_dir, "visited.txt").write_text(context.case.case_id)
'''


def test_a_crashing_case_is_retried_once_then_failed_and_the_others_complete(tmp_path, monkeypatch):
    module = tmp_path / "plugins" / "medxai_test_crash_stage.py"
    module.parent.mkdir()
    module.write_text(CRASH_STAGE)
    monkeypatch.syspath_prepend(str(module.parent))          # spawned workers inherit sys.path
    monkeypatch.setattr(stages, "STAGES", list(stages.STAGES))
    monkeypatch.setattr(schema, "SECTIONS", dict(schema.SECTIONS))
    register_stage(StageSpec("crashy", "medxai_test_crash_stage:run", needs_model=False), keys={})
    scans = tmp_path / "scans"
    scans.mkdir()
    for index, name in enumerate(["alpha", "boom", "omega"]):
        nib.save(nib.Nifti1Image(np.full((6, 6, 6), index, np.float32), np.diag([1.0, 2.0, 3.0, 1.0])), str(scans / f"{name}.nii.gz"))
    pipeline_file = tmp_path / "p.yaml"
    pipeline_file.write_text("crashy:\n  enabled: true\n")

    summary = run_pipeline(load_pipeline(pipeline_file), input_path=scans, out_dir=tmp_path / "out", workers=1)

    assert sorted(summary.done) == ["alpha", "omega"]
    assert summary.failed == ["boom"]
    assert (tmp_path / "attempts.txt").read_text().count("attempt") == 2    # retried once in a fresh pool
    with (tmp_path / "out" / "manifest.csv").open(newline="") as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert rows["boom"]["status"] == "failed" and "worker process died" in rows["boom"]["error"]
    assert (tmp_path / "out" / "omega" / "visited.txt").read_text() == "omega"
    assert not (tmp_path / "out" / "boom").exists()
