"""Saliency: the absolute gradient of the target with respect to the input.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR workshop 2014. Captum's
``Saliency`` with ``abs=True``.
"""
from __future__ import annotations

import torch
from captum.attr import Saliency

from medxai.attribution.base import AttributionMethod
from medxai.attribution.targets import BoundTarget


class SaliencyMethod(AttributionMethod):
    """|d target / d input| per voxel and channel."""

    name = "saliency"
    sign = "positive"
    reference = "Simonyan et al. 2014, arXiv:1312.6034"

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        return Saliency(model).attribute(inputs, target=0, abs=True)
