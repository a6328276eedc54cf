"""Plain-language readings of the explanation scores of one case (``scores.csv`` rows, one per method).

Faithfulness and robustness numbers have no absolute scale across models, so each method is ranked among
the methods of the same case (infidelity, Yeh et al. 2019; max-sensitivity, lower is better). The sanity
verdict is the model-randomisation check of Adebayo et al. 2018: a map that barely changes when the weights
are randomised does not explain the model.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

DO_NOT_RELY = "this map does not depend on the model: do not rely on it"


def number(row: Mapping[str, str], column: str) -> float | None:
    """A float cell, None when empty, missing or not finite."""
    raw = row.get(column, "")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def flag(row: Mapping[str, str], column: str) -> bool | None:
    raw = str(row.get(column, "")).strip().lower()
    return True if raw in ("true", "1", "yes") else False if raw in ("false", "0", "no") else None


def sanity_verdict(row: Mapping[str, str]) -> str:
    """One sentence on the model-randomisation sanity check."""
    passed = flag(row, "sanity_pass")
    rho = number(row, "sanity_spearman")
    shown = f" (rank correlation with the map of a randomised model: {rho:.2f})" if rho is not None else ""
    if passed is None:
        return "Sanity check not run: whether this map depends on the model is unknown."
    if passed:
        return f"Passes the sanity check: the map changes when the model's weights are randomised{shown}."
    return f"FAILS the sanity check: {DO_NOT_RELY}{shown}."


def _rank_phrase(value: float | None, values: Sequence[float], *, what: str) -> str:
    if value is None:
        return f"{what}: not measured"
    if len(values) < 2:
        return f"{what}: {value:.3g}"
    rank = sorted(values).index(value) + 1
    label = "best" if rank == 1 else "worst" if rank == len(values) else f"{rank} of {len(values)}"
    return f"{what}: {value:.3g} ({label} of the methods shown; lower is better)"


def localisation_phrase(row: Mapping[str, str]) -> str | None:
    """How the map sits on the reference lesion (None when no mask was scored)."""
    pointing = flag(row, "pointing_game")
    mass = number(row, "mass_in_mask")
    if pointing is None and mass is None:
        return None
    parts = []
    if pointing is not None:
        distance = number(row, "peak_distance_mm")
        away = f", {distance:.1f} mm away" if (not pointing and distance is not None) else ""
        parts.append("the strongest voxel lies in the lesion" if pointing else f"the strongest voxel lies outside the lesion{away}")
    if mass is not None:
        share = f"{100 * mass:.1f}" if 100 * mass < 10 else f"{100 * mass:.0f}"
        parts.append(f"{share}% of the positive attribution falls inside the lesion")
    auroc = number(row, "auroc")
    if auroc is not None:
        parts.append(f"lesion-vs-background AUROC {auroc:.2f}")
    return "Localisation: " + "; ".join(parts) + "."


def method_sentences(rows: Sequence[Mapping[str, str]]) -> dict[str, list[str]]:
    """Per method: sanity verdict, faithfulness and robustness ranks, localisation."""
    infidelities = [v for v in (number(r, "infidelity") for r in rows) if v is not None]
    sensitivities = [v for v in (number(r, "max_sensitivity") for r in rows) if v is not None]
    result: dict[str, list[str]] = {}
    for row in rows:
        sentences = [sanity_verdict(row)]
        sentences.append(_rank_phrase(number(row, "infidelity"), infidelities, what="Faithfulness (infidelity)") + ".")
        sentences.append(_rank_phrase(number(row, "max_sensitivity"), sensitivities,
                                      what="Robustness (max-sensitivity)") + ".")
        where = localisation_phrase(row)
        if where:
            sentences.append(where)
        result[str(row.get("method", ""))] = sentences
    return result


def short_cell(row: Mapping[str, str], column: str) -> str:
    """A table cell: numbers to 3 significant digits, flags as yes/no, empty as a dash."""
    truth = flag(row, column) if column in ("sanity_pass", "pointing_game") else None
    if truth is not None:
        return "yes" if truth else "no"
    value = number(row, column)
    return "–" if value is None else f"{value:.3g}"
