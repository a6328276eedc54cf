"""Derived copies of a network (surgery for hook-based methods, in-place-free copies for CAMs, LRP-ready
graphs), built once and reused while the network's weights stay the same.

Explaining a cohort builds every method afresh for every case; without this each case paid a deep copy
and a ``torch.fx`` trace per hook-based method (tens to hundreds of ms for a ResNet, more than the
attribution itself for single-pass methods). A copy is rebuilt when any parameter or buffer of the
source network is replaced or changed in place (its storage or PyTorch's version counter moves), so
re-initialised weights (the randomisation sanity check) or a further training step never reuse a
stale copy. Writes through ``tensor.data`` bypass the version counter and are not seen: do not
change a network that way between explanations. At most one copy per kind is kept for each live network
(a new ``variant``, e.g. another input shape for the LRP graph, replaces the old one), and it goes with the
network. (Written here: no library caches derived modules.)
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Callable, Hashable

from torch import nn

Fingerprint = tuple[Hashable, tuple[tuple[int, int, str], ...]]

_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[Hashable, tuple[Fingerprint, nn.Module]]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def weights_fingerprint(network: nn.Module) -> tuple[tuple[int, int, str], ...]:
    """Storage address, in-place version and device of every parameter and buffer, in module order."""
    tensors = itertools.chain(network.parameters(), network.buffers())
    return tuple((tensor.data_ptr(), tensor._version, str(tensor.device)) for tensor in tensors)


def derived_network(network: nn.Module, key: Hashable, build: Callable[[nn.Module], nn.Module], *,
                    variant: Hashable = None) -> nn.Module:
    """``build(network)``, computed once per ``(network, key, variant)`` while ``network``'s weights are
    unchanged; only the latest variant of each key is kept."""
    fingerprint = (variant, weights_fingerprint(network))
    with _LOCK:
        cached = _CACHE.get(network, {}).get(key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    result = build(network)
    if result is network:  # nothing derived; caching it would keep the network alive through its own entry
        return result
    with _LOCK:
        _CACHE.setdefault(network, {})[key] = (fingerprint, result)
    return result
