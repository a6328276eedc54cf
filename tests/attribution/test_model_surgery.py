"""Model surgery makes MONAI networks explainable by hook-based methods and leaves their outputs identical."""
from __future__ import annotations

import pytest
import torch
from captum.attr import DeepLift
from monai.networks.nets import DenseNet121, SegResNet, SEResNet50, resnet10
from torch import nn

from medxai.attribution.base import Execution
from medxai.attribution.model_surgery import make_explainable, surgery_applied
from medxai.attribution.registry import create_method
from medxai.attribution.targets import ClassTarget
from medxai.testing.attribution_nets import randomise_batch_norm

NETWORKS = {
    "resnet10": lambda: resnet10(spatial_dims=3, n_input_channels=1, num_classes=2),
    "densenet121": lambda: DenseNet121(spatial_dims=3, in_channels=1, out_channels=2),
    "seresnet50": lambda: SEResNet50(spatial_dims=3, in_channels=1, num_classes=2),
    "segresnet": lambda: SegResNet(spatial_dims=3, init_filters=8, in_channels=1, out_channels=2),
}


def _calls_per_module(network: nn.Module, inputs: torch.Tensor) -> dict[str, int]:
    calls: dict[str, int] = {}
    handles = [module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
               for name, module in network.named_modules() if not list(module.children())]
    with torch.no_grad():
        network(inputs)
    for handle in handles:
        handle.remove()
    return calls


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))


SLOW = pytest.mark.slow  # 3D DenseNet121 and SEResNet50 take tens of seconds on a shared CPU


def _cases(names):
    return [pytest.param(name, marks=SLOW) if name in ("densenet121", "seresnet50") else name for name in names]


@pytest.mark.parametrize("name", _cases(NETWORKS))
def test_surgery_keeps_outputs_and_gives_each_call_its_module(name, x):
    torch.manual_seed(0)
    network = randomise_batch_norm(NETWORKS[name](), 2)
    assert max(_calls_per_module(network, x).values()) >= 1
    explainable = make_explainable(network)
    with torch.no_grad():
        assert torch.equal(network(x), explainable(x))
    assert surgery_applied(explainable) == "fx"
    assert max(_calls_per_module(explainable, x).values()) == 1
    assert not any(getattr(module, "inplace", False) for module in explainable.modules())
    assert make_explainable(explainable) is explainable
    assert any(getattr(module, "inplace", False) for module in network.modules()) or name == "densenet121"


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    network = randomise_batch_norm(resnet10(spatial_dims=3, n_input_channels=1, num_classes=2), 3)
    with torch.no_grad():
        network.fc.bias.zero_()
    return network


def test_plain_captum_deeplift_refuses_monai_resnet(resnet, x):
    with pytest.raises(RuntimeError):
        DeepLift(resnet).attribute(x, baselines=torch.zeros_like(x), target=1)


@pytest.mark.parametrize("name", ["deeplift", "lrp", "guided_backprop"])
def test_hook_methods_work_on_monai_resnet(name, resnet, x):
    heatmap = create_method(name, resnet, execution=Execution(seed=0)).attribute(x, ClassTarget(1))
    assert heatmap.shape == x.shape and bool(torch.isfinite(heatmap).all()) and float(heatmap.abs().sum()) > 0
    with torch.no_grad():
        assert torch.equal(resnet(x), make_explainable(resnet)(x))  # the caller's network is untouched


def test_deeplift_completeness_on_monai_resnet(resnet, x):
    method = create_method("deeplift", resnet)
    heatmap = method.attribute(x, ClassTarget(1))
    with torch.no_grad():
        change = float(resnet(x)[0, 1] - resnet(torch.zeros_like(x))[0, 1])
    assert float(heatmap.sum()) == pytest.approx(change, rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("name", _cases(["resnet10", "densenet121", "seresnet50"]))
def test_lrp_conserves_relevance_without_biases(name, x):
    """With biases zero (fresh BatchNorm statistics, zeroed linear biases) epsilon-LRP sums to the output:
    this holds only if residual additions, concatenations and squeeze-excitation gates are handled."""
    torch.manual_seed(0)
    network = NETWORKS[name]().eval()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Linear, nn.Conv3d)) and module.bias is not None:
                module.bias.zero_()
        output = float(network(x)[0, 1])
    heatmap = create_method("lrp", network, options={"epsilon": 1e-9}).attribute(x, ClassTarget(1))
    assert abs(output) > 1e-4
    assert float(heatmap.sum()) == pytest.approx(output, rel=1e-3)


class DataDependent(nn.Module):
    """Control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 100:  # never true here; only tracing trips over it
            x = x * 0
        return self.head(self.act(self.conv(x)).mean(dim=(2, 3, 4)))


def test_untraceable_network_falls_back_to_switching_inplace_off(x):
    torch.manual_seed(0)
    network = DataDependent().eval()
    explainable = make_explainable(network)
    assert surgery_applied(explainable) == "inplace-off"
    assert network.act.inplace and not explainable.act.inplace
    method = create_method("deeplift", network)
    heatmap = method.attribute(x, ClassTarget(0))
    assert bool(torch.isfinite(heatmap).all()) and method.diagnostics["model_surgery"] == "inplace-off"


def test_deeplift_records_the_completeness_gap_captum_would(classifier, image_2ch):
    """The gap comes from DeepLIFT's own forward pass; it equals Captum's convergence delta."""
    from captum.attr import DeepLift

    method = create_method("deeplift", classifier)
    method.attribute(image_2ch, ClassTarget(1))
    explainable = ClassTarget(1).bind(make_explainable(classifier), image_2ch)
    _, delta = DeepLift(explainable).attribute(image_2ch, baselines=torch.zeros_like(image_2ch), target=0,
                                               return_convergence_delta=True)
    assert float(delta.abs().max()) > 1e-6  # a gap to compare, not float noise
    assert method.diagnostics["convergence_delta"] == pytest.approx(float(delta.abs().max()), rel=1e-2)
