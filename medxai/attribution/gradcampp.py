"""Grad-CAM++: CAM weights from positive gradients with per-location coefficients alpha.

Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
WACV 2018. Alpha uses the closed form for an exponential output (as MONAI's ``GradCAMpp``), where
the 2nd and 3rd derivatives become powers of the gradient g = dS/dA:

    alpha = g^2 / (2 g^2 + sum_space(A * g^3)),   w_c = sum_space(alpha * ReLU(g)),
    CAM = ReLU(sum_c w_c A_c).

MONAI multiplies ReLU(g) by exp(S); that positive per-sample constant only scales the map and
overflows for summed segmentation logits, so it is left out (the map equals MONAI's divided by
exp(S), tested). Not MONAI's class itself: it keeps hooks on the network for good and applies an
inverted min-max normaliser; the hooks here are Captum-style, removed after each call.
"""
from __future__ import annotations

import torch

from medxai.attribution.cam import activation_and_gradient, weighted_map
from medxai.attribution.gradcam import CamMethod
from medxai.attribution.targets import BoundTarget


def gradcampp_weights(
    activation: torch.Tensor, gradient: torch.Tensor, gradient_2: torch.Tensor, gradient_3: torch.Tensor
) -> torch.Tensor:
    """Channel weights ``(N, C, 1, 1, 1)`` from the activation and the (averaged) g, g^2, g^3."""
    spatial = tuple(range(2, activation.ndim))
    denominator = 2 * gradient_2 + (activation * gradient_3).sum(spatial, keepdim=True)
    denominator = torch.where(denominator != 0.0, denominator, torch.ones_like(denominator))
    alpha = gradient_2 / (denominator + 1e-7)
    return (alpha * torch.relu(gradient)).sum(spatial, keepdim=True)


class GradCamPlusPlusMethod(CamMethod):
    """Grad-CAM++ at the CAM layer, upsampled (positive)."""

    name = "gradcampp"
    reference = "Chattopadhyay et al. 2018, arXiv:1710.11063"

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        activation, gradient = activation_and_gradient(model, self.layer(model, inputs), inputs)
        activation, gradient = activation.float(), gradient.float()
        weights = gradcampp_weights(activation, gradient, gradient.pow(2), gradient.pow(3))
        return weighted_map(weights, activation, inputs)
