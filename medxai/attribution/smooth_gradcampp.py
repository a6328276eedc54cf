"""Smooth Grad-CAM++: Grad-CAM++ with gradients averaged over noisy copies of the input.

Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep
Convolutional Neural Network Models", arXiv:1908.01224 (2019). For ``n_samples`` inputs with
Gaussian noise (std = ``noise_level`` x intensity range, seeded generator) the gradient g = dS/dA at
the CAM layer is averaged as mean(g), mean(g^2), mean(g^3); alpha is Grad-CAM++'s exponential-output
closed form on those averages, alpha = mean(g^2) / (2 mean(g^2) + sum_space(A * mean(g^3))), with A
the clean input's activation; weights w_c = sum_space(alpha * ReLU(mean(g))), CAM = ReLU(sum_c w_c A_c).
At the last feature map of a network ending in global average pooling and one linear layer the gradient
does not depend on the input, so there it equals Grad-CAM++; the noise matters at earlier layers.
"""
from __future__ import annotations

import torch
from torch import nn

from medxai.attribution.base import Execution
from medxai.attribution.cam import activation_and_gradient, weighted_map
from medxai.attribution.gradcam import CamMethod
from medxai.attribution.gradcampp import gradcampp_weights
from medxai.attribution.targets import BoundTarget
from medxai.attribution.timing import Passes
from medxai.errors import ConfigError


class SmoothGradCamPlusPlusMethod(CamMethod):
    """Smooth Grad-CAM++ at the CAM layer, upsampled (positive)."""

    name = "smooth_gradcampp"
    reference = "Omeiza et al. 2019, arXiv:1908.01224"
    batches = True

    def __init__(
        self,
        network: nn.Module,
        *,
        execution: Execution | None = None,
        layer: str | None = None,
        n_samples: int = 8,
        noise_level: float = 0.15,
    ) -> None:
        super().__init__(network, execution=execution, layer=layer)
        if n_samples < 1 or noise_level < 0:
            raise ConfigError(f"smooth_gradcampp needs n_samples >= 1 and noise_level >= 0, got {n_samples}, {noise_level}")
        self.params.update({"n_samples": n_samples, "noise_level": noise_level,
                            "alpha": "exponential-output closed form on noise-averaged g, g^2, g^3"})

    def planned_passes(self, inputs: torch.Tensor) -> Passes:
        """The clean input's activation and gradient, then ``n_samples`` noisy ones."""
        samples = self.params["n_samples"]
        return Passes(count=samples, unit="samples", backward=1 + samples, batch=self.pass_batch(samples))

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        layer = self.layer(model, inputs)
        activation, _ = activation_and_gradient(model, layer, inputs)
        stdev = self.params["noise_level"] * float(inputs.max() - inputs.min())
        generator = torch.Generator(device=inputs.device).manual_seed(self.execution.seed)
        batch = min(self.batch_size(model, inputs), self.params["n_samples"])
        sums = [torch.zeros_like(activation, dtype=torch.float32) for _ in range(3)]
        remaining = self.params["n_samples"]
        while remaining > 0:
            count = min(batch, remaining)
            noise = torch.randn((count, *inputs.shape[1:]), generator=generator, device=inputs.device) * stdev
            _, gradient = activation_and_gradient(model, layer, inputs + noise)
            gradient = gradient.float()
            for power, total in enumerate(sums, start=1):
                total += gradient.pow(power).sum(0, keepdim=True)
            remaining -= count
        mean_1, mean_2, mean_3 = (total / self.params["n_samples"] for total in sums)
        self.diagnostics.update({"noise_stdev": stdev, "internal_batch_size": batch})
        activation = activation.float()
        return weighted_map(gradcampp_weights(activation, mean_1, mean_2, mean_3), activation, inputs)
