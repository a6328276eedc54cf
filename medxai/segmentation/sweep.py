"""Choosing the threshold on cases with reference masks (``medxai segment --sweep``), and keeping the choice
with the model (``--save-threshold``: ``threshold.json`` in the model directory, which ``segment`` then uses
by default).

Chatterjee et al. chose the multi-Otsu offset by median Dice on validation cases. When the top multi-Otsu
threshold of the peak-normalised map lies below the smallest offset, every offset gives the same cut (map > 0)
and the "sweep" compares one mask with itself. Here every candidate's masks are compared voxel for voxel on
the sweep's cases: candidates whose masks all coincide with an earlier candidate's are dropped from the
choice and named in the record (``duplicates``, and one ``degenerate`` sentence per group).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from medxai.errors import ConfigError, InvalidInputError
from medxai.segmentation.overlap import dice
from medxai.segmentation.postprocess import cut_mask
from medxai.segmentation.threshold import ThresholdRule, parse_threshold
from medxai.volume import Volume

if TYPE_CHECKING:
    from medxai.segmentation.heatmaps import ClassMap

THRESHOLD_FILE = "threshold.json"
THRESHOLD_FORMAT = "medxai-threshold/1"
MODEL_JSON = "medxai-model.json"  # the file that makes a folder a medxai model directory (models.model_dir)


def _fingerprint(mask: Volume) -> str:
    return hashlib.sha256(np.packbits(np.asarray(mask.data) > 0).tobytes()).hexdigest()


def _group_label(rules: Sequence[str]) -> str:
    """``multiotsu-offset 0.4..1.0`` for one kind with several values, else the rules comma-separated."""
    kinds = {rule.partition(":")[0] for rule in rules}
    if len(kinds) == 1 and len(rules) > 2 and all(":" in rule for rule in rules):
        values = [rule.partition(":")[2] for rule in rules]
        return f"{kinds.pop()} {values[0]}..{values[-1]}"
    return ", ".join(rules)


def sweep_thresholds(
    pairs: Sequence[tuple["ClassMap", Volume]], candidates: Sequence[ThresholdRule], *, keep_largest: bool, fill: bool,
    refine: str | None = None, images: Sequence[Volume] | None = None, refine_margin_mm: float = 3.0,
) -> dict[str, Any]:
    """The candidate with the best median Dice over ``pairs`` (class map, reference mask) among candidates
    with distinct masks; ties go to the better mean, then to the earlier candidate. Maps whose mask is forced
    empty (negative prediction) carry no information about the threshold and are left out. ``images`` (one
    per pair, the scans' first channels) are needed by ``refine`` and by rules over the body."""
    needs_image = refine is not None or any(rule.needs_body for rule in candidates)
    if needs_image and (images is None or len(images) != len(pairs)):
        raise ConfigError("refinement and body-quantile thresholds in a sweep need one image per case")
    if not candidates:
        raise ConfigError("the sweep grid lists no threshold")
    indexed = [(i, m, truth) for i, (m, truth) in enumerate(pairs) if not m.empty_reason]
    if not indexed:
        raise ConfigError("--sweep needs at least one case with a reference mask whose prediction is not negative")
    table: list[dict[str, Any]] = []
    seen: dict[tuple[str, ...], int] = {}  # the masks' fingerprints -> row of the first candidate giving them
    duplicates: list[dict[str, str]] = []
    for rule in candidates:
        cuts = [cut_mask(m, rule=rule, keep_largest=keep_largest, fill=fill, refine=refine, refine_margin_mm=refine_margin_mm,
                         image=images[i] if images is not None else None) for i, m, _ in indexed]
        key = tuple(_fingerprint(mask) for mask, _ in cuts)
        if key in seen:
            duplicates.append({"threshold": str(rule), "same_masks_as": table[seen[key]]["threshold"]})
            continue
        seen[key] = len(table)
        dices = [dice(mask.data, truth.data) for (mask, _), (_, _, truth) in zip(cuts, indexed)]
        table.append({"threshold": str(rule), "median_dice": float(np.median(dices)), "mean_dice": float(np.mean(dices)),
                      "all_levels_zero": all(level == 0.0 for _, level in cuts)})
    best = max(range(len(table)), key=lambda i: (table[i]["median_dice"], table[i]["mean_dice"], -i))
    return {"chosen": table[best]["threshold"], "criterion": "median Dice", "n_cases": len(indexed),
            "n_left_out_negative": len(pairs) - len(indexed), "n_candidates": len(candidates),
            "n_distinct": len(table), "candidates": table, "duplicates": duplicates,
            "degenerate": _degenerate_notes(table, duplicates, n_cases=len(indexed))}


def _degenerate_notes(table: Sequence[dict[str, Any]], duplicates: Sequence[dict[str, str]], *, n_cases: int) -> list[str]:
    """One sentence per group of candidates that gave the same masks on every case."""
    notes = []
    for row in table:
        same = [d["threshold"] for d in duplicates if d["same_masks_as"] == row["threshold"]]
        if not same:
            continue
        group = [row["threshold"], *same]
        cut = "map > 0" if row["all_levels_zero"] else "the same masks"
        notes.append(f"{_group_label(group)} all give {cut} on the {n_cases} case(s): degenerate, "
                     f"kept {row['threshold']} only")
    if len(table) == 1 and len(duplicates) > 0:
        notes.append("every candidate gives the same masks: the sweep chose nothing; add other rules "
                     "(multiotsu:K, body-quantile:Q)")
    return notes


# --- the choice kept with the model --------------------------------------------------------------------------

def check_threshold_destination(model_path: str | Path) -> Path:
    """``model_path`` is a medxai model directory that may receive ``threshold.json`` (before any work)."""
    folder = Path(model_path)
    if not (folder.is_dir() and (folder / MODEL_JSON).is_file()):
        raise ConfigError("--save-threshold needs a medxai model directory (a folder with medxai-model.json)",
                          path=folder)
    return folder / THRESHOLD_FILE


def saved_threshold_record(existing: dict[str, Any] | None, *, method: str, rule: str,
                           refine: str | None, sweep: dict[str, Any], weights_sha256: str) -> dict[str, Any]:
    """The ``threshold.json`` content with this method's choice added (other methods' choices kept)."""
    chosen = next(row for row in sweep["candidates"] if row["threshold"] == rule)
    methods = dict(existing["methods"]) if existing else {}
    methods[method] = {"rule": rule, "refine": refine, "chosen_by": "sweep", "criterion": sweep["criterion"],
                       "median_dice": chosen["median_dice"], "n_cases": sweep["n_cases"],
                       "n_distinct_candidates": sweep["n_distinct"], "degenerate": sweep["degenerate"]}
    return {"format": THRESHOLD_FORMAT, "weights_sha256": weights_sha256, "methods": methods}


def read_saved_threshold(model_path: str | Path, *, weights_sha256: str) -> dict[str, Any] | None:
    """The model directory's ``threshold.json`` (checked), or None when it has none."""
    from medxai.io.data_files import read_data_file

    path = Path(model_path) / THRESHOLD_FILE
    if not Path(model_path).is_dir() or not path.is_file():
        return None
    record = read_data_file(path, what="threshold record")
    methods = record.get("methods") if isinstance(record, dict) else None
    if not isinstance(record, dict) or record.get("format") != THRESHOLD_FORMAT or not isinstance(methods, dict):
        raise InvalidInputError(f"not a {THRESHOLD_FORMAT} record", path=path)
    if record.get("weights_sha256") != weights_sha256:
        raise InvalidInputError("chosen for other weights than this model's: re-run segment --sweep --save-threshold",
                                path=path)
    for method, entry in methods.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("rule"), str) or \
                not isinstance(entry.get("refine"), (str, type(None))):
            raise InvalidInputError(f"method {method!r}: needs a 'rule' text and a 'refine' text or null", path=path)
        try:
            parse_threshold(entry["rule"])
        except ConfigError as error:
            raise InvalidInputError(f"method {method!r}: {error.problem}", path=path) from None
    return record


def saved_choice(record: dict[str, Any] | None, method: str) -> tuple[ThresholdRule, str | None] | None:
    """The rule and refinement saved for ``method``, or None."""
    entry = (record or {}).get("methods", {}).get(method)
    return None if entry is None else (parse_threshold(entry["rule"]), entry["refine"])
