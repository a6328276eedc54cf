"""One failure rule and one case-id rule across every batch command (issue 25), through the real CLI.

- the same unreadable scan among good ones: exit 3, exactly one ``failed CASE: ...`` line naming the file,
  the good cases written;
- a bad option: exit 4 before any case runs (nothing written);
- two inputs with the same file name in different folders: distinct ids naming their folders, and each
  output records its input path.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from medxai.synthetic import make_cohort
    from medxai.testing.tiny_model import save_tiny_classifier

    root = tmp_path_factory.mktemp("batch-rules")
    make_cohort(root / "cohort", cases=2, seed=7, size=24, grid_mix=False)
    save_tiny_classifier(root / "model")
    images = sorted((root / "cohort" / "images").glob("*.nii.gz"))
    for side, image in zip(("left", "right"), images):  # a central sphere as the lesion mask of each scan
        (root / side).mkdir()
        shutil.copy(image, root / side / "scan.nii.gz")
        scan = nib.load(image)
        grid = np.indices(scan.shape[:3]) - (np.array(scan.shape[:3]) // 2)[:, None, None, None]
        sphere = (np.sum(grid**2, axis=0) <= 16).astype(np.uint8)
        nib.save(nib.Nifti1Image(sphere, scan.affine), root / side / "mask.nii.gz")
    assert len(images) == 2
    (root / "bad").mkdir()
    (root / "bad" / "broken.nii.gz").write_bytes(b"\x1f\x8b not really a gzip stream")
    shutil.copy(root / "left" / "mask.nii.gz", root / "bad" / "mask.nii.gz")
    return root


def _manifest(root: Path, rows: list[tuple[str, str, str]], name: str) -> Path:
    path = root / name
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "image", "mask", "label"])
        writer.writerows([(case_id, image, mask, "lesion") for case_id, image, mask in rows])
    return path


def _commands(root: Path, out: Path, scans: list[Path], *, option: tuple[str, ...] = ()) -> dict[str, list[str]]:
    model = str(root / "model")
    masks = [str(scan.parent / "mask.nii.gz") for scan in scans]
    manifest = _manifest(out.parent, [("", str(s), m) for s, m in zip(scans, masks)], f"{out.name}-manifest.csv")
    return {
        "predict": ["predict", model, *map(str, scans), "-o", str(out / "preds.csv"), *option],
        "explain": ["explain", model, *map(str, scans), "-o", str(out), "-m", "saliency", *option],
        "score": ["score", model, *map(str, scans), "-o", str(out / "scores.csv"), "-m", "saliency", "--no-sanity",
                  "--no-sensitivity", *option],
        "segment": ["segment", model, *map(str, scans), "-o", str(out), "--method", "saliency", "--threshold", "otsu",
                    *option],
        "radiomics extract": ["radiomics", "extract", str(manifest), "-o", str(out / "features.csv"),
                              "--expansions", "0", *option],
    }


COMMANDS = ("predict", "explain", "score", "segment", "radiomics extract")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_case_among_good_ones_fails_alone(batch, cli, tmp_path, name):
    scans = [batch / "left" / "scan.nii.gz", batch / "bad" / "broken.nii.gz", batch / "right" / "scan.nii.gz"]
    out = tmp_path / "out"
    result = cli(*_commands(batch, out, scans)[name])
    assert result.exit_code == 3, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1, result.stderr
    assert failed[0].startswith("failed broken: ") and "broken.nii.gz" in failed[0], failed[0]
    written = "\n".join(p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".csv", ".json"))
    assert "left_scan" in written and "right_scan" in written


@pytest.mark.parametrize("name", COMMANDS)
def test_two_inputs_with_one_file_name_get_ids_naming_their_folders(batch, cli, tmp_path, name):
    scans = [batch / "left" / "scan.nii.gz", batch / "right" / "scan.nii.gz"]
    out = tmp_path / "out"
    result = cli(*_commands(batch, out, scans)[name])
    assert result.exit_code == 0, result.stderr
    recorded = "\n".join(p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".csv", ".json"))
    for side in ("left", "right"):
        assert f"{side}_scan" in recorded
        assert str(batch / side / "scan.nii.gz") in recorded, f"{name} does not record the input path of {side}"


BAD_OPTIONS = {
    "predict": ("--device", "tpu"),
    "explain": ("--target", "bogus"),
    "score": ("--target", "bogus"),
    "segment": ("--threshold", "bogus"),
    "radiomics extract": ("--params", "no-such-preset"),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_option_is_refused_before_any_case(batch, cli, tmp_path, name):
    scans = [batch / "left" / "scan.nii.gz", batch / "right" / "scan.nii.gz"]
    out = tmp_path / "out"
    result = cli(*_commands(batch, out, scans, option=BAD_OPTIONS[name])[name])
    assert result.exit_code == 4, result.stderr
    assert "failed " not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name", ("predict", "explain", "score", "segment"))
def test_window_options_on_a_whole_volume_model_are_an_option_error(batch, cli, tmp_path, name):
    scans = [batch / "left" / "scan.nii.gz"]
    out = tmp_path / "out"
    result = cli(*_commands(batch, out, scans, option=("--overlap", "0.5"))[name])
    assert result.exit_code == 4, result.stderr
    assert "only apply to models trained on patches" in result.stderr
    assert not out.exists() or not any(out.iterdir())
