"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

On a deep copy of the network, the parameterised layers are re-initialised one after the other from the
output towards the input (cascading randomisation; each with its own ``reset_parameters()`` under a seeded
generator), and the explanation is recomputed at a few points of the cascade. An explanation that still
looks like the original once the whole model is destroyed does not depend on what the model learned: the
method fails the check.

Similarity: Spearman rank correlation of the absolute maps (the paper's main measure) and of the signed
maps, and SSIM (``skimage.metrics.structural_similarity`` in 3D) of the absolute maps each scaled to [0, 1].
The default threshold 0.5 on the absolute-value Spearman of the fully randomised model is Cohen's boundary
of a "large" correlation: above it, most of the map's ranking survives the destruction of the model (the
paper's failing methods, guided backprop and guided Grad-CAM, stay far above it; gradients fall near 0).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy import stats
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from medxai.errors import ConfigError

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class RandomisationStep:
    """Similarity to the original map after randomising the top ``layers_randomised`` layers (down to ``layer``)."""

    layers_randomised: int
    layer: str
    spearman_abs: float
    spearman: float
    ssim: float


@dataclass(frozen=True)
class SanityResult:
    """The cascade's steps; the check passes when the fully randomised map's |Spearman| is below ``threshold``."""

    steps: tuple[RandomisationStep, ...]
    n_layers: int
    threshold: float

    @property
    def final(self) -> RandomisationStep:
        return self.steps[-1]

    @property
    def passed(self) -> bool:
        return bool(self.final.spearman_abs < self.threshold)


def parameterised_layers(network: nn.Module, example: Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order a forward pass on ``example`` first runs them
    (modules the forward pass never reaches are left out)."""
    order: list[str] = []
    hooks = []
    for name, module in network.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            hooks.append(module.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name)))
    try:
        with torch.no_grad():
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


def reinitialise(module: nn.Module) -> None:
    """Re-initialise a module's own parameters with its ``reset_parameters()`` (PyTorch's default
    initialisation); modules without one get N(0, 0.02) weights, as a generic fallback."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            parameter.normal_(0.0, 0.02)


def _flat(attribution: Tensor) -> np.ndarray:
    return attribution.detach().to("cpu", torch.float64).numpy().ravel()


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman correlation; a constant map correlates 1 with an identical map and 0 with any other."""
    first_flat, second_flat = first.ravel(), second.ravel()
    constant = [np.ptp(first_flat) == 0, np.ptp(second_flat) == 0]
    if any(constant):
        return 1.0 if all(constant) and np.array_equal(first_flat, second_flat) else 0.0
    return float(stats.spearmanr(first_flat, second_flat).statistic)


def _spatial(attribution: Tensor) -> np.ndarray:
    """|map| summed over channels as (X, Y, Z), scaled to [0, 1] by its maximum."""
    volume = attribution.detach().to("cpu", torch.float64).abs()
    while volume.ndim > 3:
        volume = volume.sum(dim=0)
    array = volume.numpy()
    peak = float(array.max())
    return array / peak if peak > 0 else array


def ssim(first: Tensor, second: Tensor) -> float:
    """3D SSIM of the two absolute maps, each scaled to [0, 1] (data_range 1); NaN on grids under 3 voxels."""
    a, b = _spatial(first), _spatial(second)
    window = min(7, min(a.shape) - (1 - min(a.shape) % 2))
    if window < 3:
        return math.nan
    return float(structural_similarity(a, b, win_size=window, data_range=1.0))


def compare(original: Tensor, randomised: Tensor) -> tuple[float, float, float]:
    """(Spearman of |maps|, Spearman of signed maps, SSIM of |maps|)."""
    a, b = _flat(original), _flat(randomised)
    return spearman(np.abs(a), np.abs(b)), spearman(a, b), ssim(original, randomised)


def _checkpoints(n_layers: int, n_steps: int) -> list[int]:
    """``n_steps`` points of the cascade, evenly spaced, always ending with the fully randomised model."""
    return sorted({max(1, int(math.ceil(n_layers * (i + 1) / n_steps))) for i in range(min(n_steps, n_layers))})


def cascading_randomisation(
    network: nn.Module,
    example: Tensor,
    explain: Callable[[nn.Module], Tensor],
    *,
    seed: int = 0,
    n_steps: int = 3,
    threshold: float = DEFAULT_THRESHOLD,
) -> SanityResult:
    """Run the cascade on a deep copy of ``network`` (the original is left untouched).

    ``explain(net)`` returns the explanation of the case under study by ``net`` (same input, same target);
    ``example`` is that input, used to find the layers' execution order. The explanation is recomputed after
    ``n_steps`` evenly spaced points of the cascade, the last being the fully randomised model.
    """
    if n_steps < 1:
        raise ConfigError(f"randomisation steps must be >= 1, got {n_steps}")
    if not 0 < threshold <= 1:
        raise ConfigError(f"sanity threshold must be in (0, 1], got {threshold}")
    original = explain(network).detach()
    randomised = copy.deepcopy(network)
    layers = list(reversed(parameterised_layers(randomised, example)))
    if not layers:
        raise ConfigError("the network has no parameterised layers to randomise")
    modules = dict(randomised.named_modules())
    devices = [example.device] if example.device.type == "cuda" else []
    checkpoints = set(_checkpoints(len(layers), n_steps))
    steps: list[RandomisationStep] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for count, name in enumerate(layers, start=1):
            reinitialise(modules[name])
            if count in checkpoints:
                spearman_abs, spearman_signed, similarity = compare(original, explain(randomised).detach())
                steps.append(RandomisationStep(count, name, spearman_abs, spearman_signed, similarity))
    return SanityResult(steps=tuple(steps), n_layers=len(layers), threshold=threshold)


def as_record(result: SanityResult) -> dict[str, Any]:
    """JSON-ready summary: pass/fail, the final step's scores and the whole cascade."""
    return {
        "sanity_pass": result.passed,
        "sanity_spearman": result.final.spearman_abs,
        "sanity_spearman_signed": result.final.spearman,
        "sanity_ssim": result.final.ssim,
        "sanity_threshold": result.threshold,
        "cascade": [step.__dict__ for step in result.steps],
    }

