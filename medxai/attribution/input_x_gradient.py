"""Input x Gradient: the gradient times the input, a first-order Taylor attribution.

Shrikumar et al., "Not Just a Black Box", arXiv:1605.01713 (2016). Captum's ``InputXGradient``.
"""
from __future__ import annotations

import torch
from captum.attr import InputXGradient

from medxai.attribution.base import AttributionMethod
from medxai.attribution.targets import BoundTarget


class InputXGradientMethod(AttributionMethod):
    """input * d target / d input (signed)."""

    name = "input_x_gradient"
    sign = "signed"
    reference = "Shrikumar et al. 2016, arXiv:1605.01713"

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        return InputXGradient(model).attribute(inputs, target=0)
