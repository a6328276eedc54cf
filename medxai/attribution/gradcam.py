"""Grad-CAM: feature maps of one convolutional layer weighted by their mean gradient, ReLU-ed.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017. Captum's ``LayerGradCam`` at the layer :func:`find_cam_layer` picks (or the
one named), upsampled trilinearly to the model grid with ``LayerAttribution.interpolate``.
"""
from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution
from medxai.attribution.cam import find_cam_layer, get_layer, without_inplace
from medxai.attribution.targets import BoundTarget


class CamMethod(AttributionMethod):
    """Common set-up of the CAM methods: an in-place-free copy and the target layer."""

    sign = "positive"

    def __init__(self, network: nn.Module, *, execution: Execution | None = None, layer: str | None = None) -> None:
        super().__init__(without_inplace(network), execution=execution)
        self.params = {"layer": layer or "auto (deepest feature map)", "upsampling": "trilinear (model grid)"}
        self._layer_name = layer

    def layer(self, model: BoundTarget, inputs: torch.Tensor) -> nn.Module:
        """The CAM layer of ``model.network``, chosen on the first call when not named."""
        if self._layer_name is None:
            self._layer_name = find_cam_layer(model.network, inputs)
        self.diagnostics["layer"] = self._layer_name
        return get_layer(model.network, self._layer_name)


class GradCamMethod(CamMethod):
    """ReLU(sum_c mean(dS/dA_c) A_c) at the CAM layer, upsampled (positive)."""

    name = "gradcam"
    reference = "Selvaraju et al. 2017, arXiv:1610.02391"

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        cam = LayerGradCam(model, self.layer(model, inputs)).attribute(inputs, target=0, relu_attributions=True)
        return LayerAttribution.interpolate(cam.float(), tuple(inputs.shape[2:]), interpolate_mode="trilinear")
