"""Integrated Gradients from an all-zero baseline, with a completeness check that adds steps.

Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017. Captum's
``IntegratedGradients`` (Gauss-Legendre quadrature). Completeness says the attributions sum to
``F(x) - F(baseline)``; the gap is Captum's convergence delta (computed here from the two end points,
evaluated once, instead of Captum re-running them after every attribution). Starting from ``n_steps``,
the step count doubles until ``|delta| <= tolerance * |F(x) - F(baseline)|`` or ``max_steps`` is
reached; the steps used and the final delta are recorded.
"""
from __future__ import annotations

import torch
from captum.attr import IntegratedGradients
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution
from medxai.attribution.targets import BoundTarget
from medxai.attribution.timing import Passes
from medxai.errors import ConfigError

ABSOLUTE_TOLERANCE = 1e-6  # an output change this small counts as converged whatever its relative gap


class IntegratedGradientsMethod(AttributionMethod):
    """Path integral of gradients times (input - baseline) (signed)."""

    name = "integrated_gradients"
    sign = "signed"
    reference = "Sundararajan et al. 2017, arXiv:1703.01365"
    batches = True

    def __init__(
        self,
        network: nn.Module,
        *,
        execution: Execution | None = None,
        n_steps: int = 32,
        max_steps: int = 256,
        tolerance: float = 0.05,
        baseline: float = 0.0,
    ) -> None:
        super().__init__(network, execution=execution)
        if not 1 <= n_steps <= max_steps:
            raise ConfigError(f"integrated_gradients needs 1 <= n_steps <= max_steps, got {n_steps} and {max_steps}")
        self.params = {"n_steps": n_steps, "max_steps": max_steps, "tolerance": tolerance, "baseline": float(baseline),
                       "method": "gausslegendre"}

    def planned_passes(self, inputs: torch.Tensor) -> Passes:
        """F(x) and F(baseline), then ``n_steps`` gradient steps (more only if completeness is not reached)."""
        steps = self.params["n_steps"]
        return Passes(count=steps, unit="steps", forward=2, backward=steps, batch=self.pass_batch(steps))

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        baselines = torch.full_like(inputs, self.params["baseline"])
        with torch.no_grad():  # F(x) and F(baseline) in one batch, computed once for every step count tried
            ends = model(torch.cat([inputs, baselines]))[:, 0].float()
        change = float(ends[0] - ends[1])
        batch = self.batch_size(model, inputs)
        integrator = IntegratedGradients(model)
        steps = self.params["n_steps"]
        while True:
            heatmap = integrator.attribute(inputs, baselines=baselines, target=0, n_steps=steps, method="gausslegendre",
                                           internal_batch_size=batch)
            gap = abs(float(heatmap.double().sum()) - change)  # Captum's convergence delta, without its 2 passes
            converged = gap <= max(self.params["tolerance"] * abs(change), ABSOLUTE_TOLERANCE)
            if converged or steps * 2 > self.params["max_steps"]:
                break
            steps *= 2
        self.diagnostics.update(
            {"internal_batch_size": batch, "n_steps_used": steps, "convergence_delta": gap,
             "output_change": abs(change), "converged": converged}
        )
        return heatmap
