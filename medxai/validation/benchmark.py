"""``medxai validate``: a known-ground-truth benchmark of the explainers, in the spirit of Siegel et al.,
"Explainable AI methods for neuroimaging: systematic failures of common tools, the need for domain-specific
validation, and a proposal for safe application" (arXiv:2508.02560, 2025).

For each seed: a phantom cohort where only the lesion decides the label (bright distractor blobs appear in
every class) is generated with :func:`medxai.synthetic.make_cohort`, a small network is trained on it with
:func:`medxai.models.train.train_model`, and the held-out lesion cases of a second cohort (a quarter on
anisotropic, oblique or flipped grids) are explained with every method for the lesion class. Each map is
scored for localisation against the lesion mask on the scan's own grid and for faithfulness on the model
grid, checked by the model-randomisation test (full cascade) on every case, and given its verdict
(:mod:`medxai.metrics.verdict`). Methods are ranked with paired seed-then-case bootstrap 95 % intervals
(:mod:`medxai.validation.stats`), and the verdicts are checked against the known lesions: how often a
``trusted`` map localises versus the others (:mod:`medxai.validation.report`).
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medxai.errors import ConfigError
from medxai.metrics.model_grid import ScoreSettings
from medxai.metrics.scoring import prepare_case, score_explanation
from medxai.metrics.verdict import decide

ProgressCallback = Callable[[str, int, int], None]
LESION_CLASS = "lesion"

# metric -> higher is better; the per-case metrics the benchmark summarises
METRICS: dict[str, bool] = {
    "mass_in_mask": True, "pointing_game": True, "rank_accuracy": True, "auroc": True,
    "com_distance_mm": False, "peak_distance_mm": False, "deletion_auc": False, "insertion_auc": True,
    "infidelity": False,
}


@dataclass(frozen=True)
class ValidateSettings:
    """The benchmark's size: ``seeds`` models, each trained on ``cases`` phantoms of ``size``^3 1 mm voxels
    for ``epochs`` and tested on the lesion half of ``test_cases`` held-out phantoms. Empty ``methods`` means
    every registered method. ``rank_by`` is the metric of the ranking (relevance mass accuracy by default)."""

    seeds: int = 3
    cases: int = 128
    test_cases: int = 16
    size: int = 24
    epochs: int = 12
    arch: str = "tiny"
    lr: float = 1e-3
    batch_size: int = 4
    methods: tuple[str, ...] = ()
    rank_by: str = "mass_in_mask"
    n_boot: int = 1000
    seed: int = 0
    sanity: bool = True
    scores: ScoreSettings = field(default_factory=lambda: ScoreSettings(
        n_infidelity=8, n_blocks=2, sensitivity=False, sanity=True, sanity_steps=1, deletion_steps=10))

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.cases < 4 or self.test_cases < 2 or self.epochs < 1:
            raise ConfigError("validate needs seeds >= 1, cases >= 4, test cases >= 2 and epochs >= 1")
        if self.rank_by not in METRICS:
            raise ConfigError(f"unknown ranking metric {self.rank_by!r} (choose from {', '.join(METRICS)})")

    @classmethod
    def quick(cls, **overrides: Any) -> "ValidateSettings":
        """A smoke-test size: one seed, a handful of 16^3 phantoms, one epoch, two methods."""
        base = cls(seeds=1, cases=8, test_cases=4, size=16, epochs=1, methods=("saliency", "gradcam"), n_boot=200,
                   scores=ScoreSettings(n_infidelity=4, n_blocks=1, sensitivity=False, sanity_steps=1, deletion_steps=4,
                                        block_mm=4.0))
        return replace(base, **overrides)


def _auc(probabilities: Sequence[float], positives: Sequence[bool]) -> float:
    from sklearn.metrics import roc_auc_score

    if len(set(positives)) < 2:
        return math.nan
    return float(roc_auc_score(np.asarray(positives), np.asarray(probabilities)))


def _seed_run(settings: ValidateSettings, methods: Sequence[str], seed: int, work: Path,
              progress: ProgressCallback | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train one model and score every method on its held-out lesion cases."""
    from medxai.attribution.engine import explain_case
    from medxai.io.readers import read_mask, read_volume
    from medxai.models.dataset import read_labels
    from medxai.models.model_dir import load_model
    from medxai.models.train import train_model
    from medxai.synthetic import make_cohort

    started = time.perf_counter()
    train_csv = make_cohort(work / "train", cases=settings.cases, seed=2 * seed, size=settings.size)
    test_csv = make_cohort(work / "test", cases=settings.test_cases, seed=2 * seed + 1, size=settings.size)
    summary = train_model(train_csv, work / "model", arch=settings.arch, epochs=settings.epochs, lr=settings.lr,
                          batch_size=settings.batch_size, spatial_size=settings.size, seed=seed, device="cpu",
                          patience=settings.epochs)
    model = load_model(work / "model", device="cpu")
    if LESION_CLASS not in model.classes:
        raise ConfigError(f"the phantom model has no {LESION_CLASS!r} class ({model.classes})")
    lesion_index = model.classes.index(LESION_CLASS)
    rows: list[dict[str, Any]] = []
    p_lesion: list[float] = []
    is_lesion: list[bool] = []
    cases = read_labels(test_csv).cases
    lesion_cases = [case for case in cases if case.label == LESION_CLASS]
    for number, case in enumerate(cases, start=1):
        volume = read_volume(case.images[0])
        _, grid_case = prepare_case(model, [volume], target=LESION_CLASS)
        p_lesion.append(grid_case.extra["probabilities"][lesion_index])
        is_lesion.append(case.label == LESION_CLASS)
        if case.label == LESION_CLASS and case.mask is not None:
            mask = read_mask(case.mask, volume)
            explanation = explain_case(model, volume, methods=methods, target=LESION_CLASS, seed=seed,
                                       case_id=case.case_id)
            scores = replace(settings.scores, sanity=settings.sanity)  # ``sanity`` switches the per-case check
            for row in score_explanation(model, explanation, grid_case, mask=mask, seed=seed, settings=scores):
                row.update(seed=seed, p_lesion=p_lesion[-1], predicted_lesion=bool(p_lesion[-1] >= 0.5),
                           lesion_voxels=int(np.count_nonzero(mask.data)), grid=volume.orientation,
                           verdict_without_mask=decide(row, use_localisation=False).label)
                rows.append(row)
        if progress is not None:
            progress(f"Seed {seed}: test cases", number, len(cases))
    model_summary = {
        "seed": seed, "val_auc": summary.get("val_auc"), "best_epoch": summary.get("best_epoch"),
        "test_auc": _auc(p_lesion, is_lesion), "test_cases": len(cases), "lesion_cases": len(lesion_cases),
        "test_accuracy": float(np.mean([(p >= 0.5) == y for p, y in zip(p_lesion, is_lesion)])),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return rows, model_summary


def run_validation(settings: ValidateSettings, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the per-case rows, per-seed model summaries and the settings used."""
    from medxai.attribution.registry import METHODS, check_method_names

    methods = list(settings.methods) or list(METHODS)
    check_method_names(methods)
    rows: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index in range(settings.seeds):
        seed = settings.seed + index
        with tempfile.TemporaryDirectory(prefix="medxai-validate-") as work, torch.random.fork_rng():
            seed_rows, summary = _seed_run(settings, methods, seed, Path(work), progress)
        rows += seed_rows
        models.append(summary)
        if progress is not None:
            progress("Seeds", index + 1, settings.seeds)
    return {
        "settings": {**asdict(settings), "methods": methods}, "models": models, "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
