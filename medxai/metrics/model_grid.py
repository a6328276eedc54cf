"""Model-grid scores of one explanation: faithfulness (infidelity under noise and under mm-sized block
removal, max-sensitivity, deletion/insertion areas) and the cascading randomisation sanity check, with the
settings that say how hard to measure. Plain compositions of :mod:`medxai.metrics`' functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from medxai.errors import ConfigError
from medxai.metrics.deletion import deletion_curve
from medxai.metrics.faithfulness import bounded_batch_size, infidelity, max_sensitivity
from medxai.metrics.localisation import DEFAULT_SHELLS_MM, shell_name
from medxai.metrics.perturbations import BlockPerturbation, GaussianNoise, UniformNoise
from medxai.metrics.sanity import DEFAULT_THRESHOLD, cascading_randomisation

# Methods whose maps already include the input factor ("global" attributions in Yeh et al. / Ancona et al.):
# their infidelity uses the binary perturbation (x - x') / (x - baseline) (Captum's multiply_by_inputs).
GLOBAL_METHODS = frozenset({"input_x_gradient", "integrated_gradients", "deeplift", "lrp", "occlusion", "feature_ablation"})

FAITHFULNESS_COLUMNS = ("infidelity", "infidelity_blocks", "max_sensitivity", "deletion_auc", "insertion_auc")
SANITY_COLUMNS = ("sanity_spearman", "sanity_spearman_signed", "sanity_ssim", "sanity_pass")
LOCALISATION_COLUMNS = (
    "pointing_game", "mass_in_mask", "rank_accuracy", "auroc",
    "com_distance_mm", "com_to_centre_mm", "peak_distance_mm", "peak_to_centre_mm",
)


@dataclass(frozen=True)
class ScoreSettings:
    """What to measure and how hard. Fractions are of the robust intensity range; sizes in mm.

    ``sensitivity``/``sanity``/``deletion`` switch the costlier parts off (max-sensitivity explains
    ``n_sensitivity`` perturbed copies; the sanity check explains ``sanity_steps`` randomised models).
    """

    n_infidelity: int = 16
    noise_fraction: float = 0.1
    block_mm: float = 8.0
    n_blocks: int = 4
    baseline: float = 0.0
    sensitivity: bool = True
    n_sensitivity: int = 4
    sensitivity_radius: float = 0.02
    deletion: bool = True
    deletion_steps: int = 16
    sanity: bool = True
    sanity_steps: int = 3
    sanity_threshold: float = DEFAULT_THRESHOLD
    tolerance_mm: float = 0.0
    shells_mm: tuple[float, ...] = DEFAULT_SHELLS_MM
    memory_fraction: float = 0.25

    def __post_init__(self) -> None:
        for name in ("n_infidelity", "n_sensitivity", "deletion_steps", "sanity_steps", "n_blocks"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tolerance_mm < 0:
            raise ConfigError(f"pointing-game tolerance must be >= 0 mm, got {self.tolerance_mm}")

    def columns(self, *, with_mask: bool) -> list[str]:
        """The metric columns of ``scores.csv`` for these settings (``case_id``/``method`` first)."""
        columns = ["case_id", "method", *FAITHFULNESS_COLUMNS, *SANITY_COLUMNS]
        if with_mask:
            shells = [shell_name(a, b) for a, b in zip(self.shells_mm, self.shells_mm[1:])]
            columns += [*LOCALISATION_COLUMNS, *shells]
        return columns + ["target", "error"]


@dataclass(frozen=True)
class ModelGridCase:
    """One case on the model grid: ``inputs`` (1, C, X, Y, Z), its voxel ``spacing`` in mm and the class
    index every explanation and metric of the case refers to."""

    network: nn.Module
    inputs: torch.Tensor
    spacing: tuple[float, float, float]
    class_index: int
    extra: dict[str, Any] = field(default_factory=dict)


Explainer = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""``explain(network, inputs)``: the method's map of the case's class for ``inputs`` (1, C, X, Y, Z)."""


def faithfulness_scores(
    case: ModelGridCase, heatmap: torch.Tensor, explain: Explainer, *, method: str, settings: ScoreSettings, seed: int
) -> dict[str, float]:
    """Infidelity (noise, blocks), max-sensitivity and deletion/insertion areas of one model-grid map."""
    network, inputs, target = case.network, case.inputs, case.class_index
    n = settings.n_infidelity
    forward_batch = bounded_batch_size(network, inputs, n_samples=n, backward=False, memory_fraction=settings.memory_fraction)
    global_map = method in GLOBAL_METHODS
    common = dict(target=target, n_perturb_samples=n, max_examples_per_batch=forward_batch, seed=seed)
    scores = {
        "infidelity": float(infidelity(network, inputs, heatmap, perturbation=GaussianNoise(settings.noise_fraction),
                                       multiply_by_inputs=global_map, attribution_baseline=settings.baseline, **common)[0]),
        "infidelity_blocks": float(infidelity(
            network, inputs, heatmap, multiply_by_inputs=global_map, attribution_baseline=settings.baseline,
            perturbation=BlockPerturbation(case.spacing, block_mm=settings.block_mm, n_blocks=settings.n_blocks,
                                           baseline=settings.baseline), **common)[0]),
        "max_sensitivity": math.nan,
        "deletion_auc": math.nan,
        "insertion_auc": math.nan,
    }
    if settings.sensitivity:

        def explain_rows(batch: torch.Tensor, **_target: Any) -> torch.Tensor:
            """Methods explain one volume at a time; the target is the case's, bound in ``explain``."""
            return torch.cat([explain(network, row[None]) for row in batch])

        scores["max_sensitivity"] = float(max_sensitivity(
            explain_rows, inputs, perturbation=UniformNoise(settings.sensitivity_radius),
            n_perturb_samples=settings.n_sensitivity, max_examples_per_batch=settings.n_sensitivity, seed=seed)[0])
    if settings.deletion:
        steps = settings.deletion_steps
        curve_batch = bounded_batch_size(network, inputs, n_samples=steps + 1, backward=False,
                                         memory_fraction=settings.memory_fraction)
        for mode in ("deletion", "insertion"):
            curve = deletion_curve(network, inputs, heatmap, target=target, spacing=case.spacing, mode=mode,  # type: ignore[arg-type]
                                   block_mm=settings.block_mm, n_steps=steps, baseline=settings.baseline,
                                   max_examples_per_batch=curve_batch)
            scores[f"{mode}_auc"] = curve.auc
    return scores


def sanity_scores(case: ModelGridCase, explain: Explainer, *, settings: ScoreSettings, seed: int) -> dict[str, Any]:
    """The cascading randomisation check of one method on one case (``sanity_pass`` and the similarities)."""
    result = cascading_randomisation(
        case.network, case.inputs, lambda net: explain(net, case.inputs), seed=seed,
        n_steps=settings.sanity_steps, threshold=settings.sanity_threshold,
    )
    return {
        "sanity_spearman": result.final.spearman_abs,
        "sanity_spearman_signed": result.final.spearman,
        "sanity_ssim": result.final.ssim,
        "sanity_pass": result.passed,
        "sanity_cascade": [step.__dict__ for step in result.steps],
    }


def empty_sanity() -> dict[str, Any]:
    return {"sanity_spearman": math.nan, "sanity_spearman_signed": math.nan, "sanity_ssim": math.nan, "sanity_pass": None}
