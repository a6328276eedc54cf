"""The time pre-flight (passes x a timed pass), progress inside a method, and occlusion windows that follow the
model grid rather than the scan's own grid."""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch

from medxai.attribution.base import Execution
from medxai.attribution.engine import explain_case
from medxai.attribution.registry import create_method
from medxai.attribution.targets import ClassTarget
from medxai.attribution.timing import Passes, TimeEstimate, estimate
from medxai.models.registry import build_network
from medxai.synthetic import make_spec, render


@pytest.fixture(scope="module")
def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("tiny", in_channels=1, num_classes=2, spatial_size=(32, 32, 32)).eval()


def test_estimate_is_within_a_factor_of_2_of_the_measured_time(tiny_net):
    inputs = torch.rand(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    method = create_method("smoothgrad", tiny_net, execution=Execution(batch_size=4), options={"n_samples": 16})
    passes = method.plan(inputs)
    assert (passes.backward, passes.batch, passes.count) == (16, 4, 16)
    ratios = []
    for round_ in range(3):  # estimate and run back to back, a fresh pass timing each round (shared, loaded CPUs)
        expected = estimate("smoothgrad", passes, tiny_net, inputs, model_key=("tiny-test", round_), dtype=None)
        started = time.perf_counter()
        method.attribute(inputs, ClassTarget(1))
        ratios.append((time.perf_counter() - started) / expected.seconds)
    assert 0.5 <= statistics.median(ratios) <= 2.0, ratios


def test_refusal_and_summary_lines_name_the_work():
    passes = Passes(count=4356, unit="windows", forward=4357, batch=8)
    expected = TimeEstimate(method="occlusion", passes=passes, forward_s=0.24, backward_s=0.0, seconds=4357 * 0.24)
    assert expected.summary("occlusion (case_0007)") == "occlusion (case_0007): 4,356 windows, about 17 min"
    assert expected.refusal(60) == "estimated 17 min (4,356 windows x 0.24 s) exceeds --time-budget 60 s"


def test_progress_counts_every_window(tiny_net):
    inputs = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    calls: list[tuple[int, int]] = []
    # 4-voxel windows at stride 4 on 16^3: 4 x 4 x 4 = 64 windows, run 5 per pass
    method = create_method("occlusion", tiny_net, execution=Execution(batch_size=5), options={"window_mm": 4.0, "stride_mm": 4.0})
    method.attribute(inputs, ClassTarget(1), progress=lambda done, total: calls.append((done, total)))
    assert {total for _, total in calls} == {64}
    done = [value for value, _ in calls]
    assert done[0] == 0 and done[-1] == 64 and done == sorted(done)
    assert set(range(5, 64, 5)) <= set(done)  # every pass of 5 windows was counted on its way
    assert method.diagnostics["windows_evaluated"] == 64


def test_body_restricted_progress_counts_the_windows_that_ran(tiny_net):
    inputs = torch.zeros(1, 1, 16, 16, 16)
    inputs[0, 0, 2:10, 2:10, 2:10] = 1.0  # a body in one corner: windows starting at 0, 4 or 8 on each axis touch it
    calls: list[tuple[int, int]] = []
    method = create_method("occlusion", tiny_net, execution=Execution(batch_size=3),
                           options={"window_mm": 4.0, "stride_mm": 4.0, "roi": "body"})
    heatmap = method.attribute(inputs, ClassTarget(1), progress=lambda done, total: calls.append((done, total)))
    assert method.diagnostics["windows_evaluated"] == 27 and method.diagnostics["windows_in_grid"] == 64
    assert calls[-1] == (27, 27) and {total for _, total in calls} == {27}
    assert bool((heatmap[0, 0, 12:, :, :] == 0).all())  # no window ran there


def test_occlusion_windows_follow_the_model_grid(tiny_net):
    """A 128x128x64 scan of a 384 mm field of view (3 x 3 x 6 mm voxels) through a 32^3-grid model: the model sees
    12 mm voxels. Fixed 16 mm windows at 8 mm strides would be 1 voxel wide at 1-voxel strides there (32,768
    windows); the default windows span 1/5 of the model grid (7 voxels) at a stride of 4: ceil((32 - 7) / 4) + 1
    = 8 positions per axis, 512 windows, whatever the scan's own size."""
    from medxai.models.preprocessing import PreprocessingConfig, Preprocessor

    spec = make_spec(seed=3, task="presence", label="lesion", size=384)
    affine = np.diag([3.0, 3.0, 6.0, 1.0])
    affine[:3, 3] = np.asarray(spec.centre_mm) - np.array([3.0, 3.0, 6.0]) * (np.array([128, 128, 64]) - 1) / 2
    scan = render(spec, affine=affine, shape=(128, 128, 64)).image
    prepared = Preprocessor(PreprocessingConfig(spatial_size=(32, 32, 32))).prepare([scan])
    inputs = prepared.tensor.as_tensor()[None].float()
    spacing = tuple(float(s) for s in np.linalg.norm(np.asarray(prepared.tensor.affine)[:3, :3], axis=0))
    assert np.allclose(spacing, 12.0, atol=0.5)
    method = create_method("occlusion", tiny_net, execution=Execution(batch_size=4, spacing_mm=spacing), options={"roi": "body"})
    layout = method.layout(inputs)
    assert layout.window == (7, 7, 7) and layout.stride == (4, 4, 4)
    assert layout.positions == 8**3
    assert 0 < layout.count < 8**3  # the air around the phantom's body is skipped
    assert method.plan(inputs).count == layout.count
    assert "on the 32x32x32 model grid" in layout.describe((32, 32, 32), spacing)


def test_explain_case_records_estimate_and_actual_time(model, oblique_scan):
    explanation = explain_case(model, oblique_scan[0], methods=["saliency", "occlusion"], batch_size=4)
    for name in ("saliency", "occlusion"):
        entry = explanation.record["methods"][name]
        assert entry["estimated_seconds"] > 0 and entry["actual_seconds"] > 0
    occlusion = explanation.record["methods"]["occlusion"]
    assert occlusion["parameters"]["roi"] == "body" and occlusion["diagnostics"]["roi"] == "body"
    assert occlusion["passes"]["count"] == occlusion["diagnostics"]["windows_evaluated"]
    assert occlusion["passes"]["unit"] == "windows"
    assert explanation.record["time_budget"] == {"budget_s": None, "refused": {}}


def test_time_budget_refuses_a_method_before_it_runs(model, oblique_scan):
    lines: list[str] = []
    explanation = explain_case(model, oblique_scan[0], methods=["saliency", "occlusion"], batch_size=4,
                               time_budget=1e-9, notice=lines.append)
    assert set(explanation.failed) == {"saliency", "occlusion"} and not explanation.heatmaps
    assert explanation.failed["occlusion"].startswith("estimated ") and "windows x" in explanation.failed["occlusion"]
    assert explanation.failed["occlusion"].endswith("exceeds --time-budget 1e-09 s")
    assert explanation.record["time_budget"]["refused"]["occlusion"]["estimated_seconds"] > 0


def test_supervoxels_scale_with_the_model_grid_and_stay_in_the_body(tiny_net):
    """A 384 mm field of view on a 32^3 grid (12 mm voxels): default supervoxels of 384 / 8 = 48 mm instead of
    12 mm (which would be single voxels: thousands of passes); drawn inside the body, zero outside it."""
    inputs = torch.zeros(1, 1, 32, 32, 32)
    inputs[0, 0, 4:28, 6:26, 8:24] = torch.rand(24, 20, 16, generator=torch.Generator().manual_seed(3)) + 1.0
    execution = Execution(batch_size=4, spacing_mm=(12.0, 12.0, 12.0))
    method = create_method("feature_ablation", tiny_net, execution=execution, options={"roi": "body"})
    segments = method.segments(inputs)
    assert segments.size_mm == pytest.approx(48.0) and segments.roi_kind == "body"
    body_mm3 = 24 * 20 * 16 * 12.0**3
    assert 2 <= segments.count <= 2 * body_mm3 / 48.0**3 + 1  # about body / 48^3 supervoxels, plus the outside
    assert bool((segments.labels[0, 0][~segments.roi] == 0).all())
    heatmap = method.attribute(inputs, ClassTarget(1))
    assert method.plan(inputs).count == method.diagnostics["supervoxels"] == segments.count
    assert bool((heatmap[0, 0][inputs[0, 0] == 0] == 0).all())
