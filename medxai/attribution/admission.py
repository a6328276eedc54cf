"""The pre-flight memory check every caller that runs a method on a case goes through: measure the case's
per-sample costs once, then admit each method only when its largest pass fits in the free memory.

Out of host memory the kernel kills the process instead of raising, which would take the other methods and
cases of a batch with it; a refused method is a ``MemoryError`` naming it, its need and the free memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from medxai.attribution.memory import check_fits, per_sample_bytes
from medxai.attribution.registry import METHODS


@dataclass(frozen=True)
class SampleCost:
    """Estimated bytes of one sample in a forward+backward and in a forward-only pass (``memory.per_sample_bytes``)."""

    backward: int
    forward: int


def sample_cost(network: nn.Module, inputs: torch.Tensor, methods: Sequence[str]) -> SampleCost:
    """The per-sample costs of ``inputs``, the forward-only one only when one of ``methods`` runs without gradients."""
    forward_only = any(not METHODS[name].needs_gradients for name in methods)
    return SampleCost(backward=per_sample_bytes(network, inputs),
                      forward=per_sample_bytes(network, inputs, backward=False) if forward_only else 0)


def admit(name: str, cost: SampleCost, *, batch_size: int, device: torch.device) -> int:
    """The estimated bytes of method ``name``'s largest pass at ``batch_size``; MemoryError when they exceed
    the memory free on ``device`` now."""
    needed = METHODS[name].memory_needed(backward_bytes=cost.backward, forward_bytes=cost.forward, batch_size=batch_size)
    check_fits(name, needed, device)
    return needed
