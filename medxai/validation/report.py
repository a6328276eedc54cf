"""The benchmark's outputs: ``validate.csv`` (the ranking), ``validate_cases.csv`` (every case x method),
``validate.json`` (settings, models, ranking, rows) and ``validate.png`` (means with 95 % intervals)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medxai.io.atomic import atomic_path, write_text_atomic
from medxai.metrics.scoring import json_ready, scores_csv
from medxai.validation.benchmark import METRICS
from medxai.validation.stats import MethodSummary, bootstrap_summary

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
    sanity = {}
    for method in methods:
        verdicts = [model["sanity"][method]["sanity_pass"] for model in result["models"] if method in model["sanity"]]
        spearman = [model["sanity"][method]["sanity_spearman"] for model in result["models"] if method in model["sanity"]]
        sanity[method] = {
            "sanity_pass_rate": float(np.mean(verdicts)) if verdicts else math.nan,
            "sanity_spearman": float(np.mean(spearman)) if spearman else math.nan,
            "sanity_pass": all(verdicts) if verdicts else None,
        }
    ranking = []
    for summary in metrics.get(settings["rank_by"], []):
        entry: dict[str, Any] = {"rank": summary.rank, "method": summary.method, "n": summary.n,
                                 "rank_low": summary.rank_low, "rank_high": summary.rank_high}
        for metric, summaries in metrics.items():
            found = next(s for s in summaries if s.method == summary.method)
            entry.update({metric: found.mean, f"{metric}_low": found.low, f"{metric}_high": found.high})
        entry.update(sanity[summary.method])
        ranking.append(entry)
    return {"rank_by": settings["rank_by"], "ranking": ranking}


def ranking_columns() -> list[str]:
    columns = ["rank", "method", "n", "rank_low", "rank_high"]
    for metric in METRICS:
        columns += [metric, f"{metric}_low", f"{metric}_high"]
    return columns + ["sanity_pass", "sanity_pass_rate", "sanity_spearman"]


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
    settings = result["settings"]
    title = (f"medxai validate: {settings['seeds']} seed(s) x {len(result['rows']) // max(1, len(settings['methods']))} "
             f"lesion case-explanations per method; ranked by {summary['rank_by']} (95% bootstrap CI)")
    plot(summary, out / "validate.png", title=title)
    payload = {**result, **summary, "rows": [{k: v for k, v in row.items()} for row in result["rows"]]}
    write_text_atomic(out / "validate.json", json.dumps(json_ready(payload), indent=1) + "\n")
    return summary
