"""Layer-wise Relevance Propagation (epsilon rule) for 3D CNNs.

Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance
Propagation", PLoS ONE 2015; rules as in Montavon et al., "Layer-Wise Relevance Propagation: An
Overview" (2019). Captum's ``LRP`` knows only 2D layers and refuses reused modules, so it runs on a
copy prepared by :func:`make_explainable` and :func:`lrp_network` (BatchNorm folded into convs,
residual additions split, gates held constant, other activations and unfolded normalisations passed
through), and every leaf layer gets the epsilon rule: convolutions (1-3D, transposed), linear layers,
pooling, upsampling, flatten, additions, gated products, pass-through wrappers and the target's
reduction. ReLU and Tanh keep Captum's own pass-through. Layer types outside these lists also get
the epsilon rule and are listed in the record. Biases absorb relevance, so the total relevance
differs from the output; the recorded convergence delta (output minus total relevance) says by how much.
"""
from __future__ import annotations

import torch
from captum.attr import LRP
from captum.attr._utils.custom_modules import Addition_Module
from captum.attr._utils.lrp_rules import EpsilonRule
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution
from medxai.attribution.derived import derived_network
from medxai.attribution.lrp_surgery import Concatenation, GatedProduct, RelevancePassThrough, lrp_network
from medxai.attribution.targets import BoundTarget, ClassLogit, ContrastLogit, RegionLogit
from medxai.attribution.timing import Passes

_EPSILON_LAYERS = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.Flatten,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReplicationPad3d, nn.ReflectionPad3d,
    Addition_Module, Concatenation, GatedProduct, RelevancePassThrough, ClassLogit, ContrastLogit, RegionLogit,
)
_CAPTUM_PASS_THROUGH = (nn.ReLU, nn.Tanh, nn.Dropout)


def attach_rules(model: nn.Module, *, epsilon: float) -> list[str]:
    """Set ``module.rule`` on every leaf layer; returns the layer types that got the generic default."""
    defaulted: set[str] = set()
    for module in model.modules():
        if list(module.children()) or isinstance(module, _CAPTUM_PASS_THROUGH):
            continue
        if not isinstance(module, _EPSILON_LAYERS):
            defaulted.add(type(module).__name__)
        module.rule = EpsilonRule(epsilon=epsilon)
    return sorted(defaulted)


class LrpMethod(AttributionMethod):
    """Epsilon-LRP relevance per voxel (signed; sums to the target output up to the recorded delta)."""

    name = "lrp"
    sign = "signed"
    hooks_every_module = True
    reference = "Bach et al. 2015, doi:10.1371/journal.pone.0130140"
    pass_memory = 2.5  # the rules' copies of every layer's activations: measured 1.8-2.4 per-sample passes

    def __init__(self, network: nn.Module, *, execution: Execution | None = None, epsilon: float = 1e-6) -> None:
        super().__init__(network, execution=execution)
        self.params = {"rule": "epsilon", "epsilon": epsilon, "batch_norm": "folded into the preceding convolution",
                       "residual_additions": "split (Addition_Module)", "gates": "held constant"}

    def planned_passes(self, inputs: torch.Tensor) -> Passes:
        """Captum's LRP: a forward with the rules' hooks, then a forward+backward on the graph."""
        return Passes(count=1, unit="pass", forward=1, backward=1)

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        prepared = derived_network(model.network, "lrp", lambda network: lrp_network(network, inputs),
                                   variant=tuple(inputs.shape))
        relevance_model = model.with_network(prepared)
        # Captum deletes the rules after every call, so they are attached right before each one.
        self.diagnostics["default_rule_layers"] = attach_rules(relevance_model, epsilon=self.params["epsilon"])
        heatmap, delta = LRP(relevance_model).attribute(inputs, target=0, return_convergence_delta=True)
        self.diagnostics["convergence_delta"] = float(delta.detach().abs().max())
        return heatmap
