"""One verdict per heatmap, with one sentence a clinician can read: plain functions of a ``scores.csv`` row.

``trusted``, ``caution``, ``do-not-use`` or ``inconclusive``, from three kinds of evidence (docs/verdicts.md
has the rules' measurements on the phantom validation set):

- localisation, when a reference mask was scored: a map whose lesion-vs-background AUROC is below
  :data:`MIN_AUROC` or whose peak lies more than :data:`MAX_PEAK_MM` from the reference is ``do-not-use``;
- plausibility, with or without a mask: a map denser outside the body than inside it (``outside_body`` above
  1: it prefers the air around the patient, where no finding can be) is ``do-not-use``;
- the model-randomisation check (:mod:`medxai.metrics.sanity`): a map that survives the randomisation of the
  model is ``do-not-use``; a check that cannot be read (degenerate map) makes the verdict ``inconclusive``;
  a check that was not run leaves the map at ``caution``;
- faithfulness against a random map of the same values on the same case (the map's voxels shuffled, scored
  with the same seeded perturbations): a map whose deletion curve falls no faster than that one's
  (``deletion_auc`` not below ``deletion_auc_random``; infidelity when no deletion curve was measured) is at
  most ``caution``.

A map is ``trusted`` only when every measured piece of evidence is good. Rows arrive either as Python values
(scoring) or as the strings of a CSV (the report reading ``scores.csv``); both are accepted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

TRUSTED, CAUTION, DO_NOT_USE, INCONCLUSIVE = "trusted", "caution", "do-not-use", "inconclusive"
VERDICTS = (TRUSTED, CAUTION, DO_NOT_USE, INCONCLUSIVE)
VERDICT_COLUMNS = ("verdict", "verdict_reason")
MIN_AUROC = 0.6
MAX_PEAK_MM = 20.0
MAX_OUTSIDE_DENSITY = 1.0  # weight per voxel in the air / in the body: above 1 the map prefers the air


@dataclass(frozen=True)
class Verdict:
    """The verdict and its one-sentence reason."""

    label: str
    reason: str

    def as_columns(self) -> dict[str, str]:
        return {"verdict": self.label, "verdict_reason": self.reason}


def value(row: Mapping[str, Any], column: str) -> float | None:
    """A finite number from a row cell (float or CSV text), None when empty, missing or not finite."""
    raw = row.get(column)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def truth(row: Mapping[str, Any], column: str) -> bool | None:
    """A yes/no cell (bool, 0/1 or true/false text), None when empty or missing."""
    raw = row.get(column)
    if isinstance(raw, bool):
        return raw
    text = str(raw if raw is not None else "").strip().lower()
    return True if text in ("true", "1", "1.0", "yes") else False if text in ("false", "0", "0.0", "no") else None


def sanity_status(row: Mapping[str, Any]) -> str | None:
    """``pass``, ``fail``, ``inconclusive`` or None (not run); older rows without ``sanity_status`` are read
    from ``sanity_pass``."""
    status = str(row.get("sanity_status") or "").strip().lower()
    if status in ("pass", "fail", "inconclusive"):
        return status
    passed = truth(row, "sanity_pass")
    return None if passed is None else "pass" if passed else "fail"


def localisation_problem(row: Mapping[str, Any]) -> str | None:
    """Why the map misses the reference lesion (AUROC below 0.6, peak over 20 mm away), or None."""
    auroc = value(row, "auroc")
    distance = value(row, "peak_distance_mm")
    problems = []
    if distance is not None and distance > MAX_PEAK_MM:
        problems.append(f"its strongest point lies {distance:.0f} mm from the reference lesion")
    if auroc is not None and auroc < MIN_AUROC:
        problems.append(f"it separates lesion from background {'worse than' if auroc < 0.5 else 'barely better than'} "
                        f"chance (AUROC {auroc:.2f})")
    return " and ".join(problems) if problems else None


def outside_body(heatmap: torch.Tensor, inputs: torch.Tensor) -> float:
    """How much denser the map's absolute weight is outside the body than inside it (weight per voxel outside /
    weight per voxel inside; body: :func:`medxai.metrics.sanity.foreground` of the input, on the model grid).
    Above 1 the map favours the air around the patient; NaN for an all-zero map or a body filling the grid."""
    from medxai.metrics.sanity import foreground

    weight = heatmap.detach().abs().to("cpu", torch.float64)
    while weight.ndim > 3:
        weight = weight.sum(dim=0)
    body = torch.from_numpy(foreground(inputs[0]))
    inside, outside = float(weight[body].sum()), float(weight[~body].sum())
    if inside + outside <= 0 or bool(body.all()) or not bool(body.any()):
        return math.nan
    if inside <= 0:
        return math.inf
    return (outside / int((~body).sum())) / (inside / int(body.sum()))


def outside_density(row: Mapping[str, Any]) -> float | None:
    """The ``outside_body`` cell (infinite when the map has no weight inside the body), None when missing."""
    raw = row.get("outside_body")
    try:
        number = float(raw) if raw is not None and not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def faithful_to_model(row: Mapping[str, Any]) -> bool | None:
    """True when deleting the map's most-attributed blocks first lowers the class probability faster (lower
    deletion area) than deleting them in the order of its own values shuffled (a random map of the same
    sparsity on the same case). Without deletion areas, the same comparison of infidelity. None when neither
    was compared. (Infidelity with a few noise samples did not separate maps that localise from maps that do
    not on the phantom benchmark, the deletion comparison did: docs/verdicts.md.)"""
    for own, random in (("deletion_auc", "deletion_auc_random"), ("infidelity", "infidelity_random")):
        mine, shuffled = value(row, own), value(row, random)
        if mine is not None and shuffled is not None:
            return mine < shuffled
    return None


def _localised(row: Mapping[str, Any]) -> str:
    auroc = value(row, "auroc")
    inside = truth(row, "pointing_game")
    if auroc is None:
        return ""
    where = "peaks in the reference lesion" if inside else "highlights the reference lesion"
    return f", {where} (AUROC {auroc:.2f})"


def decide(row: Mapping[str, Any], *, use_localisation: bool = True) -> Verdict:
    """The verdict of one ``scores.csv`` row (see the module's docstring for the rules, in this order).
    ``use_localisation=False`` ignores the reference mask: the verdict a user without one would get (what
    ``medxai validate`` checks against the known lesions)."""
    if row.get("error"):
        return Verdict(INCONCLUSIVE, "The method produced no map, so there is nothing to judge.")
    missed = localisation_problem(row) if use_localisation else None
    if missed:
        return Verdict(DO_NOT_USE, f"Do not use: {missed}.")
    density = outside_density(row)
    if density is not None and density > MAX_OUTSIDE_DENSITY:
        how = "all of its weight lies outside the body" if math.isinf(density) else \
            f"the map is {density:.1f} times denser outside the body than inside it"
        return Verdict(DO_NOT_USE, f"Do not use: {how}, so it does not point at anatomy.")
    status = sanity_status(row)
    detail = str(row.get("sanity_detail") or "").strip()
    if status == "fail":
        why = detail or "it barely changes when the model's learned weights are destroyed"
        return Verdict(DO_NOT_USE, f"Do not use: {why}, so it does not show what the model learned.")
    if status == "inconclusive":
        why = f" ({detail})" if detail else ""
        return Verdict(INCONCLUSIVE, "Cannot tell whether this map reflects the model: the randomisation check "
                                     f"could not be read{why}.")
    faithful = faithful_to_model(row)
    if faithful is False:
        return Verdict(CAUTION, "Use with caution: removing what this map highlights changes the model's output no "
                                "more than removing a random map of the same values would.")
    if status is None:
        return Verdict(CAUTION, "Use with caution: the model-randomisation check was not run, so whether this map "
                                "reflects the model is unknown.")
    if faithful is None:
        return Verdict(CAUTION, "Use with caution: it depends on the model, but its faithfulness was not compared "
                                "with a random map.")
    where = _localised(row) if use_localisation else ""
    return Verdict(TRUSTED, "Trusted: it changes when the model is randomised and removing what it highlights "
                            f"lowers the model's output faster than a random map{where}.")
