"""``medxai run`` end to end through the real entry point: bad cases, schema errors, lock, resume, Dask."""
from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np

from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume


def oblique_affine(seed: int) -> np.ndarray:
    angle = 0.2 + 0.1 * seed
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.9, 1.1, 2.0])          # flipped, anisotropic, oblique
    affine[:3, 3] = [12.0, -7.0, 3.0 * seed]
    return affine


def scan_volume(seed: int, shape=(20, 18, 10)) -> Volume:
    data = np.random.default_rng(seed).normal(100, 20, size=shape).astype(np.float32)
    return Volume(data=data, affine=oblique_affine(seed))


def write_scan(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = scan_volume(seed)
    nib.save(nib.Nifti1Image(volume.data, volume.affine), str(path))
    return path


def read_rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def inventory_pipeline(folder: Path) -> Path:
    path = folder / "inventory.yaml"
    path.write_text("name: inventory\ninput:\n  masks: true\n")
    return path


def predict_pipeline(folder: Path) -> Path:
    """Predictions by a seeded tiny classifier (untrained: the batch machinery is under test, not accuracy)."""
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network

    torch.manual_seed(0)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(16, 16, 16))
    save_model_dir(folder / "model", network=network, arch="tiny", classes=["lesion", "normal"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(16, 16, 16)), training={"seeded": 0}, metrics={})
    path = folder / "predict.yaml"
    path.write_text("name: predict\nmodel:\n  path: model\n  predict: true\n")
    return path


def test_bad_cases_are_reported_and_the_good_ones_complete(tmp_path, cli):
    scans = tmp_path / "scans"
    for seed in range(3):
        write_scan(scans / f"good{seed}.nii.gz", seed)
    payload = (scans / "good0.nii.gz").read_bytes()
    (scans / "truncated.nii.gz").write_bytes(payload[: len(payload) // 2])
    (scans / "photo.nii.gz").write_text("this is not an image\n")
    (scans / "scanner-export.bin").write_bytes(b"\x00\x01 not dicom")
    files = write_dicom_series(scan_volume(7).with_data(np.zeros((20, 18, 10), np.int16) + 5), scans / "dicom_gap",
                               shuffle_seed=None)
    files[4].unlink()                                                # a slice missing in the middle
    write_dicom_series(scan_volume(8).with_data(np.ones((20, 18, 10), np.int16)), scans / "dicom_ok")
    out = tmp_path / "out"

    result = cli("run", predict_pipeline(tmp_path), "--input", scans, "-o", out)

    assert result.exit_code == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("medxai: error: 4 of 8 cases failed")
    assert str(scans) not in result.stderr                             # logs name cases, never input paths
    assert "case truncated: failed: image: not a readable NIfTI file" in result.stderr
    rows = read_rows(out)
    assert {case: row["status"] for case, row in rows.items()} == {
        "good0": "done", "good1": "done", "good2": "done", "dicom_ok": "done",
        "truncated": "failed", "photo": "failed", "scanner-export_bin": "failed", "dicom_gap": "failed",
    }
    assert "not a readable NIfTI file" in rows["truncated"]["error"]
    assert "not a readable NIfTI file" in rows["photo"]["error"]
    assert "unsupported file type" in rows["scanner-export_bin"]["error"]
    assert "slice" in rows["dicom_gap"]["error"]
    for row in rows.values():
        assert "\n" not in row["error"] and str(scans) not in row["error"]   # one line, no input paths
        assert (row["status"] == "done") == (out / row["case_id"]).is_dir()  # folders only for done cases
    assert rows["good1"]["outputs"] == "good1/input.json;good1/prediction.json;good1/scan.json"
    assert rows["good1"]["input"] == str(scans / "good1.nii.gz")                 # every row names its input
    assert rows["dicom_ok"]["input"].startswith(f"{scans / 'dicom_ok'}#")         # + the series UID
    assert not (out / ".work").exists()
    with (out / "preds.csv").open(newline="") as handle:               # the cohort table: done cases only
        assert sorted(row["case_id"] for row in csv.DictReader(handle)) == ["dicom_ok", "good0", "good1", "good2"]


def test_schema_errors_exit_4_with_one_line_naming_file_and_key(tmp_path, cli):
    scans = tmp_path / "scans"
    write_scan(scans / "a.nii.gz", 0)
    cases = {
        "unknown.yaml": ("explain:\n  methods: [saliency]\n  colour: red\n", [], "unknown key 'explain.colour'"),
        "type.yaml": ("explain:\n  seed: 1.5\n", [], "key 'explain.seed': expected an integer"),
        "set.yaml": ("name: x\n", ["--set", "explain.sede=1"], "--set explain.sede=1: unknown key 'explain.sede'"),
        "cycle.yaml": ("inherits_from: cycle2.yaml\n", [], "inheritance cycle cycle.yaml -> cycle2.yaml -> cycle.yaml"),
    }
    (tmp_path / "cycle2.yaml").write_text("inherits_from: cycle.yaml\n")
    for name, (text, extra, expected) in cases.items():
        (tmp_path / name).write_text(text)
        result = cli("run", tmp_path / name, "--input", scans, "-o", tmp_path / f"out-{name}", *extra)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 4, (name, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("medxai: error: ") and expected in lines[0], lines
        assert str(tmp_path / ("cycle2.yaml" if name == "cycle.yaml" else name)) in lines[0]
        assert not (tmp_path / f"out-{name}").exists()                     # nothing written


def test_an_out_folder_with_a_previous_run_needs_resume(tmp_path, cli):
    scans = tmp_path / "scans"
    write_scan(scans / "a.nii.gz", 0)
    pipeline, out = inventory_pipeline(tmp_path), tmp_path / "out"
    assert cli("run", pipeline, "--input", scans, "-o", out).exit_code == 0
    again = cli("run", pipeline, "--input", scans, "-o", out)
    assert again.exit_code == 4 and "pass --resume" in again.stderr
    changed = cli("run", pipeline, "--input", scans, "-o", out, "--resume", "--set", "input.masks=false")
    assert changed.exit_code == 4 and "different pipeline" in changed.stderr
    resumed = cli("run", pipeline, "--input", scans, "-o", out, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert '"reused": 1' in resumed.stdout
