"""Shared machinery of the class-activation-map methods (Grad-CAM, Grad-CAM++, Smooth Grad-CAM++).

CAMs are computed at one convolutional layer and upsampled to the model grid with Captum's
``LayerAttribution.interpolate`` (trilinear). The model grid is a millimetre grid, so index-space
trilinear upsampling is also correct in mm on anisotropic scans; the engine then maps the map to
the scan's own grid.
"""
from __future__ import annotations

import copy

import torch
from captum.attr import LayerAttribution
from torch import nn

from medxai.attribution.derived import derived_network
from medxai.errors import ConfigError


def without_inplace(network: nn.Module) -> nn.Module:
    """A deep copy with every ``inplace`` switch off, so a captured activation is never overwritten
    (built once per network while its weights are unchanged)."""
    return derived_network(network, "without-inplace", _copy_without_inplace)


def _copy_without_inplace(network: nn.Module) -> nn.Module:
    duplicate = copy.deepcopy(network)
    for module in duplicate.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return duplicate


def _spatial_outputs(network: nn.Module, inputs: torch.Tensor) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """(name, spatial voxel count) of every module's 5D output in completion order, and call counts."""
    records: list[tuple[str, int]] = []
    calls: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(_module: nn.Module, _args: object, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.ndim == inputs.ndim:
                records.append((name, int(output.shape[2:].numel())))
        return record

    for name, module in network.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            network(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return records, calls


def find_cam_layer(network: nn.Module, inputs: torch.Tensor) -> str:
    """The deepest feature map: the last module to finish at the coarsest resolution above one voxel.

    For classification CNNs that is the last convolutional stage before global pooling (``layer4`` of
    a ResNet); for encoder-decoder segmenters it is the bottleneck. Modules called more than once per
    forward pass are skipped (their output is ambiguous).
    """
    records, calls = _spatial_outputs(network, inputs)
    candidates = [(name, size) for name, size in records if calls[name] == 1]
    if not candidates:
        raise ConfigError("the network has no module with a spatial (N, C, X, Y, Z) output for a CAM")
    informative = [(name, size) for name, size in candidates if size > 1] or candidates
    coarsest = min(size for _, size in informative)
    return [name for name, size in informative if size == coarsest][-1]


def get_layer(network: nn.Module, name: str) -> nn.Module:
    """The submodule ``name`` of ``network`` or a ConfigError listing a few valid names."""
    modules = dict(network.named_modules())
    if name not in modules or not name:
        examples = ", ".join(list(modules)[1:6])
        raise ConfigError(f"no layer named {name!r} in the network (layers include {examples}, ...)")
    return modules[name]


def activation_and_gradient(model: nn.Module, layer: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activation ``A`` and the gradient of the ``(N, 1)`` output with respect to it."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
        captured.append(output)

    handle = layer.register_forward_hook(hook)
    try:
        score = model(inputs.detach().requires_grad_(True))
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ConfigError(f"the CAM layer ran {len(captured)} times in one forward pass; choose a layer used once")
    activation = captured[0]
    (gradient,) = torch.autograd.grad(score.sum(), activation)
    return activation.detach(), gradient.detach()


def weighted_map(weights: torch.Tensor, activation: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_c w_c A_c) upsampled trilinearly to the input's spatial shape, ``(N, 1, X, Y, Z)``."""
    cam = torch.relu((weights * activation).sum(1, keepdim=True))
    return LayerAttribution.interpolate(cam.float(), tuple(inputs.shape[2:]), interpolate_mode="trilinear")
