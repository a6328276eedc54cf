"""explain_case: heatmaps on the scan's own grid (shape and affine), the record, write_case."""
from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from medxai.attribution.engine import explain_case
from medxai.attribution.provenance import HASHED_FILE, HASHED_VOXELS, input_sha256, volume_sha256
from medxai.attribution.registry import METHODS
from medxai.attribution.writer import write_case
from medxai.io.readers import read_volume
from medxai.models.loaded import LoadedModel
from medxai.models.preprocessing import Preprocessor, PreprocessingConfig
from medxai.models.registry import build_network
from medxai.testing.attribution_nets import FAST_OPTIONS
from medxai.volume import Volume

CLASSES = ["normal", "lesion"]


def test_a_scan_given_already_read_is_explained_as_its_file_and_hashed_by_voxels_and_affine(model, oblique_scan):
    path, _, _ = oblique_scan
    volume = read_volume(path)
    with pytest.raises(ValueError, match="case_id"):
        explain_case(model, volume, methods=["saliency"])
    from_path = explain_case(model, path, methods=["saliency"], seed=1)
    from_volume = explain_case(model, [volume], methods=["saliency"], seed=1, case_id="given")
    assert from_volume.case_id == "given"
    assert np.array_equal(from_volume.heatmaps["saliency"].data, from_path.heatmaps["saliency"].data)
    assert np.array_equal(from_volume.heatmaps["saliency"].affine, from_path.heatmaps["saliency"].affine)
    assert from_path.record["inputs"] == [{"channel": 0, "sha256": input_sha256(path), "hashed": HASHED_FILE}]
    assert from_volume.record["inputs"] == [{"channel": 0, "sha256": volume_sha256(volume), "hashed": HASHED_VOXELS}]
    moved = np.array(volume.affine)
    moved[:3, 3] += 1.0
    assert len({volume_sha256(volume), volume_sha256(volume.with_data(volume.data * 2)),
                volume_sha256(Volume(volume.data, moved))}) == 3


def test_every_method_lands_on_the_scan_grid(model, oblique_scan, tmp_path):
    path, affine, shape = oblique_scan
    assert not np.allclose(np.abs(affine[:3, :3]), np.diag(np.diag(np.abs(affine[:3, :3]))))  # really oblique
    explanation = explain_case(model, path, methods=list(METHODS), method_options=FAST_OPTIONS, seed=3)
    assert explanation.failed == {}
    assert explanation.case_id == "oblique_case"
    for name in METHODS:
        heatmap = explanation.heatmaps[name]
        assert heatmap.shape == shape and heatmap.data.dtype == np.float32
        assert np.allclose(heatmap.affine, affine, atol=1e-5)
        assert np.all(np.isfinite(heatmap.data))
        assert explanation.model_maps[name].shape == (32, 32, 32)

    folder = write_case(explanation, tmp_path / "out")
    assert folder == tmp_path / "out" / explanation.case_id
    for name in METHODS:
        image = nib.load(folder / f"{name}.nii.gz")
        assert image.shape == shape and image.get_data_dtype() == np.float32
        assert np.allclose(image.affine, affine, atol=1e-4)
        assert np.allclose(np.asarray(image.dataobj), explanation.heatmaps[name].data)
    record = json.loads((folder / "explanations.json").read_text())
    assert record["case_id"] == explanation.case_id and record["seed"] == 3
    assert record["model"]["sha256"] == model.sha256 and record["model"]["classes"] == CLASSES
    assert set(record["prediction"]["probabilities"]) == set(CLASSES)
    assert sum(record["prediction"]["probabilities"].values()) == pytest.approx(1.0)
    assert len(record["inputs"][0]["sha256"]) == 64 and str(path.parent) not in json.dumps(record)
    assert {"medxai", "torch", "monai", "captum"} <= set(record["versions"])
    for name in METHODS:
        entry = record["methods"][name]
        assert entry["file"] == f"{name}.nii.gz" and entry["normalisation"] == "none, raw attribution"
        assert entry["sign"] in ("signed", "positive") and entry["wall_s"] > 0 and entry["peak_rss_mib"] > 0
    assert math.isfinite(record["methods"]["integrated_gradients"]["convergence_delta"])
    assert record["methods"]["gradcam"]["diagnostics"]["layer"] == "features"  # the architecture's layer


def test_same_seed_same_heatmaps(model, oblique_scan):
    path = oblique_scan[0]
    methods = ["smoothgrad", "smooth_gradcampp", "occlusion"]
    first = explain_case(model, path, methods=methods, method_options=FAST_OPTIONS, seed=9)
    second = explain_case(model, path, methods=methods, method_options=FAST_OPTIONS, seed=9)
    for name in methods:
        assert np.array_equal(first.heatmaps[name].data, second.heatmaps[name].data)


def test_box_restricts_occlusion_for_a_classifier(model, oblique_scan):
    path, _, shape = oblique_scan
    box = (2, 2, 1, shape[0] // 2, shape[1] // 2, shape[2] // 2)
    explanation = explain_case(model, path, methods=["occlusion"], box=box,
                               method_options={"occlusion": {"window_mm": 4.0, "stride_mm": 4.0}})
    entry = explanation.record["methods"]["occlusion"]
    assert entry["parameters"]["roi"] == "given" and explanation.record["target"]["region"] == "box"
    assert 0 < entry["diagnostics"]["windows_evaluated"] < 8**3


@pytest.fixture(scope="module")
def segmentation_model() -> LoadedModel:
    torch.manual_seed(0)
    network = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=1).eval()
    return LoadedModel(network=network, arch="unet", classes=["background", "lesion"], task="segmentation",
                       preprocessor=Preprocessor(PreprocessingConfig(spatial_size=(32, 32, 32))), sha256="0" * 64,
                       path=Path("unet"))


@pytest.mark.parametrize("region", [{"box": (3, 4, 2, 12, 14, 6)}, {"voxel": (10, 11, 5)}, {}])
def test_segmentation_regions(segmentation_model, oblique_scan, region):
    path, affine, shape = oblique_scan
    explanation = explain_case(segmentation_model, path, methods=["saliency", "gradcam"], target="lesion", **region)
    record = explanation.record
    assert record["output"] == "segmentation" and record["prediction"]["voxel_fractions"]
    resolved = record["target"]["resolved"]
    assert resolved["kind"] == "segmentation" and resolved["class_index"] == 1 and resolved["class"] == "lesion"
    assert resolved["region"] == ("given region" if region else "predicted mask")
    if "voxel" in region:
        assert resolved["region_voxels"] >= 1
    for heatmap in explanation.heatmaps.values():
        assert heatmap.shape == shape and np.allclose(heatmap.affine, affine, atol=1e-5)


def test_weakly_supervised_model_explains_its_heatmap_inside_a_box(oblique_scan):
    torch.manual_seed(0)
    network = build_network("gp-unet", in_channels=1, num_classes=2, spatial_size=(32, 32, 32)).eval()
    model = LoadedModel(network=network, arch="gp-unet", classes=CLASSES, task="weakseg", sha256="0" * 64,
                        preprocessor=Preprocessor(PreprocessingConfig(spatial_size=(32, 32, 32))), path=Path("gp"))
    path, _, shape = oblique_scan
    explanation = explain_case(model, path, methods=["saliency"], target="lesion", box=(3, 4, 2, 12, 14, 6))
    assert explanation.record["output"] == "classification"  # its pooled logits...
    assert explanation.record["target"]["resolved"]["kind"] == "segmentation"  # ...but its heatmap is explained
    assert explanation.heatmaps["saliency"].shape == shape


def test_write_case_keeps_other_files_of_an_existing_case_folder(model, oblique_scan, tmp_path):
    explanation = explain_case(model, oblique_scan[0], methods=["saliency"])
    folder = tmp_path / explanation.case_id
    folder.mkdir()
    (folder / "scores.csv").write_text("kept\n")
    write_case(explanation, tmp_path)
    assert (folder / "scores.csv").read_text() == "kept\n"
    assert (folder / "saliency.nii.gz").is_file() and (folder / "explanations.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_progress_reports_each_method(model, oblique_scan):
    calls = []
    explain_case(model, oblique_scan[0], methods=["saliency", "gradcam"], progress=lambda *call: calls.append(call))
    assert calls == [("explain oblique_case", 0, 2), ("explain oblique_case", 1, 2), ("explain oblique_case", 2, 2)]
