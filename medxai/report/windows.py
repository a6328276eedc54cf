"""Grey-level windows of the report's image panels, chosen per modality and stated on every panel.

CT is shown with a named window (width W and level L in Hounsfield units, the presets radiologists use):
soft tissue W400 L40, lung W1500 L-600, brain W80 L40, bone W1800 L400. The window comes from the
``--window`` option, else from the scan's body part, series description or protocol name (``lung``,
``brain``/``head``, ``bone``), else soft tissue. MR, PET and scans of unknown modality have no absolute
scale: they are shown from the 1st to the 99th percentile of the voxels inside the body.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from medxai.errors import ConfigError

CT_PRESETS: dict[str, tuple[float, float]] = {
    "soft-tissue": (400.0, 40.0), "lung": (1500.0, -600.0), "brain": (80.0, 40.0), "bone": (1800.0, 400.0),
}
# words in a body part / series description / protocol name that select a CT preset, most specific first
_HINTS = (("lung", ("lung", "pulm")), ("brain", ("brain", "head", "neuro", "cerebr", "skull")), ("bone", ("bone",)))
_CUSTOM = re.compile(r"^\s*(?P<width>[0-9]+(?:\.[0-9]*)?)\s*,\s*(?P<level>[-+]?[0-9]+(?:\.[0-9]*)?)\s*$")
PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class Window:
    """Grey values from ``low`` (black) to ``high`` (white); ``label`` names it in captions, ``panel`` (shorter,
    default: the label) in the title of every image."""

    low: float
    high: float
    label: str
    panel: str = ""

    @property
    def panel_label(self) -> str:
        return self.panel or self.label


def _width_level(width: float, level: float) -> str:
    return f"W{width:g} L{level:g}"


def parse_window(option: str) -> tuple[str, tuple[float, float]]:
    """``soft-tissue``, ``lung``, ``brain``, ``bone`` or ``W,L`` (e.g. ``350,50``): (name, (width, level))."""
    name = option.strip().lower().replace("_", "-").replace(" ", "-")
    if name in CT_PRESETS:
        return name, CT_PRESETS[name]
    match = _CUSTOM.match(option)
    if match and float(match["width"]) > 0:
        return "", (float(match["width"]), float(match["level"]))
    raise ConfigError(f"unknown window {option!r} (choose {', '.join(CT_PRESETS)} or WIDTH,LEVEL such as 400,40)")


def preset_from_hints(hints: Iterable[str | None]) -> str:
    """The CT preset named by the scan's body part / series description / protocol (soft tissue if none)."""
    words = " ".join(str(h).lower() for h in hints if h)
    for preset, keys in _HINTS:
        if any(key in words for key in keys):
            return preset
    return "soft-tissue"


def _is_ct(modality: str | None) -> bool:
    return bool(modality) and str(modality).strip().upper().split()[0] == "CT"


def percentile_window(anatomy: np.ndarray, body: np.ndarray | None, *, modality: str | None) -> Window:
    """1st-99th percentile of the voxels inside ``body`` (all voxels when it is empty or not given)."""
    values = np.asarray(anatomy, dtype=np.float64)
    inside = values[body] if body is not None and body.any() else values.ravel()
    inside = inside[np.isfinite(inside)]
    low, high = np.percentile(inside, PERCENTILES) if inside.size else (0.0, 1.0)
    high = high if high > low else low + 1.0
    span = f"{PERCENTILES[0]:g}-{PERCENTILES[1]:g}th percentile"
    prefix = f"{str(modality).strip()} " if modality else ""
    label = f"{prefix}{span} (inside the body)" if modality else f"{span} inside the body (modality unknown)"
    return Window(float(low), float(high), label, panel=f"{prefix}{span}")


def choose_window(anatomy: np.ndarray, body: np.ndarray | None, *, modality: str | None,
                  hints: Iterable[str | None] = (), option: str | None = None) -> Window:
    """The window of a scan: ``option`` if given, a CT preset for CT, else body percentiles (module docstring)."""
    prefix = f"{str(modality).strip()} " if modality else ""
    if option:
        name, (width, level) = parse_window(option)
        words = f" ({name.replace('-', ' ')})" if name else " (--window)"
        return Window(level - width / 2, level + width / 2, f"{prefix}{_width_level(width, level)}{words}")
    if _is_ct(modality):
        name = preset_from_hints(hints)
        width, level = CT_PRESETS[name]
        return Window(level - width / 2, level + width / 2, f"CT {_width_level(width, level)} ({name.replace('-', ' ')})")
    return percentile_window(anatomy, body, modality=modality)
