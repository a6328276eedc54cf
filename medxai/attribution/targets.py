"""What an explanation explains: one scalar per sample, for classification and segmentation models.

Every attribution method needs a scalar output. Following TorchEsegeta (Chatterjee et al. 2022), a
target wraps the network in an ``nn.Module`` that reduces its output to shape ``(N, 1)``, so every
method (layer methods included) works for every target and Captum is always called with
``target=0``:

- classification (output ``(N, K)``): the predicted class, a named class, or the contrast
  ``logit_a - logit_b`` between two classes;
- segmentation (output ``(N, K, X, Y, Z)``, e.g. MONAI UNet/SegResNet): the logit of one class
  summed inside a region of the model grid: the predicted mask of that class (the default), a user
  mask, a box or one voxel.

A target is resolved once on the clean input (:meth:`Target.bind`): the predicted class and the
predicted mask are fixed then, so perturbed or noisy copies are scored for the same question.
:meth:`Target.resolve` does that once for all the methods run on one case (:class:`ResolvedTarget`
binds without another forward pass), reusing the clean output the caller already has.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medxai.errors import ConfigError


class BoundTarget(nn.Module):
    """``network`` followed by ``reduction``, a fixed map of its raw output to ``(N, 1)``.

    The reduction is a module of its own so that hook-based rules (LRP) see it as one more layer, and
    :meth:`with_network` can put the same question to a transformed copy of the network.
    """

    def __init__(self, network: nn.Module, reduction: nn.Module, *, description: dict[str, Any]) -> None:
        super().__init__()
        self.network = network
        self.reduction = reduction
        self.description = description

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.network(inputs))

    def with_network(self, network: nn.Module) -> "BoundTarget":
        """The same target on another network (e.g. a copy with batch norm folded in)."""
        return BoundTarget(network, self.reduction, description=self.description)


class ClassLogit(nn.Module):
    """``output[:, index]`` kept as ``(N, 1)``."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        return output[:, self.index : self.index + 1]


class ContrastLogit(nn.Module):
    """``output[:, first] - output[:, second]`` as ``(N, 1)``."""

    def __init__(self, first: int, second: int) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        return (output[:, self.first] - output[:, self.second]).unsqueeze(1)


class RegionLogit(nn.Module):
    """The logit map of class ``index`` summed inside ``region`` (a model-grid mask), as ``(N, 1)``."""

    def __init__(self, index: int, region: torch.Tensor) -> None:
        super().__init__()
        self.index = index
        self.register_buffer("region", region.to(torch.float32))

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        return (output[:, self.index] * self.region).flatten(1).sum(1, keepdim=True)


def _clean_output(network: nn.Module, inputs: torch.Tensor, output: torch.Tensor | None) -> torch.Tensor:
    """``output`` when the caller already ran the clean forward pass, else that pass."""
    if output is not None:
        return output.detach().float()
    with torch.no_grad():
        return network(inputs).float()


def output_kind(output: torch.Tensor, inputs: torch.Tensor) -> str:
    """``"classification"`` for ``(N, K)`` outputs, ``"segmentation"`` for ``(N, K, *input spatial)``."""
    if output.ndim == 2:
        return "classification"
    if output.ndim == inputs.ndim and output.shape[2:] == inputs.shape[2:]:
        return "segmentation"
    raise ConfigError(f"cannot explain a model output of shape {tuple(output.shape)} for input {tuple(inputs.shape)}")


def _check_index(index: int, count: int) -> int:
    if not 0 <= index < count:
        raise ConfigError(f"class index {index} out of range: the model has {count} output classes")
    return index


def _predicted_region(output: torch.Tensor, index: int) -> torch.Tensor:
    """The predicted mask of class ``index``: argmax for K > 1 channels, logit > 0 for one channel."""
    if output.shape[1] == 1:
        return output[0, 0] > 0
    return output[0].argmax(0) == index


def _segmentation_class(output: torch.Tensor) -> int:
    """The 'predicted' class of a segmentation output: the foreground class covering most voxels."""
    if output.shape[1] == 1:
        return 0
    counts = torch.bincount(output[0].argmax(0).flatten(), minlength=output.shape[1])[1:]
    return 1 + int(counts.argmax())


class Target(ABC):
    """A question asked of the model; :meth:`bind` resolves it on the clean input."""

    @abstractmethod
    def bind(self, network: nn.Module, inputs: torch.Tensor, *, output: torch.Tensor | None = None) -> BoundTarget:
        """The network reduced to this target's scalar, resolved on ``inputs`` ``(1, C, X, Y, Z)``
        (``output``: ``network(inputs)`` when the caller has it, saving that forward pass)."""

    def resolve(self, network: nn.Module, inputs: torch.Tensor, *, output: torch.Tensor | None = None) -> "ResolvedTarget":
        """This target resolved once on ``inputs``, to share between the methods run on one case."""
        bound = self.bind(network, inputs, output=output)
        return ResolvedTarget(bound.reduction, dict(bound.description))


@dataclass(frozen=True, eq=False)
class ResolvedTarget(Target):
    """A target already resolved on the clean input: the same reduction for any network, no forward pass."""

    reduction: nn.Module
    description: dict[str, Any]

    def bind(self, network: nn.Module, inputs: torch.Tensor, *, output: torch.Tensor | None = None) -> BoundTarget:
        return BoundTarget(network, self.reduction, description=self.description)


@dataclass(frozen=True)
class PredictedClass(Target):
    """Classification: the arg-max class. Segmentation: the foreground class covering most voxels,
    summed inside its predicted mask (or inside ``region`` when given)."""

    region: torch.Tensor | None = None

    def bind(self, network: nn.Module, inputs: torch.Tensor, *, output: torch.Tensor | None = None) -> BoundTarget:
        output = _clean_output(network, inputs, output)
        if output_kind(output, inputs) == "classification":
            index = int(output[0].argmax())
            return BoundTarget(network, ClassLogit(index), description={"kind": "predicted", "class_index": index})
        return ClassTarget(_segmentation_class(output), region=self.region).bind(network, inputs, output=output)


@dataclass(frozen=True)
class ClassTarget(Target):
    """One class by index. For segmentation models the class logit is summed inside ``region``
    (a ``(X, Y, Z)`` boolean tensor on the model grid) or, when None, inside the class's predicted mask."""

    index: int
    region: torch.Tensor | None = None

    def bind(self, network: nn.Module, inputs: torch.Tensor, *, output: torch.Tensor | None = None) -> BoundTarget:
        output = _clean_output(network, inputs, output)
        index = _check_index(self.index, output.shape[1])
        if output_kind(output, inputs) == "classification":
            return BoundTarget(network, ClassLogit(index), description={"kind": "class", "class_index": index})
        description: dict[str, Any] = {"kind": "segmentation", "class_index": index}
        if self.region is None:
            region = _predicted_region(output, index)
            description["region"] = "predicted mask"
            if not bool(region.any()):
                region = torch.ones_like(region)
                description["region"] = "whole grid (the predicted mask is empty)"
        else:
            region = self.region.to(device=output.device, dtype=torch.bool)
            if tuple(region.shape) != tuple(inputs.shape[2:]):
                raise ConfigError(f"target region shape {tuple(region.shape)} differs from the model grid {tuple(inputs.shape[2:])}")
            if not bool(region.any()):
                raise ConfigError("the target region is empty on the model grid")
            description["region"] = "given region"
        description["region_voxels"] = int(region.sum())
        return BoundTarget(network, RegionLogit(index, region), description=description)


@dataclass(frozen=True)
class ContrastTarget(Target):
    """Classification only: ``logit[first] - logit[second]`` (why ``first`` rather than ``second``)."""

    first: int
    second: int

    def bind(self, network: nn.Module, inputs: torch.Tensor, *, output: torch.Tensor | None = None) -> BoundTarget:
        output = _clean_output(network, inputs, output)
        if output_kind(output, inputs) != "classification":
            raise ConfigError("a contrast between two classes needs a classification model")
        first, second = (_check_index(i, output.shape[1]) for i in (self.first, self.second))
        if first == second:
            raise ConfigError("a contrast needs two different classes")
        description = {"kind": "contrast", "class_index": first, "versus_index": second}
        return BoundTarget(network, ContrastLogit(first, second), description=description)
