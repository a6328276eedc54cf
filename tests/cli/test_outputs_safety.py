"""Outputs cannot be shadowed, overwritten or half-written, through the real CLI: case ids never name a file
of the run, a case folder belongs to one input, output locations are checked before the work, a full disk
is one line, batches survive hostile inputs, pipeline files are data, and Ctrl-C is one line + --resume."""
from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medxai.io.naming import CASE_ID_PATTERN, INPUT_RECORD

FULL_PIPELINE = """
model:
  path: {model}
  predict: true
explain:
  enabled: true
  methods: [saliency]
score:
  enabled: true
  sensitivity: false
  sanity: false
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


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A seeded tiny classifier (untrained: outputs are under test, not accuracy) and 8 phantoms, 4 with lesion masks."""
    from medxai.synthetic import make_cohort
    from medxai.testing.tiny_model import save_tiny_classifier

    root = tmp_path_factory.mktemp("outputs-safety")
    make_cohort(root / "cohort", cases=8, seed=5, size=32)
    save_tiny_classifier(root / "model")
    (root / "full.yaml").write_text(FULL_PIPELINE.format(model=root / "model"))
    (root / "predict.yaml").write_text(f"model:\n  path: {root / 'model'}\n  predict: true\n")
    (root / "inventory.yaml").write_text("name: inventory\n")
    return root


def lesion_cases(workspace: Path) -> list[dict[str, str]]:
    with (workspace / "cohort" / "labels.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["mask"]]


def hostile_folder(workspace: Path, folder: Path) -> Path:
    """Scans named like the files a run writes, and two scans sharing a file name in two folders."""
    cases = lesion_cases(workspace)
    names = ["run.json.nii.gz", "manifest.csv.nii.gz", "left/scan.nii.gz", "right/scan.nii.gz"]
    for number, name in enumerate(names):
        case = cases[number % len(cases)]
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(workspace / "cohort" / case["image"], folder / name)
    return folder


def assert_only_case_folders_lack_a_dot(out: Path) -> None:
    """What a command writes beside its case folders has a dot in its name; case folders never do."""
    for entry in out.iterdir():
        if "." in entry.name:
            continue
        assert entry.is_dir() and CASE_ID_PATTERN.match(entry.name), f"dot-less output {entry.name} is not a case"
        assert (entry / INPUT_RECORD).is_file(), f"{entry} records no input"


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_full_run_writes_nothing_a_case_id_could_name_and_resumes(workspace, cli, tmp_path):
    source = tmp_path / "in"
    cases = lesion_cases(workspace)
    source.mkdir()
    rows = ["case_id,image,mask,label"]
    for case_id, case in zip(["manifest.csv", "run.json", "", "scores.csv"], cases):  # ids named like run files
        rows.append(f"{case_id},{workspace / 'cohort' / case['image']},{workspace / 'cohort' / case['mask']},lesion")
    (source / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"

    result = cli("run", workspace / "full.yaml", "--input", source, "-o", out)

    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "run.json").read_text())["pipeline"]["name"] == "full"   # the run record is intact
    with (out / "manifest.csv").open(newline="") as handle:
        manifest = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert set(manifest) == {"manifest_csv", "run_json", cases[2]["case_id"], "scores_csv"}
    assert {row["status"] for row in manifest.values()} == {"done"}
    for row, case in zip(manifest.values(), cases):
        assert row["input"] == str(workspace / "cohort" / case["image"])
    assert {"preds.csv", "scores.csv", "features.csv", "segmentation_scores.csv", "summary.pdf"} <= {p.name for p in out.iterdir()}
    assert_only_case_folders_lack_a_dot(out)
    with (out / "scores.csv").open(newline="") as handle:
        assert {row["input"] for row in csv.DictReader(handle)} == {row["input"] for row in manifest.values()}
    with (out / "features.csv").open(newline="") as handle:
        first = next(csv.DictReader(handle))
    assert first["image"] in {row["input"] for row in manifest.values()} and first["mask"].endswith(".nii.gz")
    assert json.loads((out / "run_json" / "segmentation.json").read_text())["input"] == manifest["run_json"]["input"]

    again = cli("run", workspace / "full.yaml", "--input", source, "-o", out, "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["reused"] == 4


def test_explain_and_segment_name_cases_by_their_distinguishing_folder_and_record_the_input(workspace, cli, tmp_path):
    source = hostile_folder(workspace, tmp_path / "in")
    scans = [source / name for name in ("run.json.nii.gz", "manifest.csv.nii.gz", "left/scan.nii.gz", "right/scan.nii.gz")]
    out = tmp_path / "out"

    explained = cli("explain", workspace / "model", *scans, "-o", out, "-m", "saliency", "--device", "cpu")
    masks = [workspace / "cohort" / case["mask"] for case in lesion_cases(workspace)]
    masks = [masks[number % len(masks)] for number in range(len(scans))]
    segmented = cli("segment", workspace / "model", *scans, "-o", out, "--method", "saliency", "--sweep",
                    "--sweep-grid", "otsu,percentile:90", *[a for m in masks for a in ("--mask", m)])

    assert explained.exit_code == 0, explained.stderr
    assert segmented.exit_code == 0, segmented.stderr         # the same inputs may share their case folders
    ids = {"run_json", "manifest_csv", "left_scan", "right_scan"}
    assert {p.name for p in out.iterdir() if p.is_dir()} == ids
    assert (out / "sweep.json").is_file() and (out / "segmentation_scores.csv").is_file()
    assert_only_case_folders_lack_a_dot(out)
    for case_id, scan in zip(["run_json", "manifest_csv", "left_scan", "right_scan"], scans):
        assert json.loads((out / case_id / "explanations.json").read_text())["input"] == str(scan)
        assert json.loads((out / case_id / "segmentation.json").read_text())["input"] == str(scan)

    predicted = cli("predict", workspace / "model", *scans, "-o", tmp_path / "preds.csv")
    scored = cli("score", workspace / "model", scans[2], scans[3], "-m", "saliency", "--no-sensitivity", "--no-sanity",
                 "-o", tmp_path / "scores.csv", "--device", "cpu")
    assert predicted.exit_code == 0 and scored.exit_code == 0, (predicted.stderr, scored.stderr)
    with (tmp_path / "preds.csv").open(newline="") as handle:
        preds = list(csv.DictReader(handle))
    assert list(preds[0])[-1] == "input"                                       # p_<class> keep their places
    assert [(r["case_id"], r["input"]) for r in preds] == [(i, str(s)) for i, s in zip(
        ["run_json", "manifest_csv", "left_scan", "right_scan"], scans)]
    with (tmp_path / "scores.csv").open(newline="") as handle:
        assert {(r["case_id"], r["input"]) for r in csv.DictReader(handle)} == {
            ("left_scan", str(scans[2])), ("right_scan", str(scans[3]))}


def test_a_case_folder_of_another_input_is_never_replaced(workspace, cli, tmp_path):
    """Every sarcoma CT is CT_image.nii.gz: a second patient's --save-masks into the same folder is refused."""
    cases = lesion_cases(workspace)
    for name, case in zip(("patient1", "patient2"), cases):
        (tmp_path / name).mkdir()
        shutil.copy(workspace / "cohort" / case["image"], tmp_path / name / "CT_image.nii.gz")
        shutil.copy(workspace / "cohort" / case["mask"], tmp_path / name / "mask.nii.gz")
    masks = tmp_path / "masks"

    def extract(name: str, csv_name: str):
        return cli("radiomics", "extract", tmp_path / name / "CT_image.nii.gz", "--mask", tmp_path / name / "mask.nii.gz",
                   "--expansions", "0,2", "--save-masks", masks, "-o", tmp_path / csv_name)

    first = extract("patient1", "one.csv")
    assert first.exit_code == 0, first.stderr
    saved = {p.name: p.read_bytes() for p in (masks / "CT_image").iterdir()}
    second = extract("patient2", "two.csv")

    assert second.exit_code == 4
    line = one_line(second.stderr)
    assert str(masks / "CT_image") in line and str(tmp_path / "patient1" / "CT_image.nii.gz") in line
    assert "choose another -o / --save-masks folder" in line
    assert {p.name: p.read_bytes() for p in (masks / "CT_image").iterdir()} == saved   # untouched
    assert not (tmp_path / "two.csv").exists()
    again = extract("patient1", "three.csv")                                    # the same input may redo its own
    assert again.exit_code == 0, again.stderr
    with (tmp_path / "three.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["image"] == str(tmp_path / "patient1" / "CT_image.nii.gz")
    assert row["mask"] == str(tmp_path / "patient1" / "mask.nii.gz")

    out = tmp_path / "explained"
    assert cli("explain", workspace / "model", tmp_path / "patient1" / "CT_image.nii.gz", "-o", out, "-m", "saliency",
               "--device", "cpu").exit_code == 0
    other = cli("explain", workspace / "model", tmp_path / "patient2" / "CT_image.nii.gz", "-o", out, "-m", "saliency",
                "--device", "cpu")
    assert other.exit_code == 4 and str(out / "CT_image") in one_line(other.stderr)
    run = cli("run", workspace / "predict.yaml", "--input", tmp_path / "patient2" / "CT_image.nii.gz", "-o", out)
    assert run.exit_code == 4 and str(out / "CT_image") in one_line(run.stderr)   # run refuses it too, up front
    assert sorted(p.name for p in out.iterdir()) == ["CT_image"]                  # nothing of the refused run


def test_an_output_path_that_is_a_file_or_a_folder_is_one_line_before_any_work(workspace, cli, tmp_path):
    scan = workspace / "cohort" / lesion_cases(workspace)[0]["image"]
    a_file = tmp_path / "somefile.txt"
    a_file.write_text("keep me\n")
    for command in (["run", workspace / "predict.yaml", "--input", scan, "-o", a_file],
                    ["explain", workspace / "model", scan, "-o", a_file, "-m", "saliency"],
                    ["segment", workspace / "model", scan, "-o", a_file / "below", "--method", "saliency"]):
        result = cli(*command)
        assert result.exit_code == 4, result.stderr
        assert str(a_file) in one_line(result.stderr) and "is a file, not a folder" in result.stderr
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = cli("predict", workspace / "model", scan, "-o", folder)
    assert result.exit_code == 4 and str(folder) in one_line(result.stderr)
    assert a_file.read_text() == "keep me\n" and list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder", "somefile.txt"]


def read_only(folder: Path) -> None:
    """chmod a-w; root ignores modes, so there the folder is made immutable (chattr +i) too."""
    folder.chmod(0o555)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)


def writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_a_read_only_output_folder_is_one_line_before_any_work(workspace, cli, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    read_only(out)
    try:
        started = time.monotonic()
        result = cli("run", workspace / "full.yaml", "--input", workspace / "cohort", "-o", out)
        explained = cli("explain", workspace / "model", workspace / "cohort" / lesion_cases(workspace)[0]["image"],
                        "-o", out / "sub", "-m", "saliency")
        seconds = time.monotonic() - started
        assert list(out.iterdir()) == []
    finally:
        writable(out)
    for outcome in (result, explained):
        assert outcome.exit_code == 4, outcome.stderr
        assert str(out) in one_line(outcome.stderr) and ("cannot write" in outcome.stderr or "cannot create" in outcome.stderr)
    assert seconds < 20                                                   # refused before the cases ran


def limited(bytes_: int):
    """A subprocess preexec: files may not grow past ``bytes_`` (a full disk: writes fail with EFBIG)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (bytes_, bytes_))
    return apply


def medxai(*args, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medxai", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **options)


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temporary_files(workspace, tmp_path):
    scan = workspace / "cohort" / lesion_cases(workspace)[0]["image"]
    out = tmp_path / "explained"
    explained = medxai("explain", workspace / "model", scan, "-o", out, "-m", "saliency", "--device", "cpu",
                       preexec_fn=limited(2000))
    assert explained.returncode == 4, explained.stderr
    line = one_line(explained.stderr)
    assert "File too large" in line and str(out) in line
    assert not out.exists()                                             # created by the command, left empty: gone

    run_out = tmp_path / "run"
    ran = medxai("run", workspace / "full.yaml", "--input", workspace / "cohort", "-o", run_out,
                 preexec_fn=limited(8000))
    assert ran.returncode == 4, ran.stderr
    line = one_line(ran.stderr)
    assert "File too large" in line and str(run_out) in line
    leftovers = [p for p in run_out.rglob("*") if ".tmp" in p.name or p.name == ".work"]
    assert leftovers == [] and not [p for p in run_out.iterdir() if p.is_dir()]   # no temporary files, no cases


def bool_nifti(path: Path) -> Path:
    """A NIfTI whose header says datatype 1 (binary, 1 bit per voxel)."""
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[70:74] = struct.pack("<hh", 1, 1)                               # datatype, bitpix
    path.write_bytes(bytes(raw))
    return path


def test_a_symlink_loop_and_a_bool_nifti_are_failed_cases_and_the_rest_run(workspace, cli, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for case in lesion_cases(workspace)[:2]:
        shutil.copy(workspace / "cohort" / case["image"], source / Path(case["image"]).name)
    bool_nifti(source / "binary.nii")
    (source / "loop.nii.gz").symlink_to(source / "loop.nii.gz")         # a symlink loop
    (source / "cycle").symlink_to(source, target_is_directory=True)     # a folder loop
    out = tmp_path / "out"

    result = cli("run", workspace / "inventory.yaml", "--input", source, "-o", out)

    assert result.exit_code == 3, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    with (out / "manifest.csv").open(newline="") as handle:
        status = {row["case_id"]: row["status"] for row in csv.DictReader(handle)}
    assert status.pop("binary") == "failed" and status.pop("loop") == "failed"
    assert set(status.values()) == {"done"} and len(status) == 2


@pytest.mark.parametrize("address", ["::::", "tcp://", "http://x:notaport", "tcp://host:99999"])
def test_a_malformed_dask_scheduler_address_is_one_line_at_once(workspace, cli, tmp_path, address):
    started = time.monotonic()
    result = cli("run", workspace / "inventory.yaml", "--input", workspace / "cohort", "-o", tmp_path / "out",
                 "--dask-scheduler", address)
    assert result.exit_code == 4
    assert f"--dask-scheduler '{address}': not a scheduler address" in one_line(result.stderr)
    assert time.monotonic() - started < 10 and not (tmp_path / "out").exists()


def test_an_unreachable_dask_scheduler_times_out_with_one_line(workspace, cli, tmp_path):
    started = time.monotonic()
    result = cli("run", workspace / "inventory.yaml", "--input", workspace / "cohort", "-o", tmp_path / "out",
                 "--dask-scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 4
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in one_line(result.stderr)
    assert time.monotonic() - started < 40 and not (tmp_path / "out").exists()


def alias_bomb() -> str:
    text, previous = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n', "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        previous = name
    return text + f"explain:\n  methods: *{previous}\n"


def test_pipeline_files_are_data_bounded_and_never_echo_foreign_content(workspace, cli, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\nkey: SECRETVALUE\n")
    marker = tmp_path / "pwned"
    files = {
        "bomb.yaml": (alias_bomb(), "aliases"),
        "inherit.yaml": (f"inherits_from: {secret}\n", "is not a pipeline file"),
        "shadow.yaml": ("inherits_from: /etc/shadow\n", "is not a pipeline file"),
        "tag.yaml": (f"explain: !!python/object/apply:os.system ['touch {marker}']\n", "not valid YAML"),
        "leak.yaml": ("explain: {methods: [\"SECRETVALUE\" \n", "not valid YAML"),
    }
    for name, (text, expected) in files.items():
        (tmp_path / name).write_text(text)
        started = time.monotonic()
        result = cli("run", tmp_path / name, "--input", workspace / "cohort", "-o", tmp_path / "out")
        assert result.exit_code == 4, (name, result.stderr)
        line = one_line(result.stderr)
        assert expected in line and str(tmp_path / name) in line, line
        assert "SECRET" not in line and "lol" not in line, line
        assert time.monotonic() - started < 5, name
    override = cli("run", workspace / "inventory.yaml", "--input", workspace / "cohort", "-o", tmp_path / "out",
                   "--set", f"explain.methods=!!python/object/apply:os.system ['touch {marker}']")
    assert override.exit_code == 4 and "value is not a YAML scalar or list" in one_line(override.stderr)
    assert not marker.exists() and not (tmp_path / "out").exists()


def done_rows(out: Path) -> int:
    try:
        with (out / "manifest.csv").open(newline="") as handle:
            return sum(row["status"] == "done" for row in csv.DictReader(handle))
    except (FileNotFoundError, KeyError):
        return 0


def test_ctrl_c_is_one_line_exit_130_and_resume_completes(workspace, cli, tmp_path):
    cohort = tmp_path / "cohort"
    from medxai.synthetic import make_cohort

    make_cohort(cohort, cases=8, seed=9, size=32)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "medxai", "run", str(workspace / "full.yaml"), "--input",
                                str(cohort), "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while done_rows(out) < 1:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no case finished in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, stderr
    line = one_line(stderr)
    done = done_rows(out)
    assert 1 <= done < 8, "the run must be interrupted mid-way for this test to mean anything"
    assert line == f"medxai: error: interrupted after {done} of 8 cases; rerun with --resume"
    assert not (out / ".work").exists()

    resumed = cli("run", workspace / "full.yaml", "--input", cohort, "-o", out, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["reused"] == done and done_rows(out) == 8


def test_ctrl_c_in_any_other_command_is_one_line_exit_130(tmp_path):
    out = tmp_path / "sample"
    process = subprocess.Popen([sys.executable, "-m", "medxai", "sample-data", str(out), "--cases", "400", "--size", "32"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "images").is_dir() or not any((out / "images").iterdir()):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert one_line(stderr) == "medxai: error: interrupted"
