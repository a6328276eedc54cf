"""Plain-language readings of the explanation scores of one case (``scores.csv`` rows, one per method).

Each map's verdict (``trusted``, ``caution``, ``do-not-use``, ``inconclusive``) and its reason come from
:mod:`medxai.metrics.verdict`: the ``verdict`` columns when the scores carry them, else the same rules applied
to the row. Faithfulness and robustness numbers have no absolute scale across models, so each method is
ranked among the methods of the same case (infidelity, Yeh et al. 2019; max-sensitivity, lower is better).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from medxai.metrics.verdict import VERDICTS, Verdict, decide, sanity_status, truth, value

VERDICT_WORDS = {"trusted": "TRUSTED", "caution": "USE WITH CAUTION", "do-not-use": "DO NOT USE",
                 "inconclusive": "INCONCLUSIVE"}
TEXT_COLUMNS = ("verdict", "sanity_status")


def number(row: Mapping[str, str], column: str) -> float | None:
    """A float cell, None when empty, missing or not finite."""
    return value(row, column)


def flag(row: Mapping[str, str], column: str) -> bool | None:
    return truth(row, column)


def row_verdict(row: Mapping[str, str]) -> Verdict:
    """The row's recorded verdict and reason, or the rules' verdict for rows written before they existed."""
    label = str(row.get("verdict") or "").strip()
    reason = str(row.get("verdict_reason") or "").strip()
    return Verdict(label, reason) if label in VERDICTS and reason else decide(row)


def verdict_sentence(row: Mapping[str, str]) -> str:
    """``Verdict: DO NOT USE. <reason>``."""
    verdict = row_verdict(row)
    return f"Verdict: {VERDICT_WORDS[verdict.label]}. {verdict.reason}"


def sanity_verdict(row: Mapping[str, str]) -> str:
    """One sentence on the model-randomisation check (Adebayo et al. 2018, on the top-5 % region)."""
    status = sanity_status(row)
    overlap = number(row, "sanity_top_overlap")
    rho = number(row, "sanity_spearman")
    shown = (f" (its top 5 % region overlaps the randomised model's by {overlap:.2f})" if overlap is not None
             else f" (rank correlation with the randomised model's map: {rho:.2f})" if rho is not None else "")
    if status is None:
        return "Randomisation check not run: whether this map depends on the model is unknown."
    if status == "inconclusive":
        detail = str(row.get("sanity_detail") or "").strip()
        return "Randomisation check inconclusive" + (f": {detail}" if detail else "") + "."
    if status == "pass":
        return f"Randomisation check passed: the map changes when the model's weights are randomised{shown}."
    return f"Randomisation check FAILED: the map does not depend on what the model learned{shown}."


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
        sentences = [verdict_sentence(row), sanity_verdict(row)]
        sentences.append(_rank_phrase(number(row, "infidelity"), infidelities, what="Faithfulness (infidelity)") + ".")
        sentences.append(_rank_phrase(number(row, "max_sensitivity"), sensitivities,
                                      what="Robustness (max-sensitivity)") + ".")
        where = localisation_phrase(row)
        if where:
            sentences.append(where)
        result[str(row.get("method", ""))] = sentences
    return result


def short_cell(row: Mapping[str, str], column: str) -> str:
    """A table cell: numbers to 3 significant digits, flags as yes/no, words as they are, empty as a dash."""
    if column == "verdict":
        return row_verdict(row).label
    if column in TEXT_COLUMNS:
        return str(row.get(column) or "").strip() or "–"
    answer = flag(row, column) if column in ("sanity_pass", "pointing_game") else None
    if answer is not None:
        return "yes" if answer else "no"
    value = number(row, column)
    return "–" if value is None else f"{value:.3g}"
