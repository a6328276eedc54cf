"""Guided Backpropagation: gradients with negative signals stopped at every ReLU.

Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR workshop 2015.
Captum's ``GuidedBackprop``, which hooks every ReLU module; it runs on :func:`make_explainable`'s
copy so MONAI's reused in-place ReLUs do not defeat the hooks.
"""
from __future__ import annotations

import torch
from captum.attr import GuidedBackprop

from medxai.attribution.base import AttributionMethod
from medxai.attribution.targets import BoundTarget


class GuidedBackpropMethod(AttributionMethod):
    """Guided gradient of the target (signed, mostly positive)."""

    name = "guided_backprop"
    sign = "signed"
    hooks_every_module = True
    reference = "Springenberg et al. 2015, arXiv:1412.6806"

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        return GuidedBackprop(model).attribute(inputs, target=0)
