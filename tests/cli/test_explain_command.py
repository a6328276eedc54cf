"""``medxai explain`` through the real entry point on a tiny trained model."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medxai.attribution.registry import METHODS
from medxai.io.nifti import write_nifti
from medxai.synthetic import default_grid, make_cohort, make_spec, render
from medxai.testing.dicom_writer import dicom_representable, write_dicom_series


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny CNN trained one epoch on 6 phantoms; an oblique NIfTI scan and a flipped DICOM series."""
    from medxai.models.train import train_model

    root = tmp_path_factory.mktemp("explain")
    labels = make_cohort(root / "cohort", cases=6, seed=2, size=24, grid_mix=False)
    train_model(labels, root / "model", arch="tiny", task="classification", epochs=1, batch_size=4,
                spatial_size=24, device="cpu", seed=0)
    spec = make_spec(seed=11, task="presence", label="lesion", size=24)
    affine, shape = default_grid(spec, size=24, kind="oblique")
    write_nifti(render(spec, affine=affine, shape=shape).image, root / "oblique.nii.gz")
    affine, shape = default_grid(spec, size=24, kind="flipped")
    flipped = dicom_representable(render(spec, affine=affine, shape=shape).image, rescale_slope=0.1)
    write_dicom_series(flipped, root / "series", modality="MR", rescale_slope=0.1)
    return {"model": root / "model", "oblique": root / "oblique.nii.gz", "series": root / "series", "root": root}


def test_explain_writes_heatmaps_on_the_scan_grid(cli, setup, tmp_path):
    out = tmp_path / "out"
    result = cli("explain", setup["model"], setup["oblique"], "-o", out, "-m", "smoothgrad", "-m", "gradcam",
                 "-m", "occlusion", "--target", "lesion-normal", "--seed", "4", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    scan = nib.load(setup["oblique"])
    folder = out / "oblique"
    for name in ("smoothgrad", "gradcam", "occlusion"):
        image = nib.load(folder / f"{name}.nii.gz")
        assert image.shape == scan.shape and np.allclose(image.affine, scan.affine, atol=1e-4)
        assert image.get_data_dtype() == np.float32 and np.isfinite(image.get_fdata()).all()
    record = json.loads((folder / "explanations.json").read_text())
    assert set(record["methods"]) == {"smoothgrad", "gradcam", "occlusion"}
    classes = record["model"]["classes"]
    assert record["target"]["resolved"] == {"kind": "contrast", "class_index": classes.index("lesion"), "class": "lesion",
                                            "versus_index": classes.index("normal"), "versus": "normal"}
    assert record["seed"] == 4 and record["batch_size"] == {"requested": "2", "used": 2}
    assert record["methods"]["smoothgrad"]["sign"] == "positive"


def test_explain_dicom_series_default_method(cli, setup, tmp_path):
    result = cli("explain", setup["model"], setup["series"], "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert sorted(p.name for p in folder.iterdir()) == ["explanations.json", "input.json", "smoothgrad.nii.gz"]
    heatmap = nib.load(folder / "smoothgrad.nii.gz")
    from medxai.io.readers import read_volume

    series = read_volume(setup["series"])
    assert heatmap.shape == series.shape and np.allclose(heatmap.affine, series.affine, atol=1e-4)


def test_unknown_method_lists_the_valid_names(cli, setup, tmp_path):
    result = cli("explain", setup["model"], setup["oblique"], "-o", tmp_path / "out", "-m", "shap")
    assert result.exit_code == 4
    assert "unknown method shap" in result.stderr and all(name in result.stderr for name in METHODS)
    assert not (tmp_path / "out").exists()


def test_single_bad_scan_exit_4_and_no_output(cli, setup, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    result = cli("explain", setup["model"], bad, "-o", tmp_path / "out", "-m", "saliency")
    assert result.exit_code == 4
    assert result.stderr.strip().count("\n") == 0 and "broken.nii.gz" in result.stderr
    assert not (tmp_path / "out").exists()


def test_batch_keeps_going_past_a_bad_case(cli, setup, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    result = cli("explain", setup["model"], bad, setup["oblique"], "-o", tmp_path / "out", "-m", "saliency")
    assert result.exit_code == 3
    assert "failed broken" in result.stderr
    assert (tmp_path / "out" / "oblique" / "saliency.nii.gz").is_file()
    assert not (tmp_path / "out" / "broken").exists()


@pytest.mark.parametrize("args,message", [
    (["--voxel", "1,2"], "--voxel needs 3"), (["--box", "0,0,0,99,99,99"], "not inside the scan grid"),
    (["--target", "tumour"], "unknown target"), (["--batch-size", "zero"], "--batch-size"),
    (["--voxel", "1,2,3"], "needs a segmentation model"),
])
def test_bad_options_exit_4(cli, setup, tmp_path, args, message):
    result = cli("explain", setup["model"], setup["oblique"], "-o", tmp_path / "out", "-m", "saliency", *args)
    assert result.exit_code == 4 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_method_that_would_not_fit_in_memory_is_refused_before_it_runs(cli, setup, tmp_path, monkeypatch):
    """Out of host memory the kernel kills the process: explain refuses the method first, names it, its
    estimated need and the free memory, and still runs the methods that fit (exit 3, the batch contract)."""
    from medxai.attribution import memory
    from medxai.io.readers import read_volume
    from medxai.models.model_dir import load_model

    model = load_model(setup["model"], device="cpu")
    prepared = model.preprocessor.prepare([read_volume(setup["oblique"])])
    sample = memory.per_sample_bytes(model.network, prepared.tensor.as_tensor()[None].float())
    # room for a plain gradient pass (1 sample), not for DeepLIFT's input + reference with Captum's copies (4)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 3 * sample)
    out = tmp_path / "out"
    result = cli("explain", setup["model"], setup["oblique"], "-o", out, "-m", "saliency", "-m", "deeplift")
    assert result.exit_code == 3, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "failed oblique" in line]
    assert "deeplift: MemoryError: deeplift needs about" in line and "is free on cpu" in line
    folder = out / "oblique"
    assert sorted(p.name for p in folder.iterdir()) == ["explanations.json", "input.json", "saliency.nii.gz"]
    record = json.loads((folder / "explanations.json").read_text())
    assert record["methods"]["saliency"]["estimated_pass_mib"] == pytest.approx(sample / 2**20, abs=0.1)
    assert "MemoryError" in record["failed_methods"]["deeplift"]
    monkeypatch.setattr(memory, "available_bytes", lambda device: 5 * sample)
    result = cli("explain", setup["model"], setup["oblique"], "-o", tmp_path / "roomy", "-m", "deeplift")
    assert result.exit_code == 0, result.stderr
