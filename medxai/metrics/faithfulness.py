"""Infidelity and max-sensitivity of 3D attributions (Yeh et al., "On the (In)fidelity and Sensitivity of
Explanations", NeurIPS 2019), computed by Captum's reference implementations (``captum.metrics``) with
perturbations that make sense for volumes (:mod:`medxai.metrics.perturbations`) and batch sizes bounded by
the memory actually available.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import infidelity_perturb_func_decorator, sensitivity_max
from torch import Tensor, nn

from medxai.attribution.memory import available_bytes, per_sample_bytes
from medxai.attribution.memory import max_batch as device_max_batch
from medxai.errors import ConfigError
from medxai.metrics.perturbations import GaussianNoise, Perturbation, UniformNoise, as_captum_perturb_func

ForwardFunc = Callable[[Tensor], Tensor]
ExplanationFunc = Callable[..., Tensor]
Target = int | Sequence[int] | Tensor | None


def _match_channels(attributions: Tensor, inputs: Tensor) -> Tensor:
    """Attributions with one channel (e.g. Grad-CAM) apply to every input channel."""
    if attributions.shape == inputs.shape:
        return attributions
    if attributions.shape[0] == inputs.shape[0] and attributions.shape[1] == 1 and attributions.shape[2:] == inputs.shape[2:]:
        return attributions.expand_as(inputs)
    raise ConfigError(f"attribution shape {tuple(attributions.shape)} does not match input shape {tuple(inputs.shape)}")


def infidelity(
    forward_func: ForwardFunc,
    inputs: Tensor,
    attributions: Tensor,
    *,
    target: Target = None,
    perturbation: Perturbation | None = None,
    n_perturb_samples: int = 16,
    multiply_by_inputs: bool = False,
    attribution_baseline: float = 0.0,
    normalize: bool = True,
    max_examples_per_batch: int | None = None,
    seed: int = 0,
) -> Tensor:
    """Infidelity per example, shape (B,): E_I[(I . attributions - (f(x) - f(x - I)))^2] (Yeh et al. 2019).

    ``perturbation`` defaults to Gaussian noise of 0.1 x the robust intensity range; use
    :class:`~medxai.metrics.perturbations.BlockPerturbation` for mm-sized region removal. Set
    ``multiply_by_inputs`` for "global" attributions that already include the input factor (integrated
    gradients, input x gradient, DeepLIFT, LRP, occlusion): the perturbation is then
    ``(x - x_perturbed) / (x - attribution_baseline)``, as in Captum's decorator. ``normalize`` (Yeh et al.'s
    official code) makes the score invariant to the attribution's scale, so methods can be compared.
    """
    if n_perturb_samples < 1:
        raise ConfigError(f"n_perturb_samples must be >= 1, got {n_perturb_samples}")
    stream = as_captum_perturb_func(perturbation or GaussianNoise(), batch_size=inputs.shape[0], seed=seed)
    perturb_func = infidelity_perturb_func_decorator(multiply_by_inputs)(
        lambda perturbed_inputs, baselines=None: stream(perturbed_inputs)
    )
    clean = inputs.detach()
    return captum_infidelity(
        _reusing_clean_output(forward_func, clean),
        perturb_func,
        clean,
        _match_channels(attributions.detach(), inputs),
        baselines=attribution_baseline if multiply_by_inputs else None,
        target=target,
        n_perturb_samples=n_perturb_samples,
        max_examples_per_batch=max_examples_per_batch,
        normalize=normalize,
    ).detach()


def _reusing_clean_output(forward_func: ForwardFunc, clean: Tensor) -> ForwardFunc:
    """``forward_func`` that runs the clean input once: Captum's infidelity runs it again for every batch
    of perturbations (one wasted forward pass per batch once the batch is bounded by memory)."""
    cached: list[Tensor] = []

    def forward(batch: Tensor, *args: Any) -> Tensor:
        if batch is not clean or args:
            return forward_func(batch, *args)
        if not cached:
            cached.append(forward_func(batch))
        return cached[0]

    return forward


def _with_grad(explain: ExplanationFunc) -> ExplanationFunc:
    """Captum calls the explanation under ``no_grad``, the first time with a 1-tuple it expects back as one."""

    def call(inputs: Tensor | tuple[Tensor, ...], **kwargs: Any) -> Tensor | tuple[Tensor]:
        with torch.enable_grad():
            if isinstance(inputs, tuple):
                return (explain(inputs[0], **kwargs).detach(),)
            return explain(inputs, **kwargs).detach()

    return call


def max_sensitivity(
    explain: ExplanationFunc,
    inputs: Tensor,
    *,
    target: Target = None,
    perturbation: Perturbation | None = None,
    n_perturb_samples: int = 8,
    max_examples_per_batch: int | None = None,
    seed: int = 0,
) -> Tensor:
    """Max-sensitivity per example, shape (B,): max over perturbed inputs of ||e(x') - e(x)|| / ||e(x)||
    (Yeh et al. 2019), with ``explain(inputs, target=...)`` returning attributions for a batch.

    ``perturbation`` defaults to uniform noise in an L-infinity ball of 0.02 x the robust intensity range.
    """
    if n_perturb_samples < 1:
        raise ConfigError(f"n_perturb_samples must be >= 1, got {n_perturb_samples}")
    stream = as_captum_perturb_func(perturbation or UniformNoise(), batch_size=inputs.shape[0], seed=seed)
    return sensitivity_max(
        _with_grad(explain),
        inputs.detach(),
        perturb_func=stream,
        n_perturb_samples=n_perturb_samples,
        max_examples_per_batch=max_examples_per_batch,
        target=target,
    ).detach()


def bounded_batch_size(
    network: nn.Module,
    example: Tensor,
    *,
    n_samples: int,
    backward: bool,
    memory_fraction: float = 0.25,
    memory_bytes: int | None = None,
    max_batch: int | None = None,
) -> int:
    """``max_examples_per_batch`` for Captum's metrics: as many perturbed copies of ``example`` as fit in
    ``memory_fraction`` of the free memory (or of ``memory_bytes``), between 1 and ``n_samples`` and at most
    ``max_batch`` (default: the device's limit for examples of this size, :func:`medxai.attribution.memory.max_batch`)."""
    if not 0 < memory_fraction <= 1:
        raise ConfigError(f"memory fraction must be in (0, 1], got {memory_fraction}")
    budget = memory_fraction * (memory_bytes if memory_bytes is not None else available_bytes(example.device))
    per_example = max(1, per_sample_bytes(network, example, backward=backward))
    if max_batch is None:
        # the device's batch limit was measured against the backward-inclusive size, whatever this pass is
        throughput_bytes = per_example if backward else per_sample_bytes(network, example)
        max_batch = device_max_batch(example.device, throughput_bytes)
    return int(max(1, min(n_samples, max_batch, budget // per_example)))
