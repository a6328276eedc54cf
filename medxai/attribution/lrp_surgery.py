"""Graph surgery that makes a traced 3D network LRP-ready (used by :mod:`medxai.attribution.lrp`).

Captum's LRP propagates relevance as a modified gradient: at each layer the relevance R at the output
is divided by the output z, back-propagated, and multiplied by the input a. This module prepares a
copy of the network (a ``torch.fx`` GraphModule from :func:`make_explainable`) so that every layer
fits that scheme:

- BatchNorm following a convolution is folded into it (``torch.fx`` conv-bn fusion, standard practice);
- identity and dropout layers (no-ops in eval mode) are removed: they return their input tensor
  itself, which Captum's tensor hooks cannot tell apart;
- residual additions become Captum's ``Addition_Module`` and concatenations (skip connections, dense
  blocks) :class:`Concatenation` layers: relevance must only cross layers, because a tensor feeding
  both a layer and a bare function would mix relevance with normalised gradients in Captum's hooks;
- sigmoid gates ``x * g`` (squeeze-excitation) become :class:`GatedProduct`, which holds the gate
  constant so all relevance goes to the gated signal (the usual treatment of multiplicative gates);
- element-wise activations other than ReLU and normalisation layers that could not be folded are
  wrapped in :class:`RelevancePassThrough`, whose gradient is z / a so that the epsilon rule passes
  relevance through them unchanged (their near-zero outputs would otherwise blow the epsilon rule up).
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
from captum.attr._utils.custom_modules import Addition_Module
from torch import nn
from torch.fx.experimental.optimization import fuse

from medxai.attribution.model_surgery import add_modules, replace_with_module

PASS_THROUGH_LAYERS = (
    nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Softplus, nn.Mish,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.GroupNorm, nn.LayerNorm,
)
_NO_OPS = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_SAFE = 1e-9


class GatedProduct(nn.Module):
    """``signal * gate`` with the gate detached: relevance flows to the signal only."""

    def forward(self, signal: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return signal * gate.detach()


class RelevancePassThrough(nn.Module):
    """Computes ``z = layer(a)`` but back-propagates ``z / a``: with the epsilon rule R_a = a (R/z)(z/a) = R.

    The wrapped layer is kept outside the module tree (a leaf for Captum, which hooks leaves only).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self._layer = (layer,)
        self.kind = type(layer).__name__

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            output = self._layer[0](inputs)
            ratio = torch.where(inputs.abs() > _SAFE, output / torch.where(inputs.abs() > _SAFE, inputs, 1.0), 1.0)
        return output + (inputs - inputs.detach()) * ratio


class Concatenation(nn.Module):
    """``torch.cat`` as a layer, so relevance reaching a concatenation is split back to its inputs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=self.dim)


def _concatenations(graph_module: fx.GraphModule) -> None:
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.cat:
            continue
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if isinstance(tensors, (list, tuple)) and all(isinstance(t, fx.Node) for t in tensors) and isinstance(dim, int):
            replace_with_module(graph_module, node, f"medxai_cat_{node.name}", Concatenation(dim), tuple(tensors))


def _remove_no_ops(graph_module: fx.GraphModule) -> None:
    for node in list(graph_module.graph.nodes):
        if node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), _NO_OPS):
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)


def _wrap_pass_through(graph_module: fx.GraphModule) -> None:
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module":
            continue
        layer = graph_module.get_submodule(node.target)
        if isinstance(layer, PASS_THROUGH_LAYERS):
            name = f"medxai_pass_{node.name}"
            replace_with_module(graph_module, node, name, RelevancePassThrough(layer), tuple(node.args))


def _is_gate(graph_module: fx.GraphModule, node: object, *, hops: int = 3) -> bool:
    """True when ``node`` is a sigmoid output, possibly reshaped (the gate of squeeze-excitation)."""
    for _ in range(hops + 1):
        if not isinstance(node, fx.Node):
            return False
        if node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), nn.Sigmoid):
            return True
        if node.op == "call_function" and node.target in (torch.sigmoid, torch.nn.functional.sigmoid):
            return True
        if not (node.op == "call_method" and node.target in ("view", "reshape", "unsqueeze", "expand_as")):
            return False
        node = node.args[0]
    return False


def _gate_products(graph_module: fx.GraphModule) -> None:
    """``x * g`` where ``g`` comes from a sigmoid (squeeze-excitation gates) -> GatedProduct."""
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target not in (operator.mul, torch.mul) or len(node.args) != 2:
            continue
        gates = [_is_gate(graph_module, argument) for argument in node.args]
        if gates.count(True) != 1 or not all(isinstance(argument, fx.Node) for argument in node.args):
            continue
        signal, gate = node.args if gates[1] else node.args[::-1]
        replace_with_module(graph_module, node, f"medxai_gate_{node.name}", GatedProduct(), (signal, gate))


def lrp_network(network: nn.Module, example: torch.Tensor) -> nn.Module:
    """The LRP-ready copy of an explainable network (``example`` is one input, for tensor shapes)."""
    if not isinstance(network, fx.GraphModule):
        return network  # untraceable network: Captum's rules run on the module tree as it is
    prepared = fuse(network)
    _remove_no_ops(prepared)
    add_modules(prepared, Addition_Module, example)  # also records tensor shapes in the nodes' meta
    _gate_products(prepared)
    _concatenations(prepared)
    _wrap_pass_through(prepared)
    prepared.graph.eliminate_dead_code()
    prepared.graph.lint()
    prepared.delete_all_unused_submodules()
    prepared.recompile()
    return prepared
