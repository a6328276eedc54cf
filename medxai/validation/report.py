"""The benchmark's outputs: ``validate.csv`` (the ranking), ``validate_cases.csv`` (every case x method),
``validate_verdicts.csv`` (how often the maps of each verdict localise the known lesion), ``validate.json``
(settings, models, ranking, verdict table, rows) and ``validate.png`` (means with 95 % intervals)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medxai.io.atomic import atomic_path, write_text_atomic
from medxai.metrics.scoring import json_ready, scores_csv
from medxai.metrics.verdict import CAUTION, DO_NOT_USE, MIN_AUROC, VERDICTS
from medxai.validation.benchmark import METRICS
from medxai.validation.stats import MethodSummary, bootstrap_summary

NOT_TRUSTED = "caution or do-not-use"


def _number(row: dict[str, Any], column: str) -> float:
    raw = row.get(column)
    return math.nan if raw is None else float(raw)


# what "localises" means in the verdict table (each a number per map; NaN when not measured)
LOCALISES = {
    "pointing_game": lambda row: _number(row, "pointing_game"),
    "auroc_at_least_0_6": lambda row: _number(row, "auroc") >= MIN_AUROC if math.isfinite(_number(row, "auroc")) else math.nan,
    "auroc": lambda row: _number(row, "auroc"),
}
PLOTTED = ("mass_in_mask", "pointing_game", "auroc", "com_distance_mm", "deletion_auc", "insertion_auc")


def _matrix(rows: Sequence[dict[str, Any]], methods: Sequence[str], metric: str) -> tuple[np.ndarray, list[int]]:
    """cases x methods array of one metric (NaN where missing) and each case's seed."""
    keys = sorted({(row["seed"], row["case_id"]) for row in rows})
    index = {key: i for i, key in enumerate(keys)}
    values = np.full((len(keys), len(methods)), np.nan)
    for row in rows:
        value = row.get(metric)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            values[index[(row["seed"], row["case_id"])], methods.index(row["method"])] = float(value)
    return values, [key[0] for key in keys]


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Bootstrap summaries of every metric per method, the ranking by ``rank_by`` and sanity pass rates."""
    settings = result["settings"]
    methods = list(settings["methods"])
    rows = result["rows"]
    metrics: dict[str, list[MethodSummary]] = {}
    for metric, higher in METRICS.items():
        values, groups = _matrix(rows, methods, metric)
        if values.size:
            metrics[metric] = bootstrap_summary(values, groups, methods, higher_is_better=higher,
                                                n_boot=settings["n_boot"], seed=settings["seed"])
    sanity = {method: _sanity_summary([row for row in rows if row["method"] == method]) for method in methods}
    ranking = []
    for summary in metrics.get(settings["rank_by"], []):
        entry: dict[str, Any] = {"rank": summary.rank, "method": summary.method, "n": summary.n,
                                 "rank_low": summary.rank_low, "rank_high": summary.rank_high}
        for metric, summaries in metrics.items():
            found = next(s for s in summaries if s.method == summary.method)
            entry.update({metric: found.mean, f"{metric}_low": found.low, f"{metric}_high": found.high})
        entry.update(sanity[summary.method])
        ranking.append(entry)
    return {"rank_by": settings["rank_by"], "ranking": ranking,
            "verdicts": verdict_table(rows, n_boot=settings["n_boot"], seed=settings["seed"])}


def _sanity_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Share of a method's cases whose randomisation check passed (inconclusive ones count as not passed),
    the inconclusive share, the mean |map| Spearman (whole volume) and top-5 % overlap (the deciding one)."""
    statuses = [row.get("sanity_status") for row in rows if row.get("sanity_status")]

    def mean(column: str) -> float:
        values = [float(row[column]) for row in rows if row.get(column) is not None and math.isfinite(float(row[column]))]
        return float(np.mean(values)) if values else math.nan

    return {
        "sanity_pass_rate": statuses.count("pass") / len(statuses) if statuses else math.nan,
        "sanity_inconclusive_rate": statuses.count("inconclusive") / len(statuses) if statuses else math.nan,
        "sanity_spearman": mean("sanity_spearman"), "sanity_top_overlap": mean("sanity_top_overlap"),
        "sanity_pass": (statuses.count("pass") == len(statuses)) if statuses else None,
    }


def verdict_table(rows: Sequence[dict[str, Any]], *, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """How often the maps of each verdict localise the known lesion: per verdict given *without* the mask
    (``verdict_without_mask``, what a user without a reference gets) and for ``caution``/``do-not-use`` pooled,
    the pointing-game rate, the share with AUROC >= 0.6 and the mean AUROC, each with a paired seed-then-map
    bootstrap 95 % interval (:func:`medxai.validation.stats.bootstrap_summary`)."""
    groups = [*VERDICTS, NOT_TRUSTED]
    members = {group: [r for r in rows if r.get("verdict_without_mask") == group
                       or (group == NOT_TRUSTED and r.get("verdict_without_mask") in (CAUTION, DO_NOT_USE))]
               for group in groups}
    table = [{"verdict": group, "maps": len(members[group])} for group in groups]
    keys = sorted({(row["seed"], row["case_id"], row["method"]) for row in rows})
    if not keys:
        return table
    index = {key: i for i, key in enumerate(keys)}
    for metric, read in LOCALISES.items():
        values = np.full((len(keys), len(groups)), np.nan)
        for column, group in enumerate(groups):
            for row in members[group]:
                values[index[(row["seed"], row["case_id"], row["method"])], column] = read(row)
        if np.all(np.isnan(values)):
            continue
        found = {s.method: s for s in bootstrap_summary(values, [key[0] for key in keys], groups, higher_is_better=True,
                                                         n_boot=n_boot, seed=seed)}
        for entry in table:
            summary = found[entry["verdict"]]
            entry.update({metric: summary.mean, f"{metric}_low": summary.low, f"{metric}_high": summary.high})
    return table


def verdict_columns() -> list[str]:
    return ["verdict", "maps", *(f"{m}{end}" for m in LOCALISES for end in ("", "_low", "_high"))]


def ranking_columns() -> list[str]:
    columns = ["rank", "method", "n", "rank_low", "rank_high"]
    for metric in METRICS:
        columns += [metric, f"{metric}_low", f"{metric}_high"]
    return columns + ["sanity_pass", "sanity_pass_rate", "sanity_inconclusive_rate", "sanity_spearman",
                      "sanity_top_overlap"]


def case_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    first = ["seed", "case_id", "method", "p_lesion", "predicted_lesion", "lesion_voxels", "grid"]
    rest = sorted({key for row in rows for key in row} - set(first) - {"target", "sanity_cascade"})
    return first + rest


def plot(summary: dict[str, Any], path: Path, *, title: str) -> None:
    """One panel per metric: each method's mean and 95 % interval, best-ranked method on top; methods that
    fail the sanity check are drawn in red and marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ranking = summary["ranking"]
    names = [entry["method"] + ("  (sanity FAIL)" if entry["sanity_pass"] is False else "") for entry in ranking]
    colours = ["#c0392b" if entry["sanity_pass"] is False else "#2c3e50" for entry in ranking]
    columns = 3
    figure, axes = plt.subplots(2, columns, figsize=(4.2 * columns + 1.5, 2 * (0.32 * len(ranking) + 1.3)),
                                sharey=True, squeeze=False)
    y = np.arange(len(ranking))[::-1]
    for number, metric in enumerate(PLOTTED):
        axis = axes[number // columns][number % columns]
        means = np.array([entry.get(metric, np.nan) for entry in ranking], dtype=float)
        low = np.array([entry.get(f"{metric}_low", np.nan) for entry in ranking], dtype=float)
        high = np.array([entry.get(f"{metric}_high", np.nan) for entry in ranking], dtype=float)
        errors = np.vstack([np.clip(means - low, 0, None), np.clip(high - means, 0, None)])
        axis.errorbar(means, y, xerr=np.nan_to_num(errors), fmt="none", ecolor="#7f8c8d", capsize=3)
        axis.scatter(means, y, c=colours, zorder=3)
        better = "higher" if METRICS[metric] else "lower"
        axis.set_title(f"{metric} ({better} is better)", fontsize=9)
        axis.grid(axis="x", alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(5))
    for row in axes:
        row[0].set_yticks(y)
        row[0].set_yticklabels(names, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Write the four files under ``out_dir``; returns the summary (ranking)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    write_text_atomic(out / "validate.csv", scores_csv(summary["ranking"], ranking_columns()))
    write_text_atomic(out / "validate_cases.csv", scores_csv(result["rows"], case_columns(result["rows"])))
    write_text_atomic(out / "validate_verdicts.csv", scores_csv(summary["verdicts"], verdict_columns()))
    settings = result["settings"]
    title = (f"medxai validate: {settings['seeds']} seed(s) x {len(result['rows']) // max(1, len(settings['methods']))} "
             f"lesion case-explanations per method; ranked by {summary['rank_by']} (95% bootstrap CI)")
    plot(summary, out / "validate.png", title=title)
    payload = {**result, **summary, "rows": [{k: v for k, v in row.items()} for row in result["rows"]]}
    write_text_atomic(out / "validate.json", json.dumps(json_ready(payload), indent=1) + "\n")
    return summary
