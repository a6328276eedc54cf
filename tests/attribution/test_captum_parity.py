"""Where a method wraps Captum (or MONAI), its heatmap equals the plain library's on the model grid."""
from __future__ import annotations

import pytest
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    LRP,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from monai.visualize import GradCAMpp
from torch import nn

from medxai.attribution.base import Execution
from medxai.attribution.feature_ablation import supervoxels
from medxai.attribution.registry import create_method
from medxai.attribution.targets import ClassTarget

CLASS = 1


class PlainNet(nn.Module):
    """No reused or in-place modules, so plain Captum accepts it for every method."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2), nn.Conv3d(6, 8, 3, padding=1), nn.ReLU(),
        )
        self.gap = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.gap(self.features(x)), 1))


class PlainMlp(nn.Module):
    """Linear and ReLU layers only: the layers Captum's LRP has rules for."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(2 * 8**3, 16), nn.ReLU(), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(torch.flatten(x, 1))))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(3)
    return PlainNet().eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 2, 16, 16, 16, generator=torch.Generator().manual_seed(4))


def ours(name: str, network: nn.Module, inputs: torch.Tensor, seed: int = 0, spacing=(1.0, 1.0, 1.0), **options) -> torch.Tensor:
    execution = Execution(batch_size=3, seed=seed, spacing_mm=spacing)
    return create_method(name, network, execution=execution, options=options).attribute(inputs, ClassTarget(CLASS))


def test_saliency(net, x):
    assert torch.allclose(ours("saliency", net, x), Saliency(net).attribute(x, target=CLASS, abs=True))


def test_input_x_gradient(net, x):
    assert torch.allclose(ours("input_x_gradient", net, x), InputXGradient(net).attribute(x, target=CLASS))


def test_integrated_gradients(net, x):
    heatmap = ours("integrated_gradients", net, x, n_steps=16, max_steps=16)
    plain = IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), target=CLASS, n_steps=16, method="gausslegendre")
    assert torch.allclose(heatmap, plain, atol=1e-7, rtol=1e-4)


def test_smoothgrad(net, x):
    heatmap = ours("smoothgrad", net, x, seed=7, n_samples=5, noise_level=0.2)
    torch.manual_seed(7)
    stdev = 0.2 * float(x.max() - x.min())
    plain = NoiseTunnel(Saliency(net)).attribute(x, nt_type="smoothgrad", nt_samples=5, nt_samples_batch_size=3,
                                                 stdevs=stdev, target=CLASS, abs=True)
    assert torch.allclose(heatmap, plain, atol=1e-7, rtol=1e-4)


def test_guided_backprop(net, x):
    assert torch.allclose(ours("guided_backprop", net, x), GuidedBackprop(net).attribute(x, target=CLASS))


def test_deeplift(net, x):
    plain = DeepLift(net).attribute(x, baselines=torch.zeros_like(x), target=CLASS)
    assert torch.allclose(ours("deeplift", net, x), plain, atol=1e-7, rtol=1e-4)


def test_occlusion_without_roi_is_captum(net, x):
    # 4 mm window, 2 mm stride on a 2 mm grid along k: 2-voxel windows and 1-voxel strides there
    heatmap = ours("occlusion", net, x, spacing=(1.0, 1.0, 2.0), window_mm=4.0, stride_mm=2.0)
    plain = Occlusion(net).attribute(x, sliding_window_shapes=(2, 4, 4, 2), strides=(2, 2, 2, 1), baselines=0.0,
                                     target=CLASS, perturbations_per_eval=5)
    assert torch.allclose(heatmap, plain, atol=1e-6)


def test_occlusion_roi_everywhere_is_captum(net, x):
    roi = torch.ones(x.shape[2:], dtype=torch.bool)
    heatmap = ours("occlusion", net, x, window_mm=5.0, stride_mm=3.0, roi=roi)
    plain = Occlusion(net).attribute(x, sliding_window_shapes=(2, 5, 5, 5), strides=(2, 3, 3, 3), baselines=0.0, target=CLASS)
    assert torch.allclose(heatmap, plain, atol=1e-6)


def test_occlusion_roi_skips_air_and_matches_inside(net, x):
    roi = torch.zeros(x.shape[2:], dtype=torch.bool)
    roi[2:7, 3:9, 4:8] = True
    method = create_method("occlusion", net, execution=Execution(batch_size=3), options={"window_mm": 4.0, "stride_mm": 4.0, "roi": roi})
    heatmap = method.attribute(x, ClassTarget(CLASS))
    plain = Occlusion(net).attribute(x, sliding_window_shapes=(2, 4, 4, 4), strides=(2, 4, 4, 4), baselines=0.0, target=CLASS)
    assert method.diagnostics["windows_evaluated"] == 2 * 3 * 1  # of 4 * 4 * 4 windows
    assert torch.allclose(heatmap[:, :, roi], plain[:, :, roi], atol=1e-6)
    assert bool((heatmap[:, :, ~roi] == 0).all())


def test_feature_ablation(net, x):
    heatmap = ours("feature_ablation", net, x, supervoxel_mm=6.0)
    mask = supervoxels(x, size_mm=6.0, spacing_mm=(1.0, 1.0, 1.0), compactness=0.3)
    plain = FeatureAblation(net).attribute(x, baselines=0.0, target=CLASS, feature_mask=mask)
    assert int(mask.max()) >= 8  # several supervoxels
    assert torch.allclose(heatmap, plain, atol=1e-6)


def test_gradcam_is_captum_upsampled(net, x):
    heatmap = ours("gradcam", net, x, layer="features")
    cam = LayerGradCam(net, net.features).attribute(x, target=CLASS, relu_attributions=True)
    assert torch.allclose(heatmap, LayerAttribution.interpolate(cam, (16, 16, 16), interpolate_mode="trilinear"))


def test_gradcampp_is_monai_without_the_exp_factor(net, x):
    heatmap = ours("gradcampp", net, x, layer="features.4")
    monai_cam = GradCAMpp(net, target_layers="features.4", postprocessing=lambda m: m)
    raw = monai_cam.compute_map(x, class_idx=CLASS)
    score = float(net(x)[0, CLASS])
    expected = LayerAttribution.interpolate(raw, (16, 16, 16), interpolate_mode="trilinear") / torch.exp(torch.tensor(score))
    assert float(raw.abs().max()) > 0
    assert torch.allclose(heatmap, expected, rtol=1e-4, atol=1e-8)


def test_smooth_gradcampp_without_noise_is_gradcampp(net, x):
    smooth = ours("smooth_gradcampp", net, x, layer="features.1", n_samples=3, noise_level=0.0)
    plain = ours("gradcampp", net, x, layer="features.1")
    assert float(plain.abs().max()) > 0
    assert torch.allclose(smooth, plain, rtol=1e-5, atol=1e-7)


def test_lrp_on_linear_layers_is_captum():
    torch.manual_seed(5)
    mlp = PlainMlp().eval()
    x = torch.randn(1, 2, 8, 8, 8, generator=torch.Generator().manual_seed(6))
    heatmap = ours("lrp", mlp, x, epsilon=1e-9)
    plain = LRP(mlp).attribute(x, target=CLASS)
    assert torch.allclose(heatmap, plain, rtol=1e-4, atol=1e-7)
