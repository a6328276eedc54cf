"""Make any PyTorch network explainable by hook-based attribution methods, on a deep copy.

Captum's DeepLIFT, LRP and Guided Backprop attach hooks to modules and assume each module runs once
per forward pass and never in place. MONAI's ResNet (and SegResNet) reuse one in-place ReLU several
times per block, so those methods refuse them. :func:`make_explainable` traces a deep copy with
``torch.fx`` and gives every call site of a reused module its own copy, turns in-place activations
into out-of-place ones and turns functional activations (``torch.relu``, ``torch.sigmoid``, ...) into
modules so the hook-based rules see them. Outputs are unchanged (tested). Where tracing fails
(data-dependent control flow), the fallback only switches ``inplace`` off on the copy; the method
then still runs and the record says which surgery was applied.
"""
from __future__ import annotations

import copy
import operator
from collections import Counter
from typing import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp
from torch import nn

from medxai.attribution.derived import derived_network

SURGERY_ATTRIBUTE = "_medxai_surgery"

# Functional activations turned into modules (hook-based rules only see modules).
_FUNCTIONAL_ACTIVATIONS: dict[Callable[..., torch.Tensor], Callable[[], nn.Module]] = {
    torch.relu: nn.ReLU,
    F.relu: nn.ReLU,
    torch.sigmoid: nn.Sigmoid,
    F.sigmoid: nn.Sigmoid,
    torch.tanh: nn.Tanh,
    F.tanh: nn.Tanh,
    F.silu: nn.SiLU,
    F.elu: nn.ELU,
}


def surgery_applied(network: nn.Module) -> str | None:
    """``"fx"`` or ``"inplace-off"`` when ``network`` came out of :func:`make_explainable`, else None."""
    return getattr(network, SURGERY_ATTRIBUTE, None)


def _switch_off_inplace(network: nn.Module) -> None:
    for module in network.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False


def _unique_name(graph_module: fx.GraphModule, base: str) -> str:
    existing = {name for name, _ in graph_module.named_modules()}
    index = 1
    while f"{base}_use{index}" in existing:
        index += 1
    return f"{base}_use{index}"


def replace_with_module(graph_module: fx.GraphModule, node: fx.Node, name: str, module: nn.Module, args: tuple) -> fx.Node:
    """Replace ``node`` by a call of ``module`` (added as ``name``) on ``args``, keeping its shape metadata."""
    graph_module.add_submodule(name, module)
    with graph_module.graph.inserting_after(node):
        module_call = graph_module.graph.call_module(name, args=args)
    module_call.meta = dict(node.meta)
    node.replace_all_uses_with(module_call)
    graph_module.graph.erase_node(node)
    return module_call


def _split_reused_modules(graph_module: fx.GraphModule) -> int:
    """Give the 2nd, 3rd, ... call of a module its own deep copy. Returns the number of new modules."""
    calls = [node for node in graph_module.graph.nodes if node.op == "call_module"]
    seen: Counter[str] = Counter()
    created = 0
    for node in calls:
        seen[node.target] += 1
        if seen[node.target] == 1:
            continue
        name = _unique_name(graph_module, node.target)
        graph_module.add_submodule(name, copy.deepcopy(graph_module.get_submodule(node.target)))
        node.target = name
        created += 1
    return created


def _modularise_activations(graph_module: fx.GraphModule) -> int:
    """Replace functional activations of one tensor argument with module calls."""
    replaced = 0
    for node in list(graph_module.graph.nodes):
        factory = _FUNCTIONAL_ACTIVATIONS.get(node.target) if node.op == "call_function" else None
        if factory is None or len(node.args) != 1 or node.kwargs.get("inplace", False):
            continue
        replace_with_module(graph_module, node, _unique_name(graph_module, f"medxai_{factory.__name__.lower()}"),
                            factory(), tuple(node.args))
        replaced += 1
    return replaced


def make_explainable(network: nn.Module) -> nn.Module:
    """A deep copy of ``network`` in eval mode on which hook-based attribution rules work, built once
    per network while its weights are unchanged (:func:`derived_network`).

    Idempotent: a network already returned by this function is returned as is.
    """
    if surgery_applied(network):
        return network
    return derived_network(network, "explainable", _explainable_copy)


def _explainable_copy(network: nn.Module) -> nn.Module:
    duplicate = copy.deepcopy(network).eval()
    _switch_off_inplace(duplicate)
    try:
        traced = fx.symbolic_trace(duplicate)
    except (fx.proxy.TraceError, TypeError, RuntimeError, NotImplementedError, AttributeError):
        # torch.fx cannot trace data-dependent control flow; keep the module tree and only
        # remove in-place operations, which is what hook-based methods need most.
        setattr(duplicate, SURGERY_ATTRIBUTE, "inplace-off")
        return duplicate
    _split_reused_modules(traced)
    _modularise_activations(traced)
    traced.graph.lint()
    traced.recompile()
    _switch_off_inplace(traced)
    traced.eval()
    setattr(traced, SURGERY_ATTRIBUTE, "fx")
    return traced


def _is_tensor(node: object) -> bool:
    return isinstance(node, fx.Node) and "tensor_meta" in node.meta


def add_modules(graph_module: fx.GraphModule, module_factory: Callable[[], nn.Module], example: torch.Tensor) -> int:
    """Replace every addition of two computed tensors (residual connections) by a module call.

    LRP needs this so that relevance is split between the two summands instead of copied to both.
    ``example`` (an input) is propagated once to tell tensor additions from size arithmetic.
    """
    with torch.no_grad():
        ShapeProp(graph_module).propagate(example)
    replaced = 0
    for node in list(graph_module.graph.nodes):
        is_add = node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add)
        if not is_add or len(node.args) != 2 or node.kwargs:
            continue
        if not (all(_is_tensor(argument) for argument in node.args) and _is_tensor(node)):
            continue
        replace_with_module(graph_module, node, _unique_name(graph_module, "medxai_add"), module_factory(), tuple(node.args))
        replaced += 1
    graph_module.graph.lint()
    graph_module.recompile()
    return replaced
