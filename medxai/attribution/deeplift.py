"""DeepLIFT (Rescale rule) against an all-zero reference.

Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating Activation
Differences", ICML 2017. Captum's ``DeepLift`` hooks every non-linearity module, so it runs on
:func:`make_explainable`'s copy (MONAI ResNets reuse one in-place ReLU per block, which Captum
refuses). Non-linearities Captum has no rule for (PReLU, SiLU) pass gradients, as in Captum.
The completeness gap (sum of attributions minus the output difference) is recorded.
"""
from __future__ import annotations

import torch
from captum.attr import DeepLift
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution
from medxai.attribution.targets import BoundTarget


class DeepLiftMethod(AttributionMethod):
    """Contribution of each voxel's difference from the reference (signed, sums to the output change)."""

    name = "deeplift"
    sign = "signed"
    hooks_every_module = True
    reference = "Shrikumar et al. 2017, arXiv:1704.02685"

    def __init__(self, network: nn.Module, *, execution: Execution | None = None, baseline: float = 0.0) -> None:
        super().__init__(network, execution=execution)
        self.params = {"baseline": float(baseline), "rule": "rescale"}

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        baselines = torch.full_like(inputs, self.params["baseline"])
        heatmap, delta = DeepLift(model).attribute(inputs, baselines=baselines, target=0, return_convergence_delta=True)
        self.diagnostics["convergence_delta"] = float(delta.abs().max())
        return heatmap
