"""``medxai run`` with real model stages: kill -9 then --resume equals an uninterrupted run, the Dask path
equals the local one, the model loads once per worker, each stage equals its stand-alone command, and each
series of a DICOM folder holding several is explained as itself."""
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
SCORE_PIPELINE = """
model:
  path: {model}
score:
  enabled: true
  methods: [saliency, gradcam]
  seed: 2
"""
EXPLAIN_PIPELINE = """
model:
  path: {model}
explain:
  enabled: true
  methods: [saliency]
  seed: 1
  batch_size: 4
"""
TIMINGS = ("started", "finished", "seconds")
# Provenance in explanations.json that differs between two identical runs: when and how fast it ran (and
# the time estimate, from a pass timed on this machine).
VOLATILE = ("date", "wall_s", "peak_rss_mib", "peak_cuda_mib", "actual_seconds", "estimated_seconds", "pass_seconds")


def without_volatile(value):
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    return value


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A seeded tiny classifier (untrained: these tests check the batch machinery, not accuracy) and a
    small phantom cohort on mixed grids (oblique, anisotropic, flipped) with lesion masks."""
    from medxai.synthetic import make_cohort
    from medxai.testing.tiny_model import save_tiny_classifier

    root = tmp_path_factory.mktemp("pipeline-model")
    make_cohort(root / "cohort", cases=4, seed=3, size=32)
    save_tiny_classifier(root / "model")
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


# In the default run (issue 24: kill -9 + --resume and two runs on one OUT stay tested): ~30 s of CPU.
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
    from medxai.attribution.provenance import HASHED_FILE, HASHED_VOXELS, input_sha256, volume_sha256
    from medxai.io.readers import read_volume
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
    ours_record = without_volatile(json.loads((out / case["case_id"] / "explanations.json").read_text()))
    theirs_record = without_volatile(json.loads((tmp_path / "explain" / case["case_id"] / "explanations.json").read_text()))
    # the pipeline explains the scan it read (hashing its voxels and affine), the command the file (hashing it)
    assert ours_record.pop("inputs") == [{"channel": 0, "sha256": volume_sha256(read_volume(image)), "hashed": HASHED_VOXELS}]
    assert theirs_record.pop("inputs") == [{"channel": 0, "sha256": input_sha256(image), "hashed": HASHED_FILE}]
    assert ours_record == theirs_record

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
    truth = nib.load(workspace / "cohort" / case["mask"]).get_fdata() > 0   # scored against the input mask
    found = nib.load(out / case["case_id"] / "mask.nii.gz").get_fdata() > 0
    assert ours_record["scores"]["dice"] == pytest.approx(2 * (truth & found).sum() / (truth.sum() + found.sum()))

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


def test_score_stage_equals_medxai_score(workspace, cli, tmp_path):
    with (workspace / "cohort" / "labels.csv").open(newline="") as handle:
        case = next(row for row in csv.DictReader(handle) if row["mask"])
    image, mask = workspace / "cohort" / case["image"], workspace / "cohort" / case["mask"]
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"case_id,image,mask\n{case['case_id']},{image},{mask}\n")
    pipeline = tmp_path / "score.yaml"
    pipeline.write_text(SCORE_PIPELINE.format(model=workspace / "model"))
    out = tmp_path / "out"
    run = cli("run", pipeline, "--input", manifest, "-o", out)
    assert run.exit_code == 0, run.stderr

    scored = cli("score", workspace / "model", image, "--mask", mask, "-m", "saliency", "-m", "gradcam", "--seed", "2",
                 "--device", "cpu", "-o", tmp_path / "scores.csv")
    assert scored.exit_code == 0, scored.stderr
    expected = (tmp_path / "scores.csv").read_text()
    assert (out / case["case_id"] / "scores.csv").read_text() == expected
    assert (out / "scores.csv").read_text() == expected
    with (out / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["case_id"], row["method"]) for row in rows] == [(case["case_id"], "saliency"), (case["case_id"], "gradcam")]
    assert all(row["error"] == "" and row["auroc"] and row["verdict"] and row["verdict_reason"] for row in rows)
    assert all(row["sanity_pass"] in ("true", "false", "") for row in rows)  # empty when the check is inconclusive


def test_each_dicom_series_of_a_folder_is_explained_on_its_own_grid(workspace, cli, tmp_path):
    """Two series of one folder, different grids and content: the pipeline's case for each series explains
    that series, exactly as ``medxai explain`` does on a folder holding only it."""
    from medxai.attribution.provenance import volume_sha256
    from medxai.io.readers import read_volume
    from medxai.pipeline.inputs import discover_cases
    from medxai.testing.dicom_writer import dicom_representable, write_dicom_series
    from medxai.volume import Volume

    images = sorted((workspace / "cohort" / "images").glob("*.nii.gz"))
    first, second = read_volume(images[0]), read_volume(images[1])
    angle = np.radians(20)  # an oblique, anisotropic grid of another shape for the second series
    oblique = np.eye(4)
    oblique[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ \
        np.diag([0.9, 1.2, 2.0])
    oblique[:3, 3] = [20.0, -8.0, 5.0]
    series = {"1": dicom_representable(first),
              "2": dicom_representable(Volume(np.ascontiguousarray(second.data[4:28, 2:26, 8:24]), oblique))}
    for number, volume in series.items():
        for folder in (tmp_path / "scans" / "study", tmp_path / f"alone_s{number}"):
            write_dicom_series(volume, folder, modality="MR", series_number=int(number), series_description=f"t{number}")
    cases = {case.case_id: case for case in discover_cases(tmp_path / "scans")}
    assert set(cases) == {"study_s1", "study_s2"}

    pipeline = tmp_path / "explain.yaml"
    pipeline.write_text(EXPLAIN_PIPELINE.format(model=workspace / "model"))
    out = tmp_path / "out"
    run = cli("run", pipeline, "--input", tmp_path / "scans", "-o", out)
    assert run.exit_code == 0, run.stderr

    heatmaps = {}
    for number in series:
        case = cases[f"study_s{number}"]
        scan = read_volume(case.image, series_uid=case.series_uid)
        heatmap = nib.load(out / case.case_id / "saliency.nii.gz")
        assert heatmap.shape == scan.shape and np.allclose(heatmap.affine, scan.affine, atol=1e-4)
        record = json.loads((out / case.case_id / "explanations.json").read_text())
        assert record["inputs"][0]["sha256"] == volume_sha256(scan)
        alone = cli("explain", workspace / "model", tmp_path / f"alone_s{number}", "-o", tmp_path / "alone",
                    "-m", "saliency", "--seed", "1", "--batch-size", "4", "--device", "cpu")
        assert alone.exit_code == 0, alone.stderr
        heatmaps[number] = np.asarray(heatmap.get_fdata())
        assert np.array_equal(heatmaps[number], nib.load(tmp_path / "alone" / f"alone_s{number}" / "saliency.nii.gz").get_fdata())
    assert heatmaps["1"].shape != heatmaps["2"].shape


def test_the_manifest_says_which_segmentations_failed(workspace, cli, tmp_path):
    """A threshold that keeps the whole volume is no segmentation: the run manifest says so per case, with the
    reason its segmentation.json gives (issue 26); a threshold that keeps a small region is ``ok``."""
    pipeline = tmp_path / "segment.yaml"
    pipeline.write_text(f"model:\n  path: {workspace / 'model'}\nsegment:\n  enabled: true\n  method: smoothgrad\n")
    rows = {}
    for threshold in ("fixed:0", "percentile:99.5"):  # SmoothGrad is positive everywhere: level 0 keeps all
        out = tmp_path / threshold.replace(":", "").replace(".", "_")
        result = cli("run", pipeline, "--input", workspace / "cohort", "-o", out, "--set", f"segment.threshold={threshold}")
        assert result.exit_code == 0, result.stderr
        with (out / "manifest.csv").open(newline="") as handle:
            rows[threshold] = list(csv.DictReader(handle))
    for row in rows["fixed:0"]:
        reason = json.loads((tmp_path / "fixed0" / row["case_id"] / "segmentation.json").read_text())["reason"]
        assert row["status"] == "done" and row["segmentation"] == f"failed: {reason}" and reason
    assert {row["segmentation"] for row in rows["percentile:99.5"]} == {"ok"}
