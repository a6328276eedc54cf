"""Heatmap -> binary mask: the threshold rules ``--threshold`` takes.

Every rule first keeps the positive part of the map (negatives zeroed: evidence *against* the class is
not part of its region), as Chatterjee et al. did for their GP models, so the same rules apply to any
method's map (a GP model's own heatmap, Grad-CAM, SmoothGrad, ...). Maps come in arbitrary units, so
every rule is scale-free:

- ``multiotsu-offset[:OFFSET]`` (default 0.5; Chatterjee et al., "Weakly-supervised segmentation using
  inherently-explainable classification models..."): the positive map is divided by its maximum (to
  [0, 1]); the top of the three-class multi-Otsu thresholds (Liao et al. 2001, scikit-image
  ``threshold_multiotsu``) computed on all voxels, zeros included, minus OFFSET, floored at 0, is the
  level; voxels strictly above it form the mask. The authors subtracted the offset in the units of their
  maps, which were softmax outputs in [0, 1] for the configuration they released; dividing by the peak
  puts any map on that same [0, 1] scale, so OFFSET means what it meant there (a fraction of the peak).
- ``multiotsu:K``: the top class of the K-class multi-Otsu split (2 <= K <= 5) of the positive map
  (zeros included): the voxels above its top threshold. ``multiotsu:2`` is Otsu's split; more classes put
  the top threshold higher. Unlike the offsets above, each class count gives its own cut even when the
  top three-class threshold lies below every offset (the degenerate sweep of issue 28).
- ``body-quantile:Q``: the Q-quantile (0 < Q < 1) of the positive map over the voxels of the body (the
  scan's foreground, :func:`medxai.metrics.sanity.foreground_array`): keeps about (1 - Q) of the body,
  whatever the map's units, so a post-hoc map positive almost everywhere (Grad-CAM) still gives a bounded
  mask. It needs the scan, so it is computed on the native grid (where the image is), not the model grid.
- ``otsu``: Otsu's threshold of the positive map (zeros included).
- ``percentile:P``: the P-th percentile of the positive map over all voxels (0 < P < 100).
- ``fixed:T``: T as a fraction of the positive peak (0 <= T < 1).

The level is returned in the map's own units so it can be applied to the same map on another grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_multiotsu, threshold_otsu

from medxai.errors import ConfigError

RULES = ("multiotsu-offset", "multiotsu", "body-quantile", "otsu", "percentile", "fixed")
DEFAULT_OFFSET = 0.5
MAX_CLASSES = 5  # scikit-image's multi-Otsu search grows as bins ** (classes - 1)
# name -> (low, high, low inclusive, high inclusive)
_LIMITS = {"multiotsu-offset": (0.0, 1.0, True, True), "multiotsu": (2.0, float(MAX_CLASSES), True, True),
           "body-quantile": (0.0, 1.0, False, False), "percentile": (0.0, 100.0, False, False),
           "fixed": (0.0, 1.0, True, False)}


@dataclass(frozen=True)
class ThresholdRule:
    """One parsed ``--threshold`` value: ``kind`` in :data:`RULES` and its parameter (None for ``otsu``)."""

    kind: str
    value: float | None = None

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"

    @property
    def needs_body(self) -> bool:
        """Whether the level is computed over the scan's body (on the native grid, with the image)."""
        return self.kind == "body-quantile"


def parse_threshold(spec: str) -> ThresholdRule:
    """``multiotsu-offset[:OFFSET]``, ``multiotsu:K``, ``body-quantile:Q``, ``otsu``, ``percentile:P`` or
    ``fixed:T`` -> :class:`ThresholdRule`."""
    kind, sep, raw = spec.strip().partition(":")
    if kind not in RULES:
        raise ConfigError(f"unknown threshold {spec!r} (expected one of {', '.join(RULES)})")
    if kind == "otsu":
        if sep:
            raise ConfigError(f"threshold {spec!r}: 'otsu' takes no value")
        return ThresholdRule("otsu")
    if not sep and kind == "multiotsu-offset":
        return ThresholdRule(kind, DEFAULT_OFFSET)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"threshold {spec!r}: {kind} needs a number after ':'") from None
    low, high, low_inclusive, high_inclusive = _LIMITS[kind]
    low_ok = value >= low if low_inclusive else value > low
    if not (low_ok and (value <= high if high_inclusive else value < high)):
        raise ConfigError(f"threshold {spec!r}: value out of range for {kind}")
    if kind == "multiotsu" and value != int(value):
        raise ConfigError(f"threshold {spec!r}: multiotsu takes a whole number of classes (2 to {MAX_CLASSES})")
    return ThresholdRule(kind, value)


def _top_multiotsu(normalised: np.ndarray, *, classes: int = 3, bins: int = 256) -> float:
    """The upper edge of the histogram bin where the ``classes``-class multi-Otsu split puts its top threshold.

    scikit-image returns bin *centres*; every value of that bin belongs to the lower class, so the split
    really lies at the bin's upper edge (up to half a bin, 1/512 of the peak, above the centre). Using the
    edge makes a map of flat plateaus split exactly between plateaus. A map with fewer occupied bins than
    classes cannot be split that way; its top threshold is then the midpoint of its range.
    """
    counts, edges = np.histogram(normalised, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    if np.count_nonzero(counts) < classes:
        return float((normalised.min() + normalised.max()) / 2.0)
    top = threshold_multiotsu(hist=(counts, centres), classes=classes)[-1]
    return float(edges[int(np.searchsorted(centres, top)) + 1])


def threshold_level(heatmap: np.ndarray, rule: ThresholdRule, *, body: np.ndarray | None = None) -> float:
    """The level (in the map's units) above which a voxel belongs to the mask; ``inf`` when the map has no
    positive voxel (the mask is then empty). ``body`` (a boolean array shaped like the map) is required by
    ``body-quantile`` and ignored by the other rules."""
    positive = np.maximum(np.asarray(heatmap, dtype=np.float64), 0.0)
    peak = float(positive.max()) if positive.size else 0.0
    if not np.isfinite(peak):
        raise ConfigError("heatmap holds non-finite values")
    if peak <= 0.0:
        return float("inf")
    if rule.kind == "multiotsu-offset":
        top = _top_multiotsu(positive / peak)
        return max(0.0, top - float(rule.value)) * peak  # type: ignore[arg-type]
    if rule.kind == "multiotsu":
        return _top_multiotsu(positive / peak, classes=int(rule.value)) * peak  # type: ignore[arg-type]
    if rule.kind == "body-quantile":
        return _body_quantile(positive, body, float(rule.value))  # type: ignore[arg-type]
    if rule.kind == "otsu":
        return float(threshold_otsu(positive)) if np.unique(positive).size > 1 else 0.0
    if rule.kind == "percentile":
        return float(np.percentile(positive, float(rule.value)))  # type: ignore[arg-type]
    return float(rule.value) * peak  # type: ignore[arg-type]


def _body_quantile(positive: np.ndarray, body: np.ndarray | None, quantile: float) -> float:
    if body is None:
        raise ConfigError("the body-quantile threshold needs the scan's body (its foreground)")
    inside = np.asarray(body, dtype=bool)
    if inside.shape != positive.shape:
        raise ConfigError(f"body mask {inside.shape} and heatmap {positive.shape} differ in shape")
    values = positive[inside] if inside.any() else positive.ravel()  # no foreground found: the whole volume
    return float(np.quantile(values, quantile))


def binarize(heatmap: np.ndarray, level: float) -> np.ndarray:
    """The voxels strictly above ``level`` (a level from :func:`threshold_level`), as a boolean array."""
    return np.asarray(heatmap) > level


# Chatterjee et al.'s sweep: offsets 0.4 to 1.0 in steps of 0.1.
PAPER_SWEEP = tuple(ThresholdRule("multiotsu-offset", round(0.4 + 0.1 * i, 1)) for i in range(7))
# The default sweep: the paper's offsets, then cuts that stay distinct when those offsets coincide
# (multi-Otsu class counts, Otsu, and the map's quantiles inside the body).
WIDE_SWEEP = (
    *PAPER_SWEEP, ThresholdRule("otsu"), *(ThresholdRule("multiotsu", float(k)) for k in range(3, MAX_CLASSES + 1)),
    *(ThresholdRule("body-quantile", q) for q in (0.8, 0.9, 0.95, 0.98, 0.99)),
)


def parse_threshold_list(text: str, *, paper: tuple[ThresholdRule, ...] = PAPER_SWEEP) -> tuple[ThresholdRule, ...]:
    """Candidate rules for a sweep: ``paper`` (the given paper list), ``wide`` (:data:`WIDE_SWEEP`) or
    comma-separated rules (``multiotsu-offset:0.2,multiotsu:4,body-quantile:0.95``)."""
    if text.strip() == "paper":
        return paper
    if text.strip() == "wide":
        return WIDE_SWEEP
    rules = tuple(parse_threshold(part) for part in text.split(",") if part.strip())
    if not rules:
        raise ConfigError("the sweep grid lists no threshold")
    return rules

