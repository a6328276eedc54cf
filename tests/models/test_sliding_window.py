"""Sliding-window inference of patch-trained models: maps on the scan's own grid, the lesion found, one window
equal to the stitched map, integrated gradients complete per window, the record validated on load."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.nifti import write_nifti
from medxai.models.model_dir import MODEL_JSON, load_model, save_model_dir
from medxai.models.preprocessing import ChannelIntensity, PreprocessingConfig
from medxai.models.registry import ARCHITECTURES, register_architecture
from medxai.models.loaded import with_window_options
from medxai.models.sliding import SlidingWindow, aggregate_logits
from medxai.models.weakseg.base import GlobalMaxPoolingNetwork
from medxai.volume import Volume

ARCH = "test-intensity-gp"
PATCH = 24
LEVEL = 1.5  # the flat 'normal' class's logit: a window whose brightest voxel exceeds it is 'lesion'
WINDOW = {"patch_size": [PATCH] * 3, "spacing_mm": [1.5] * 3, "overlap": 0.25, "blend": "gaussian"}


def _intensity_network(sharpness: float | None = None) -> GlobalMaxPoolingNetwork:
    """A GP network whose 'lesion' map is the input intensity and whose 'normal' class is flat at LEVEL: its
    lesion is where the scan is bright, deterministically."""
    conv = nn.Conv3d(1, 2, kernel_size=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1))
    network = GlobalMaxPoolingNetwork(conv, divisor=1, sharpness=sharpness)
    network.set_negative_class(0)
    with torch.no_grad():
        network.negative_level.fill_(LEVEL)
    return network


if ARCH not in ARCHITECTURES:
    register_architecture(ARCH, lambda **_: GlobalMaxPoolingNetwork(nn.Conv3d(1, 2, 1, bias=False), divisor=1),
                          task="weakseg")


def _save(tmp_path, window=WINDOW, *, sharpness: float | None = None, name: str = "model"):
    config = PreprocessingConfig(spatial_size=(PATCH,) * 3, spacing=(1.5,) * 3, channels=("image",),
                                 intensity=(ChannelIntensity("none"),))
    folder = tmp_path / name
    save_model_dir(folder, network=_intensity_network(sharpness), arch=ARCH, classes=["normal", "lesion"],
                   task="weakseg", preprocessing=config, training={}, metrics={}, sliding_window=window)
    return folder


def _oblique_affine(spacing, origin=(-40.0, 12.0, -30.0)) -> np.ndarray:
    a, b = math.radians(20), math.radians(10)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _phantom(shape=(64, 64, 40), spacing=(1.3, 0.9, 2.0), centre=(44, 20, 26), radius_mm=8.0):
    """Dim noise with one bright sphere (radius in mm, on the oblique, anisotropic grid); returns (volume, lesion)."""
    affine = _oblique_affine(spacing)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    centre_world = affine[:3, :3] @ np.asarray(centre, float) + affine[:3, 3]
    lesion = np.linalg.norm(world - centre_world, axis=-1) <= radius_mm
    data = rng.normal(0.0, 0.1, shape).astype(np.float32) + 3.0 * lesion.astype(np.float32)
    return Volume(data, affine), lesion


def test_segment_own_map_is_on_the_scan_grid_and_finds_the_lesion(tmp_path):
    from medxai.segmentation.heatmaps import class_map

    model = load_model(_save(tmp_path))
    assert model.sliding_window == SlidingWindow.from_record(WINDOW)
    volume, lesion = _phantom()
    result = class_map(model, [volume], target="lesion")
    assert result.heatmap.shape == volume.shape
    np.testing.assert_allclose(result.heatmap.affine, volume.affine, atol=1e-6)
    # the whole scan at 1.5 mm, not resized to the patch: the field of view is about 83 x 58 x 80 mm
    assert all(side > PATCH for side in result.model_map.shape)
    assert lesion[np.unravel_index(np.argmax(result.heatmap.data), volume.shape)]
    assert result.predicted == "lesion"
    inside, outside = result.heatmap.data[lesion].mean(), result.heatmap.data[~lesion].mean()
    assert inside > 2.0 > 0.5 > outside
    assert result.diagnostics["sliding_window"]["patch_size"] == [PATCH] * 3
    assert result.diagnostics["window_combination"].startswith("each window's own class map")


def test_segment_command_writes_a_mask_on_the_scan_grid(tmp_path, cli):
    """Through the real command, with the window options overriding the record."""
    from medxai.io.readers import read_volume

    volume, lesion = _phantom()
    scan = write_nifti(volume, tmp_path / "scan.nii.gz", dtype=np.float32)
    result = cli("segment", _save(tmp_path), scan, "-o", tmp_path / "out", "--overlap", "0.5", "--sw-batch-size", "2")
    assert result.exit_code == 0, result.stderr
    mask = read_volume(tmp_path / "out" / "scan" / "mask.nii.gz")
    assert mask.shape == volume.shape
    np.testing.assert_allclose(mask.affine, volume.affine, atol=1e-4)
    found = mask.data > 0
    dice = 2 * (found & lesion).sum() / (found.sum() + lesion.sum())
    assert dice > 0.7
    record = json.loads((tmp_path / "out" / "scan" / "segmentation.json").read_text())
    assert record["predicted"] == "lesion"
    windows = record["diagnostics"]["sliding_window"]
    assert "max over windows" in windows["scan_score"]
    assert windows["overlap"] == 0.5 and windows["sw_batch_size"] == 2


def test_explain_and_predict_commands_run_whole_scans_by_windows(tmp_path, cli):
    from medxai.io.readers import read_volume

    volume, lesion = _phantom()
    scan = write_nifti(volume, tmp_path / "scan.nii.gz", dtype=np.float32)
    model = _save(tmp_path)
    explained = cli("explain", model, scan, "-o", tmp_path / "maps", "-m", "input_x_gradient", "--blend", "constant")
    assert explained.exit_code == 0, explained.stderr
    heatmap = read_volume(tmp_path / "maps" / "scan" / "input_x_gradient.nii.gz")
    assert heatmap.shape == volume.shape
    np.testing.assert_allclose(heatmap.affine, volume.affine, atol=1e-4)
    assert lesion[np.unravel_index(np.argmax(heatmap.data), volume.shape)]
    record = json.loads((tmp_path / "maps" / "scan" / "explanations.json").read_text())
    assert record["sliding_window"]["blend"] == "constant"
    predicted = cli("predict", model, scan)
    assert predicted.exit_code == 0, predicted.stderr
    assert predicted.stdout.splitlines()[1].split(",")[1] == "lesion"


def test_explain_maps_are_on_the_scan_grid_and_point_at_the_lesion(tmp_path):
    from medxai.attribution.engine import explain_case

    volume, lesion = _phantom()
    scan = write_nifti(volume, tmp_path / "scan.nii.gz", dtype=np.float32)
    result = explain_case(load_model(_save(tmp_path)), scan, methods=["input_x_gradient", "integrated_gradients"])
    assert not result.failed
    assert result.record["prediction"]["class"] == "lesion"
    assert "window least likely to be 'normal'" in result.record["sliding_window"]["scan_score"]
    for name, heatmap in result.heatmaps.items():
        assert heatmap.shape == volume.shape
        np.testing.assert_allclose(heatmap.affine, volume.affine, atol=1e-6)
        assert lesion[np.unravel_index(np.argmax(heatmap.data), volume.shape)], name
        assert "gaussian window weights" in result.record["methods"][name]["window_combination"]
        assert result.record["methods"][name]["windows"] > 1
        assert result.record["methods"][name]["passes"]["unit"] == "windows"
        assert result.record["methods"][name]["estimated_seconds"] > 0


def test_the_time_budget_counts_every_window(tmp_path):
    from medxai.attribution.engine import explain_case

    volume, _ = _phantom()
    scan = write_nifti(volume, tmp_path / "scan.nii.gz", dtype=np.float32)
    notices: list[str] = []
    result = explain_case(load_model(_save(tmp_path)), scan, methods=["integrated_gradients"], time_budget=1e-6,
                          notice=notices.append)
    assert "exceeds --time-budget" in result.failed["integrated_gradients"] and not result.heatmaps
    refused = result.record["time_budget"]["refused"]["integrated_gradients"]
    assert refused["passes"]["unit"] == "windows" and refused["passes"]["count"] > 1


def _one_window_scan(tmp_path):
    affine = _oblique_affine((1.5, 1.5, 1.5))
    data = np.random.default_rng(1).normal(0.0, 1.0, (PATCH,) * 3).astype(np.float32)
    return write_nifti(Volume(data, affine), tmp_path / "one.nii.gz", dtype=np.float32)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_stitched_map_equals_the_single_window_map_where_the_scan_is_one_window(tmp_path, blend):
    from medxai.attribution.base import Execution
    from medxai.attribution.engine import explain_case
    from medxai.attribution.registry import create_method
    from medxai.attribution.targets import ClassTarget
    from medxai.attribution.windows import window_explainer
    from medxai.io.readers import read_volume
    from medxai.segmentation.heatmaps import class_map

    model = load_model(_save(tmp_path, {**WINDOW, "blend": blend}, sharpness=2.0))
    scan = _one_window_scan(tmp_path)
    prepared = model.preprocessor.prepare([read_volume(scan)])
    inputs = prepared.tensor.as_tensor()[None]
    assert tuple(inputs.shape[2:]) == (PATCH,) * 3
    base = model.network.base
    with torch.no_grad():
        single = base.heatmaps(inputs)[0, 1].numpy()
    np.testing.assert_allclose(class_map(model, [read_volume(scan)], target="lesion").model_map, single, rtol=1e-5, atol=1e-5)
    direct = create_method("saliency", base, execution=Execution(batch_size=1)).attribute(inputs, ClassTarget(1))
    explained = explain_case(model, scan, methods=["saliency"], target="lesion")
    np.testing.assert_allclose(explained.model_maps["saliency"], direct[0, 0].numpy(), rtol=1e-5, atol=1e-6)
    rescore = window_explainer("saliency", model.network, seed=0, index=1)  # what scores re-explain with
    np.testing.assert_allclose(rescore(model.network, inputs).numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_is_complete_in_every_window(tmp_path):
    """Windows that tile the scan (overlap 0): the stitched map summed over each window is that window's
    f(window) - f(zero baseline) for its own lesion logit, computed here by the network itself."""
    from medxai.attribution.engine import explain_case
    from medxai.io.readers import read_volume

    model = with_window_options(load_model(_save(tmp_path, sharpness=2.0)), overlap=0.0, blend="constant")
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    rng = np.random.default_rng(2)
    data = rng.normal(0.0, 0.5, (2 * PATCH, PATCH, PATCH)).astype(np.float32)
    data[30:36, 8:14, 8:14] += 3.0  # a lesion in the second window only
    scan = write_nifti(Volume(data, affine), tmp_path / "two.nii.gz", dtype=np.float32)
    explained = explain_case(model, scan, methods=["integrated_gradients"], target="lesion")
    stitched = explained.model_maps["integrated_gradients"]
    inputs = model.preprocessor.prepare([read_volume(scan)]).tensor.as_tensor()[None]
    assert stitched.shape == (2 * PATCH, PATCH, PATCH)
    base = model.network.base
    for start in (0, PATCH):
        window = inputs[:, :, start:start + PATCH]
        with torch.no_grad():
            gain = float(base(window)[0, 1] - base(torch.zeros_like(window))[0, 1])
        total = float(stitched[start:start + PATCH].sum())
        assert total == pytest.approx(gain, rel=0.02, abs=1e-3)
    assert "completeness holds per window" in explained.record["methods"]["integrated_gradients"]["window_combination"]


def test_predict_aggregates_windows_by_presence(tmp_path):
    from medxai.models.predict import predict

    folder = _save(tmp_path)
    model = load_model(folder)
    with_lesion, _ = _phantom()
    without = Volume(np.random.default_rng(3).normal(0.0, 0.1, (64, 64, 40)).astype(np.float32), with_lesion.affine)
    scans = [write_nifti(v, tmp_path / f"{name}.nii.gz", dtype=np.float32)
             for name, v in (("sick", with_lesion), ("healthy", without))]
    sick, healthy = predict([model], scans)
    assert sick.prediction == "lesion" and healthy.prediction == "normal"


def test_aggregation_picks_the_window_least_likely_absent():
    logits = torch.tensor([[4.0, -4.0], [0.0, 3.0], [4.0, -2.0]])
    assert aggregate_logits(logits, absence=0).tolist() == [0.0, 3.0]
    assert aggregate_logits(logits, absence=None).tolist() == pytest.approx([8 / 3, -1.0])


def test_whole_volume_models_keep_the_resize_path(tmp_path):
    model = load_model(_save(tmp_path, None))
    assert model.sliding_window is None and "sliding_window" not in json.loads((tmp_path / "model" / MODEL_JSON).read_text())
    volume, _ = _phantom()
    assert tuple(model.preprocessor.prepare([volume]).tensor.shape[1:]) == (PATCH,) * 3


@pytest.mark.parametrize("bad", [
    {**WINDOW, "overlap": 1.0}, {**WINDOW, "blend": "median"}, {**WINDOW, "patch_size": [0, 24, 24]},
    {**WINDOW, "spacing_mm": [1.5, 1.5]}, {**WINDOW, "extra": 1}, "24x24x24",
])
def test_bad_window_records_are_refused_on_load_and_on_save(tmp_path, bad):
    folder = _save(tmp_path)
    info = json.loads((folder / MODEL_JSON).read_text())
    info["sliding_window"] = bad
    (folder / MODEL_JSON).write_text(json.dumps(info))
    with pytest.raises(InvalidInputError, match="sliding_window"):
        load_model(folder)
    with pytest.raises(ConfigError, match="sliding_window"):
        _save(tmp_path, bad, name="other")
    assert not (tmp_path / "other").exists()


def test_region_targets_are_refused_for_patch_trained_models(tmp_path):
    from medxai.attribution.engine import explain_case

    volume, _ = _phantom()
    scan = write_nifti(volume, tmp_path / "scan.nii.gz", dtype=np.float32)
    with pytest.raises(ConfigError, match="not supported for models trained on patches"):
        explain_case(load_model(_save(tmp_path)), scan, methods=["saliency"], box=[10, 10, 10, 20, 20, 20])


def test_class_maps_come_from_patch_sized_windows(tmp_path):
    """The network only ever sees windows of the patch size (sw_batch_size at a time), never the whole scan."""
    from medxai.models.sliding import window_slices

    model = with_window_options(load_model(_save(tmp_path)), sw_batch_size=3)
    volume, _ = _phantom()
    inputs = model.preprocessor.prepare([volume]).tensor.as_tensor()[None]
    seen: list[tuple[int, ...]] = []
    heatmaps = model.network.base.heatmaps
    model.network.base.heatmaps = lambda x: (seen.append(tuple(x.shape)), heatmaps(x))[1]
    with torch.no_grad():
        stitched = model.network.heatmaps(inputs)
    assert stitched.shape[2:] == inputs.shape[2:]
    windows = len(window_slices(inputs.shape[2:], model.sliding_window))
    assert windows > 3 and all(shape[2:] == (PATCH,) * 3 for shape in seen)
    assert sum(shape[0] for shape in seen) == windows + 1  # + the memory pre-flight's probe of one window
    assert max(shape[0] for shape in seen) == 3
