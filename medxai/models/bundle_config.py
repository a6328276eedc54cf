"""MONAI bundle configs read as data, and their ``network_def`` built without running any of their code.

MONAI's own ``ConfigParser`` evaluates ``$`` expressions as Python and resolves a ``_target_`` by walking
attributes from an importable module (``torch.nn.functional.torch.os.system`` is ``os.system``), so a
bundle config is a program. Here it is parsed as JSON or YAML data (safe loader, aliases bounded) and
``network_def`` is built by hand (MONAI has no data-only mode): every ``_target_``, nested ones too, is
imported as one module plus one attribute (or a bare name of ``monai.networks.nets``/``blocks``) and must be
a ``torch.nn.Module`` subclass defined under ``torch.nn`` or ``monai.networks``. ``$`` expressions, ``%``
macros, ``_requires_``/``_mode_``/``_disabled_`` and arguments that fetch weights (``pretrained``, ``*_url``)
are refused; ``@`` references are followed (bounded, no cycles) to plain values and to components checked
the same way. Nothing is built before all of it passed.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from medxai.errors import InvalidInputError, one_line

MAX_NESTING = 64
MAX_NODES = 100_000
MAX_REFERENCES = 32
MAX_PARAMETERS = 1_000_000_000
NETWORK_PACKAGES = ("torch.nn", "monai.networks")
BARE_NAME_MODULES = ("monai.networks.nets", "monai.networks.blocks")
REFUSED_KEYS = ("_requires_", "_mode_", "_disabled_")
FETCHING_KWARGS = ("pretrained", "pretrained_path")  # and any ``*_url``: weights fetched from elsewhere
TRUST_HINT = "pass --trust-model (pipelines: model.trust: true) only if you trust whoever made it"
_MISSING = object()


def _in_packages(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in NETWORK_PACKAGES)


@dataclass(frozen=True)
class _Component:
    """A checked ``_target_`` with its (checked, not yet built) keyword arguments."""

    cls: type[nn.Module]
    kwargs: dict[str, Any]
    where: str


class BundleConfig:
    """A bundle's parsed config (plain data), ``source`` being the file refusals name."""

    def __init__(self, data: Mapping[str, Any], source: Path) -> None:
        self.data = data
        self.source = source
        self._nodes = 0

    def get(self, ident: str, default: Any = None) -> Any:
        """The raw value at a MONAI id (``a::b::0``; ``#`` also separates), nothing evaluated."""
        value: Any = self.data
        for part in ident.replace("#", "::").split("::"):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return default
        return value

    def plain(self, value: Any) -> Any:
        """``value`` with ``@`` references followed; None when it is or leads to an expression or macro."""
        for _ in range(MAX_REFERENCES):
            if not (isinstance(value, str) and value.startswith("@")):
                break
            value = self.get(value[1:])
        return None if isinstance(value, str) and value.startswith(("$", "%", "@")) else value

    def _refuse(self, where: str, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{where}: {problem}", path=self.source)

    def build_network(self, ident: str = "network_def") -> nn.Module:
        """Check the whole definition at ``ident``, bound its parameter count, then build it."""
        if self.get(ident, _MISSING) is _MISSING:
            raise InvalidInputError(f"bundle config has no {ident}", path=self.source)
        self._nodes = 0
        checked = self._check(self.get(ident), ident, depth=0, chain=(ident,))
        if not isinstance(checked, _Component):
            raise self._refuse(ident, "is not a network definition (a mapping with _target_)")
        count = self._meta_parameter_count(checked)
        if count is not None and count > MAX_PARAMETERS:
            raise self._refuse(ident, f"the network would have {count} parameters (at most {MAX_PARAMETERS} accepted)")
        network = self._build(checked)
        if not isinstance(network, nn.Module):
            raise self._refuse(ident, "does not build a torch module")
        return network

    def _check(self, value: Any, where: str, *, depth: int, chain: tuple[str, ...]) -> Any:
        self._nodes += 1
        if depth > MAX_NESTING or self._nodes > MAX_NODES:
            raise self._refuse(where, f"the definition nests deeper than {MAX_NESTING} or has over {MAX_NODES} values")
        if isinstance(value, str):
            return self._check_string(value, where, depth=depth, chain=chain)
        if isinstance(value, list):
            return [self._check(item, f"{where}::{i}", depth=depth + 1, chain=chain) for i, item in enumerate(value)]
        if isinstance(value, dict):
            refused = [key for key in REFUSED_KEYS if key in value]
            if refused:
                raise self._refuse(where, f"key {refused[0]!r} is refused (MONAI would evaluate it); {TRUST_HINT}")
            items = {key: item for key, item in value.items() if key not in ("_target_", "_desc_")}
            if not all(isinstance(key, str) for key in items):
                raise self._refuse(where, "keys must be strings")
            checked = {key: self._check(item, f"{where}::{key}", depth=depth + 1, chain=chain) for key, item in items.items()}
            if "_target_" in value:
                fetching = [key for key, item in items.items()
                            if (key in FETCHING_KWARGS or key.endswith("_url")) and item not in (None, False)]
                if fetching:
                    raise self._refuse(where, f"{fetching[0]!r} would fetch weights from elsewhere (a download or "
                                              "another file); a bundle's weights are its models/model.pt")
                return _Component(self._target(value["_target_"], where), checked, where)
            return checked
        if value is None or isinstance(value, (bool, int, float)):
            return value
        raise self._refuse(where, f"a {type(value).__name__} value is not plain data")

    def _check_string(self, value: str, where: str, *, depth: int, chain: tuple[str, ...]) -> Any:
        if value.startswith(("$", "%")):
            kind = "a Python expression" if value.startswith("$") else "a macro (text from another file)"
            raise self._refuse(where, f"{value[:40]!r} is {kind}, which MONAI would evaluate; {TRUST_HINT}")
        if not value.startswith("@"):
            return value
        ident = value[1:].replace("#", "::")
        if ident in chain:
            raise self._refuse(where, f"reference {value!r} is circular")
        if len(chain) > MAX_REFERENCES:
            raise self._refuse(where, f"references chain longer than {MAX_REFERENCES}")
        target = self.get(ident, _MISSING)
        if target is _MISSING:
            raise self._refuse(where, f"reference {value!r} names nothing in the config")
        return self._check(target, f"{where} -> {value}", depth=depth + 1, chain=(*chain, ident))

    def _target(self, target: Any, where: str) -> type[nn.Module]:
        """Resolve a ``_target_`` by one import and one attribute (no attribute walking), then check the class."""
        if not isinstance(target, str) or not target.replace(".", "").replace("_", "").isalnum():
            raise self._refuse(where, f"_target_ {str(target)[:60]!r} is not a class name")
        module_name, _, name = target.rpartition(".")
        if module_name and not _in_packages(module_name):
            raise self._refuse(where, f"_target_ {target!r} is not a network class from torch.nn or monai.networks; {TRUST_HINT}")
        found: Any = None
        for candidate in (module_name,) if module_name else BARE_NAME_MODULES:
            try:
                found = getattr(importlib.import_module(candidate), name, None)
            except ImportError:
                found = None
            if found is not None:
                break
        if not (isinstance(found, type) and issubclass(found, nn.Module) and _in_packages(found.__module__)):
            raise self._refuse(where, f"_target_ {target!r} is not a network class from torch.nn or monai.networks; {TRUST_HINT}")
        return found

    def _build(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._build(item) for item in value]
        if isinstance(value, dict):
            return {key: self._build(item) for key, item in value.items()}
        if not isinstance(value, _Component):
            return value
        kwargs = {key: self._build(item) for key, item in value.kwargs.items()}
        try:
            return value.cls(**kwargs)
        except (TypeError, ValueError, RuntimeError, AssertionError, LookupError, AttributeError, ArithmeticError,
                ImportError, NotImplementedError) as error:  # a library class rejecting the config's arguments
            raise self._refuse(value.where, f"{value.cls.__name__}(...) cannot be built ({one_line(error)[:160]})") from None

    def _meta_parameter_count(self, component: _Component) -> int | None:
        """Parameters of the network built on the meta device (no memory); None where a class cannot be built there."""
        try:
            with torch.device("meta"):
                network = self._build(component)
        except InvalidInputError:
            return None  # the real build reports it
        return sum(parameter.numel() for parameter in network.parameters()) if isinstance(network, nn.Module) else None
