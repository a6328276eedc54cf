"""``medxai run`` with real model stages: kill -9 then --resume equals an uninterrupted run, the Dask path
equals the local one, the model loads once per worker, and each stage equals its stand-alone command."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

PIPELINE = """
model:
  path: {model}
  predict: true
explain:
  enabled: true
  methods: [saliency, smoothgrad]
  seed: 3
  batch_size: 4
segment:
  enabled: true
  method: saliency
  threshold: otsu
radiomics:
  enabled: true
  mask: input
  expansions: [0, 2]
report:
  enabled: true
"""
TIMINGS = ("started", "finished", "seconds")
# Provenance in explanations.json that differs between two identical runs: when and how fast it ran.
VOLATILE = ("date", "wall_s", "peak_rss_mib", "peak_cuda_mib")


def without_volatile(value):
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    return value


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A seeded tiny classifier (untrained: these tests check the batch machinery, not accuracy) and a
    small phantom cohort on mixed grids (oblique, anisotropic, flipped) with lesion masks."""
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network
    from medxai.synthetic import make_cohort

    root = tmp_path_factory.mktemp("pipeline-model")
    make_cohort(root / "cohort", cases=4, seed=3, size=32)
    torch.manual_seed(0)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(16, 16, 16))
    save_model_dir(root / "model", network=network, arch="tiny", classes=["lesion", "normal"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(16, 16, 16)), training={"seeded": 0}, metrics={})
    pipeline = root / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(model=root / "model"))
    return root


def digests(out: Path) -> dict[str, str]:
    """sha256 of every file under OUT; manifest.csv without its timing columns, explanations.json without
    its date and per-method time and memory; PDFs (which print their creation time) by their page count."""
    from pypdf import PdfReader

    result = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = str(path.relative_to(out))
        if path.suffix == ".pdf":
            result[name] = f"pdf with {len(PdfReader(path).pages)} pages"
        elif path.name == "explanations.json":
            record = without_volatile(json.loads(path.read_text()))
            result[name] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        elif name == "manifest.csv":
            with path.open(newline="") as handle:
                rows = [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(handle)]
            result[name] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
        else:
            result[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def done_rows(out: Path) -> int:
    try:
        with (out / "manifest.csv").open(newline="") as handle:
            return sum(row["status"] == "done" for row in csv.DictReader(handle))
    except (FileNotFoundError, KeyError):
        return 0


@pytest.mark.slow  # three runs, each spawning a worker that imports torch: ~30 s of CPU
def test_killed_run_resumes_to_the_same_outputs_and_a_second_run_is_locked_out(workspace, cli):
    pipeline, cohort = workspace / "pipeline.yaml", workspace / "cohort"
    reference = workspace / "uninterrupted"
    assert cli("run", pipeline, "--input", cohort, "-o", reference).exit_code == 0

    out = workspace / "killed"
    process = subprocess.Popen([sys.executable, "-m", "medxai", "run", str(pipeline), "--input", str(cohort), "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while done_rows(out) < 1:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no case finished in time"
            time.sleep(0.02)
        second = cli("run", pipeline, "--input", cohort, "-o", out, "--resume")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert second.exit_code == 4 and f"locked by pid {process.pid}" in second.stderr, second.stderr
    interrupted = done_rows(out)
    assert 1 <= interrupted < 4, "the run must be killed mid-way for this test to mean anything"
    assert not (out / "features.csv").exists()                     # cohort tables come at the end only

    resumed = cli("run", pipeline, "--input", cohort, "-o", out, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["reused"] == interrupted
    assert not (out / ".work").exists()
    assert digests(out) == digests(reference)
    assert len(digests(reference)) > 10 and "summary.pdf" in digests(reference)


@pytest.mark.slow  # a LocalCluster and a local pool, two workers each: ~30 s of CPU
def test_dask_local_cluster_gives_the_local_outputs_and_loads_the_model_once_per_worker(workspace, cli):
    pipeline, cohort = workspace / "pipeline.yaml", workspace / "cohort"
    local = cli("run", pipeline, "--input", cohort, "-o", workspace / "local", "--workers", "2", "--json")
    dask = cli("run", pipeline, "--input", cohort, "-o", workspace / "dask", "--dask-local", "2", "--json")
    assert local.exit_code == 0 and dask.exit_code == 0, (local.stderr, dask.stderr)
    assert digests(workspace / "local") == digests(workspace / "dask")
    for result in (local, dask):
        loads = json.loads(result.stdout)["model_loads"]
        assert 1 <= len(loads) <= 2 and set(loads.values()) == {1}, loads   # 4 cases, one load per worker


def test_stages_equal_their_standalone_commands(workspace, cli, tmp_path):
    from medxai.radiomics.batch import process_case
    from medxai.radiomics.cases import CaseSpec, ExtractionOptions

    with (workspace / "cohort" / "labels.csv").open(newline="") as handle:
        case = next(row for row in csv.DictReader(handle) if row["mask"])
    image = workspace / "cohort" / case["image"]
    manifest = tmp_path / "one.csv"                                    # a one-case CSV manifest, paths relative to it
    manifest.write_text(f"case_id,image,mask\n{case['case_id']},{os.path.relpath(image, tmp_path)},"
                        f"{os.path.relpath(workspace / 'cohort' / case['mask'], tmp_path)}\n")
    out = tmp_path / "out"
    run = cli("run", workspace / "pipeline.yaml", "--input", manifest, "-o", out)
    assert run.exit_code == 0, run.stderr

    predicted = cli("predict", workspace / "model", image, "-o", tmp_path / "preds.csv")
    assert predicted.exit_code == 0, predicted.stderr
    assert (out / "preds.csv").read_text() == (tmp_path / "preds.csv").read_text()
    record = json.loads((out / case["case_id"] / "prediction.json").read_text())
    with (tmp_path / "preds.csv").open(newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert record["prediction"] == row["prediction"]
    assert {f"p_{k}": f"{v:.6f}" for k, v in record["probabilities"].items()} == {k: v for k, v in row.items() if k.startswith("p_")}

    explained = cli("explain", workspace / "model", image, "-o", tmp_path / "explain", "-m", "saliency", "-m", "smoothgrad",
                    "--seed", "3", "--batch-size", "4", "--device", "cpu")
    assert explained.exit_code == 0, explained.stderr
    for method in ("saliency", "smoothgrad"):
        ours, theirs = nib.load(out / case["case_id"] / f"{method}.nii.gz"), nib.load(tmp_path / "explain" / case["case_id"] / f"{method}.nii.gz")
        assert np.array_equal(ours.get_fdata(), theirs.get_fdata()) and np.array_equal(ours.affine, theirs.affine)
        assert np.array_equal(ours.affine, nib.load(image).affine)
    assert without_volatile(json.loads((out / case["case_id"] / "explanations.json").read_text())) == \
        without_volatile(json.loads((tmp_path / "explain" / case["case_id"] / "explanations.json").read_text()))

    standalone = cli("segment", workspace / "model", image, "-o", tmp_path / "seg", "--method", "saliency",
                     "--threshold", "otsu")
    assert standalone.exit_code == 0, standalone.stderr
    for name in ("mask.nii.gz", "heatmap.nii.gz"):
        ours, theirs = nib.load(out / case["case_id"] / name), nib.load(tmp_path / "seg" / case["case_id"] / name)
        assert np.array_equal(ours.get_fdata(), theirs.get_fdata())
        assert np.array_equal(ours.affine, nib.load(image).affine)     # on the scan's own grid
    ours_record = json.loads((out / case["case_id"] / "segmentation.json").read_text())
    theirs_record = json.loads((tmp_path / "seg" / case["case_id"] / "segmentation.json").read_text())
    assert {k: v for k, v in ours_record.items() if k != "scores"} == {k: v for k, v in theirs_record.items() if k != "scores"}
    assert ours_record["scores"]["dice"] >= 0                          # scored against the input mask

    rows = process_case(CaseSpec(case_id=case["case_id"], image=image, mask=workspace / "cohort" / case["mask"]),
                        ExtractionOptions(params="ct", distances_mm=(0.0, 2.0)))
    with (out / case["case_id"] / "features.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["region"], float(r["distance_mm"])) for r in table] == [(r["region"], r["distance_mm"]) for r in rows]
    for ours_row, row in zip(table, rows):
        assert float(ours_row["original_firstorder_Mean"]) == pytest.approx(float(row["original_firstorder_Mean"]), rel=1e-9)
        assert float(ours_row["original_shape_VoxelVolume"]) == float(row["original_shape_VoxelVolume"])
    assert (out / "features.csv").read_text() == (out / case["case_id"] / "features.csv").read_text()
    from pypdf import PdfReader

    text = PdfReader(out / case["case_id"] / "report.pdf").pages[0].extract_text()
    assert case["case_id"] in text and record["prediction"] in text
    assert "Failures" in PdfReader(out / "summary.pdf").pages[0].extract_text()
