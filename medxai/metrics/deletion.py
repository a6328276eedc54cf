"""Deletion and insertion curves of a 3D attribution over mm-sized blocks (Petsiuk et al., "RISE", BMVC 2018;
Samek et al., "Evaluating the visualization of what a deep neural network has learned", 2017).

The model grid is cut into cubes of ``block_mm`` millimetres; blocks are ranked by the attribution they
hold. Deletion replaces the most-attributed blocks by a baseline first and follows the target class
probability down (a faithful map makes it fall fast: low area); insertion starts from the baseline and
puts the most-attributed blocks back first (high area is good). Probabilities lie in [0, 1] and the
fraction of blocks on the x axis in [0, 1], so the areas do too. Written by hand: Captum has no
deletion curve; the curve points are evaluated in batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor

from medxai.errors import ConfigError
from medxai.metrics.perturbations import block_voxels

ForwardFunc = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Curve:
    """Fractions of blocks removed (deletion) or inserted (insertion), the target probability at each, and
    the area under the curve (trapezoid rule, in [0, 1])."""

    mode: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: float


def target_probability(logits: Tensor, target: int) -> Tensor:
    """Softmax probability of ``target`` for multi-class outputs; sigmoid of the single logit otherwise."""
    if logits.ndim == 1 or logits.shape[1] == 1:
        probability = torch.sigmoid(logits.reshape(-1))
        return probability if target == 1 else 1.0 - probability
    return torch.softmax(logits, dim=1)[:, target]


def block_ranks(attributions: Tensor, *, spacing: tuple[float, float, float], block_mm: float) -> Tensor:
    """(X, Y, Z) int map: the rank of each voxel's block, 0 for the block holding the most attribution.

    ``attributions`` is (C, X, Y, Z) or (X, Y, Z); a block's score is the sum over its voxels and channels;
    ties go to the lower block index, so the order is deterministic.
    """
    volume = attributions.detach().to("cpu", torch.float64)
    if volume.ndim == 4:
        volume = volume.sum(dim=0)
    shape = tuple(int(n) for n in volume.shape)
    edge = block_voxels(block_mm, spacing, shape)  # type: ignore[arg-type]
    grid = [(n + e - 1) // e for n, e in zip(shape, edge)]
    axes = [torch.arange(n) // e for n, e in zip(shape, edge)]
    labels = (axes[0][:, None, None] * grid[1] + axes[1][None, :, None]) * grid[2] + axes[2][None, None, :]
    scores = torch.zeros(grid[0] * grid[1] * grid[2], dtype=torch.float64).index_add_(0, labels.reshape(-1), volume.reshape(-1))
    order = np.argsort(-scores.numpy(), kind="stable")
    rank = torch.empty(len(order), dtype=torch.long)
    rank[torch.from_numpy(order)] = torch.arange(len(order))
    return rank[labels]


def deletion_curve(
    forward_func: ForwardFunc,
    inputs: Tensor,
    attributions: Tensor,
    *,
    target: int,
    spacing: tuple[float, float, float],
    mode: Literal["deletion", "insertion"] = "deletion",
    block_mm: float = 8.0,
    n_steps: int = 16,
    baseline: float = 0.0,
    max_examples_per_batch: int | None = None,
) -> Curve:
    """The deletion (or insertion) curve of one example: ``inputs`` (1, C, X, Y, Z) and its attributions
    (1, C or 1, X, Y, Z) on the model grid with ``spacing`` mm; ``forward_func`` returns logits."""
    if mode not in ("deletion", "insertion"):
        raise ConfigError(f"curve mode must be 'deletion' or 'insertion', got {mode!r}")
    if n_steps < 1:
        raise ConfigError(f"n_steps must be >= 1, got {n_steps}")
    if inputs.ndim != 5 or inputs.shape[0] != 1:
        raise ConfigError(f"expected one example shaped (1, C, X, Y, Z), got {tuple(inputs.shape)}")
    if attributions.shape[-3:] != inputs.shape[-3:]:
        raise ConfigError(f"attribution shape {tuple(attributions.shape)} does not match input shape {tuple(inputs.shape)}")
    ranks = block_ranks(attributions[0], spacing=spacing, block_mm=block_mm).to(inputs.device)
    n_blocks = int(ranks.max()) + 1
    fractions = np.linspace(0.0, 1.0, n_steps + 1)
    counts = torch.as_tensor(np.rint(fractions * n_blocks).astype(np.int64), device=inputs.device)
    example = inputs.detach()[0]
    fill = torch.full_like(example, baseline)
    chunk = len(counts) if max_examples_per_batch is None else max(1, int(max_examples_per_batch))
    scores: list[Tensor] = []
    with torch.no_grad():
        for start in range(0, len(counts), chunk):
            changed = (ranks[None] < counts[start : start + chunk, None, None, None])[:, None]
            if mode == "deletion":
                batch = torch.where(changed, fill, example)
            else:
                batch = torch.where(changed, example, fill)
            scores.append(target_probability(forward_func(batch), target).detach().to("cpu", torch.float64))
    values = torch.cat(scores).numpy()
    return Curve(mode=mode, fractions=fractions, scores=values, auc=float(np.trapezoid(values, fractions)))
