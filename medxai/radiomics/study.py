"""Which peritumoral distance carries the signal: cross-validated AUC per region x distance x classifier.

As in Tushar et al. (2024), "Peritumoral Expansion Radiomics for Improved Lung Cancer Classification",
Random Forest, Logistic Regression and k-NN classify the cases from the radiomics of each region. Every
step that learns from data (median imputation, constant-feature removal, scaling, univariate ANOVA-F
selection of the k best features) sits inside a scikit-learn Pipeline fitted on the training folds only,
so nothing about the test fold leaks into the model. AUC is averaged over repeated stratified k-fold
cross-validation; its 95% interval uses the corrected resampled t statistic of Nadeau & Bengio
("Inference for the Generalization Error", Machine Learning 2003), which widens the naive interval for
the overlap between training sets.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.data_files import read_table
from medxai.io.atomic import atomic_path, write_text_atomic
from medxai.radiomics.extract import LEADING_COLUMNS, SOURCE_COLUMNS

CLASSIFIERS = ("rf", "lr", "knn")
_POSITIVE_NAMES = ("malignant", "lesion", "positive", "1", "true", "yes", "abnormal")
_TOP = 10
_KNN_NEIGHBOURS = 5
ProgressCallback = Callable[[str, int, int], None]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """One region x distance: the case x feature matrix and its feature names."""

    region: str
    distance_mm: float
    cases: list[str]
    features: list[str]
    matrix: np.ndarray


def _cell(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def read_features(path: str | Path) -> list[Setting]:
    """Group a features CSV (``case_id,region,distance_mm,<features>``) by region and distance."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("no such features file", path=path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if not set(LEADING_COLUMNS) <= set(header):
            raise InvalidInputError(f"not a radiomics features table (needs columns {', '.join(LEADING_COLUMNS)})", path=path)
        names = [c for c in header if c not in (*LEADING_COLUMNS, *SOURCE_COLUMNS) and not c.startswith("diagnostics_")]
        groups: dict[tuple[str, float], dict[str, list[float]]] = defaultdict(dict)
        for row in reader:
            key = (row["region"], _cell(row["distance_mm"]))
            groups[key][row["case_id"]] = [_cell(row[c]) for c in names]
    if not groups or not names:
        raise InvalidInputError("features table has no rows or no feature columns", path=path)
    settings = []
    for (region, distance), by_case in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cases = sorted(by_case)
        matrix = np.array([by_case[c] for c in cases], dtype=np.float64)
        usable = ~np.all(np.isnan(matrix), axis=0)  # all-NaN columns carry nothing (label-independent drop)
        settings.append(Setting(region, distance, cases, [n for n, u in zip(names, usable) if u], matrix[:, usable]))
    return settings


def read_labels(path: str | Path, *, positive: str | None = None) -> tuple[dict[str, int], str, str]:
    """``case_id -> 0/1`` from a ``case_id,label`` CSV (e.g. labels.csv) with exactly two classes."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("no such labels file", path=path)
    columns, rows = read_table(path, what="labels file")
    if not {"case_id", "label"} <= set(columns):
        raise InvalidInputError("labels file needs columns case_id and label", path=path)
    labels = {row["case_id"]: row["label"] for row in rows if row["label"]}
    classes = sorted(set(labels.values()))
    if len(classes) != 2:
        raise InvalidInputError(f"the study needs exactly two classes, found {len(classes)}: {classes[:5]}", path=path)
    if positive is None:
        named = [c for c in classes if c.lower() in _POSITIVE_NAMES]
        positive = named[0] if len(named) == 1 else classes[1]
    if positive not in classes:
        raise ConfigError(f"positive class {positive!r} is not one of the labels {classes}")
    negative = classes[0] if classes[1] == positive else classes[1]
    return {case: int(label == positive) for case, label in labels.items()}, positive, negative


def _any_feature_varies(setting: Setting, labels: dict[str, int]) -> bool:
    """Whether some feature takes two different values over the labelled cases (labels themselves unused)."""
    rows = [i for i, case in enumerate(setting.cases) if case in labels]
    for column in setting.matrix[rows].T:
        finite = column[np.isfinite(column)]
        if finite.size and np.ptp(finite) > 0:
            return True
    return False


def make_pipeline(classifier: str, *, k_best: int, seed: int, neighbours: int = _KNN_NEIGHBOURS):  # type: ignore[no-untyped-def]
    """Imputation -> constant removal -> scaling -> SelectKBest(ANOVA F) -> classifier, all fitted per fold.

    ``neighbours`` is k-NN's k; it must not exceed the number of training cases of a fold.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    models = {
        "rf": lambda: RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1),
        "lr": lambda: LogisticRegression(max_iter=5000),
        "knn": lambda: KNeighborsClassifier(n_neighbors=neighbours),
    }
    if classifier not in models:
        raise ConfigError(f"unknown classifier {classifier!r} (choose from {', '.join(CLASSIFIERS)})")
    return Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("constant", VarianceThreshold(0.0)),
        ("scale", StandardScaler()),
        ("select", SelectKBest(f_classif, k=k_best)),
        ("model", models[classifier]()),
    ])


def corrected_interval(scores: Sequence[float], *, folds: int) -> tuple[float, float]:
    """95% interval of the mean of repeated k-fold scores, Nadeau-Bengio corrected variance."""
    from scipy import stats

    values = np.asarray(scores, dtype=np.float64)
    n = values.size
    mean = float(values.mean())
    if n < 2:
        return mean, mean
    variance = (1.0 / n + 1.0 / (folds - 1)) * float(values.var(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * math.sqrt(variance)
    return max(0.0, mean - half), min(1.0, mean + half)


def _selected_names(pipeline, names: Sequence[str]) -> tuple[list[str], np.ndarray]:  # type: ignore[no-untyped-def]
    kept = np.asarray(names)[pipeline.named_steps["constant"].get_support()]
    select = pipeline.named_steps["select"]
    return list(kept[select.get_support()]), select.scores_[select.get_support()]


def evaluate_setting(setting: Setting, labels: dict[str, int], *, classifiers: Sequence[str], folds: int,
                     repeats: int, seed: int, k_best: int) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """AUC rows (one per classifier) and the top features (selection frequency over all folds)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold

    keep = [i for i, case in enumerate(setting.cases) if case in labels]
    x = setting.matrix[keep]
    y = np.array([labels[setting.cases[i]] for i in keep])
    smallest = int(min(np.bincount(y, minlength=2)))
    if smallest < folds:
        raise ConfigError(f"{setting.region} {setting.distance_mm:g} mm: the smaller class has {smallest} cases, fewer than {folds} folds")
    k = min(k_best, x.shape[1])
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    splits = list(splitter.split(x, y))
    smallest_train = min(len(train) for train, _ in splits)
    # k-NN cannot ask for more neighbours than a training fold has cases (small cohorts, many folds).
    neighbours = min(_KNN_NEIGHBOURS, smallest_train)
    rows, chosen, scores = [], Counter(), defaultdict(list)
    for name in classifiers:
        aucs = []
        for train, test in splits:
            pipeline = make_pipeline(name, k_best=k, seed=seed, neighbours=neighbours).fit(x[train], y[train])
            aucs.append(roc_auc_score(y[test], pipeline.predict_proba(x[test])[:, 1]))
            if name == classifiers[0]:  # selection does not depend on the classifier: count it once
                selected, f_scores = _selected_names(pipeline, setting.features)
                chosen.update(selected)
                for feature, score in zip(selected, f_scores):
                    scores[feature].append(float(score))
        low, high = corrected_interval(aucs, folds=folds)
        rows.append({
            "region": setting.region, "distance_mm": setting.distance_mm, "classifier": name,
            "auc": float(np.mean(aucs)), "ci_low": low, "ci_high": high, "auc_sd": float(np.std(aucs, ddof=1)),
            "n_folds": len(aucs), "n_cases": int(y.size), "n_features": int(x.shape[1]),
            "min_train_cases": smallest_train,
        })
    top = [
        {"region": setting.region, "distance_mm": setting.distance_mm, "rank": rank, "feature": feature,
         "selection_frequency": count / len(splits), "mean_f_score": float(np.mean(scores[feature]))}
        for rank, (feature, count) in enumerate(
            sorted(chosen.items(), key=lambda kv: (-kv[1], -np.mean(scores[kv[0]])))[:_TOP], start=1)
    ]
    return rows, top


def _write_csv(rows: Sequence[dict[str, object]], path: Path) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def plot_auc_vs_distance(rows: Sequence[dict[str, object]], path: Path) -> None:
    """AUC (95% CI bars) against distance: one line per region x classifier; lesion-only at 0 mm."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    styles = {"shell": "-", "expanded": "--", "box": ":"}
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    classifiers = sorted({str(r["classifier"]) for r in rows}, key=list(CLASSIFIERS).index)
    colours = dict(zip(classifiers, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for name in classifiers:
        lesion = [r for r in rows if r["classifier"] == name and r["region"] == "lesion"]
        for region in ("shell", "expanded", "box"):
            line = lesion + sorted((r for r in rows if r["classifier"] == name and r["region"] == region), key=lambda r: r["distance_mm"])
            if len(line) <= len(lesion):
                continue
            x = [float(r["distance_mm"]) for r in line]
            y = [float(r["auc"]) for r in line]
            err = [[yy - float(r["ci_low"]) for yy, r in zip(y, line)], [float(r["ci_high"]) - yy for yy, r in zip(y, line)]]
            axes.errorbar(x, y, yerr=err, linestyle=styles[region], marker="o", capsize=3, color=colours[name], label=f"{name} {region}")
        if lesion and not any(r["classifier"] == name and r["region"] != "lesion" for r in rows):
            axes.errorbar([0.0], [float(lesion[0]["auc"])], marker="o", color=colours[name], label=f"{name} lesion")
    axes.axhline(0.5, color="grey", linewidth=0.8)
    axes.set_xlabel("peritumoral distance (mm); 0 = lesion only")
    axes.set_ylabel("cross-validated AUC (95% CI)")
    axes.set_ylim(0.0, 1.0)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, format="png")
    plt.close(figure)


def run_study(
    features_csv: str | Path,
    labels_csv: str | Path,
    out_dir: str | Path,
    *,
    classifiers: Sequence[str] = CLASSIFIERS,
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    k_best: int = 10,
    positive: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, object]:
    """Write ``auc.csv``, ``top_features.csv``, ``auc_vs_distance.png`` and ``study.json``; return the summary."""
    unknown = [c for c in classifiers if c not in CLASSIFIERS]
    if unknown or not classifiers:
        raise ConfigError(f"unknown classifier(s) {unknown} (choose from {', '.join(CLASSIFIERS)})")
    if folds < 2 or repeats < 1 or k_best < 1:
        raise ConfigError(f"need folds >= 2, repeats >= 1 and k >= 1 (got {folds}, {repeats}, {k_best})")
    settings = read_features(features_csv)
    labels, positive_name, negative_name = read_labels(labels_csv, positive=positive)
    cases = sorted(set().union(*(s.cases for s in settings)) & set(labels))
    if not cases:
        raise InvalidInputError("no case of the features table has a label", path=labels_csv)
    varies = [_any_feature_varies(s, labels) for s in settings]
    skipped = [f"{s.region} {s.distance_mm:g} mm" for s, kept in zip(settings, varies) if not kept]
    if skipped:
        logger.warning("skipped %d setting(s) in which no feature varies across the labelled cases (e.g. a shell "
                       "empty in every case): %s", len(skipped), ", ".join(skipped))
    settings = [s for s, kept in zip(settings, varies) if kept]
    if not settings:
        raise InvalidInputError("no region x distance has a feature that varies across the labelled cases", path=features_csv)
    auc_rows: list[dict[str, object]] = []
    top_rows: list[dict[str, object]] = []
    for index, setting in enumerate(settings):
        rows, top = evaluate_setting(setting, labels, classifiers=list(classifiers), folds=folds, repeats=repeats, seed=seed, k_best=k_best)
        auc_rows += rows
        top_rows += top
        if progress:
            progress("study", index + 1, len(settings))
    smallest = min(int(r["min_train_cases"]) for r in auc_rows)  # type: ignore[call-overload]
    if "knn" in classifiers and smallest < _KNN_NEIGHBOURS:
        logger.warning("k-NN uses fewer than %d neighbours where training folds hold fewer cases (as few as %d)",
                       _KNN_NEIGHBOURS, smallest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(auc_rows, out / "auc.csv")
    _write_csv(top_rows, out / "top_features.csv")
    plot_auc_vs_distance(auc_rows, out / "auc_vs_distance.png")
    best = max(auc_rows, key=lambda r: float(r["auc"]))  # type: ignore[arg-type]
    counts = Counter(labels[c] for c in cases)
    summary: dict[str, object] = {
        "features": Path(features_csv).name, "labels": Path(labels_csv).name, "n_cases": len(cases),
        "classes": {positive_name: counts[1], negative_name: counts[0]}, "positive": positive_name,
        "classifiers": list(classifiers), "folds": folds, "repeats": repeats, "seed": seed, "k_best": k_best,
        "ci": "95% corrected resampled t interval (Nadeau & Bengio 2003) over folds x repeats",
        "best": best, "settings": len(settings), "skipped_settings": skipped,
    }
    write_text_atomic(out / "study.json", json.dumps(summary, indent=2) + "\n")
    return summary
