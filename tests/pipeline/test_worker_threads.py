"""Worker processes share the cores this job may use, not the machine's."""
from __future__ import annotations

import os

import pytest

from medxai.pipeline import runner


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_usable_cores_follow_the_affinity_and_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3, 5})  # e.g. taskset -c 2,3,5
    assert runner.usable_cores() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runner.usable_cores() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # more threads than cores are not used
    assert runner.usable_cores() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert runner.usable_cores() == 3


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_the_runner_gives_each_worker_its_share_of_the_usable_cores(monkeypatch, tmp_path):
    """What ``medxai run`` hands its workers (``WorkerSetup.torch_threads``), for a radiomics-only pipeline."""
    from medxai.pipeline.inputs import Case
    from medxai.pipeline.schema import load_pipeline
    from medxai.pipeline.stages import active_stages

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    pipeline = load_pipeline("radiomics-peritumoral")
    stages = active_stages(pipeline)
    cases = [Case("case_1", tmp_path / "image.nii.gz", mask=tmp_path / "mask.nii.gz")]
    assert runner._preflight(pipeline, stages, cases, workers=2, remote=False).torch_threads == 4
    assert runner._preflight(pipeline, stages, cases, workers=16, remote=False).torch_threads == 1
    assert runner._preflight(pipeline, stages, cases, workers=2, remote=True).torch_threads == 1
