"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

On a deep copy of the network, the parameterised layers are re-initialised one after the other from the
output towards the input (cascading randomisation; each with its own ``reset_parameters()`` under a seeded
generator), and the explanation is recomputed at a few points of the cascade. An explanation that still
looks like the original once the whole model is destroyed does not depend on what the model learned: the
method fails the check.

Similarity: Spearman rank correlation of the absolute maps (the paper's main measure) and of the signed
maps, and SSIM (``skimage.metrics.structural_similarity`` in 3D) of the absolute maps each scaled to [0, 1].
The default threshold 0.5 on the absolute-value Spearman of the fully randomised model is Cohen's boundary
of a "large" correlation: above it, most of the map's ranking survives the destruction of the model (the
paper's failing methods, guided backprop and guided Grad-CAM, stay far above it; gradients fall near 0).

Two ways the whole-volume comparison misleads (docs/verdicts.md has the measurements):

- a *degenerate* map (constant, numerically zero next to the original, or one value over nearly every voxel,
  as Grad-CAM gives once a randomised layer's ReLU kills every activation) has no ranking: its Spearman is 0
  by convention and would count as a pass. The step is then ``inconclusive``, never a pass;
- the ranking of every voxel is dominated by the image structure (the body outline, internal edges) that any
  gradient of a convolutional network follows, trained or not (Binder et al. 2023; Hedström et al. 2023,
  "Sanity checks revisited"). The check that decides is therefore made on the region a reader looks at: the
  Dice overlap of the top 5 % |map| voxels of the original and of the randomised model's map
  (``top_overlap``), which fails when at least ``threshold`` of that region survives the randomisation.
  The Spearman inside the body (``spearman_body``), SSIM and eMPRT (Hedström et al.'s relative rise of the
  map's histogram entropy) are measured alongside.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage, stats
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from medxai.errors import ConfigError

DEFAULT_THRESHOLD = 0.5
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
TOP_FRACTION = 0.05  # the top 5 % of |map| voxels: the region a reader looks at
NEAR_ZERO = 1e-6  # a randomised map whose peak |value| is below this share of the original's is numerically zero
MIN_BODY_SHARE = 0.1  # a "body" under a tenth of the grid is a bright structure in a scan without air
TIED_SHARE = 0.99  # a map with one value on 99 % of its voxels has no ranking to compare
SANITY_EXTRA_COLUMNS = ("sanity_status", "sanity_top_overlap", "sanity_spearman_body", "sanity_detail")
ENTROPY_BINS = 100  # Quantus' default number of equal-width bins for eMPRT's discrete entropy


@dataclass(frozen=True)
class RandomisationStep:
    """Similarity to the original map after randomising the top ``layers_randomised`` layers (down to ``layer``)."""

    layers_randomised: int
    layer: str
    spearman_abs: float
    spearman: float
    ssim: float
    spearman_body: float = math.nan
    top_overlap: float = math.nan
    emprt: float = math.nan
    status: str = PASS
    detail: str = ""


@dataclass(frozen=True)
class SanityResult:
    """The cascade's steps; the check passes when the top-5 % regions of the original and of the fully
    randomised model's map overlap (Dice) below ``threshold``, and is inconclusive (``passed`` None) when the
    randomised map is degenerate."""

    steps: tuple[RandomisationStep, ...]
    n_layers: int
    threshold: float

    @property
    def final(self) -> RandomisationStep:
        return self.steps[-1]

    @property
    def status(self) -> str:
        return self.final.status

    @property
    def passed(self) -> bool | None:
        return None if self.final.status == INCONCLUSIVE else self.final.status == PASS


def parameterised_layers(network: nn.Module, example: Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order a forward pass on ``example`` first runs them
    (modules the forward pass never reaches are left out)."""
    order: list[str] = []
    hooks = []
    for name, module in network.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            hooks.append(module.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name)))
    try:
        with torch.no_grad():
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


def reinitialise(module: nn.Module) -> None:
    """Re-initialise a module's own parameters with its ``reset_parameters()`` (PyTorch's default
    initialisation); modules without one get N(0, 0.02) weights, as a generic fallback."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            parameter.normal_(0.0, 0.02)


def _spatial_signed(attribution: Tensor) -> np.ndarray:
    """The map summed over channels as (X, Y, Z), float64."""
    volume = attribution.detach().to("cpu", torch.float64)
    while volume.ndim > 3:
        volume = volume.sum(dim=0)
    return volume.numpy()


def _flat(attribution: Tensor) -> np.ndarray:
    return attribution.detach().to("cpu", torch.float64).numpy().ravel()


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman correlation; a constant map correlates 1 with an identical map and 0 with any other."""
    first_flat, second_flat = first.ravel(), second.ravel()
    constant = [np.ptp(first_flat) == 0, np.ptp(second_flat) == 0]
    if any(constant):
        return 1.0 if all(constant) and np.array_equal(first_flat, second_flat) else 0.0
    return float(stats.spearmanr(first_flat, second_flat).statistic)


def _spatial(attribution: Tensor) -> np.ndarray:
    """|map| summed over channels as (X, Y, Z), scaled to [0, 1] by its maximum."""
    array = _spatial_signed(attribution.abs())
    peak = float(array.max())
    return array / peak if peak > 0 else array


def ssim(first: Tensor, second: Tensor) -> float:
    """3D SSIM of the two absolute maps, each scaled to [0, 1] (data_range 1); NaN on grids under 3 voxels."""
    a, b = _spatial(first), _spatial(second)
    window = min(7, min(a.shape) - (1 - min(a.shape) % 2))
    if window < 3:
        return math.nan
    return float(structural_similarity(a, b, win_size=window, data_range=1.0))


def compare(original: Tensor, randomised: Tensor) -> tuple[float, float, float]:
    """(Spearman of |maps|, Spearman of signed maps, SSIM of |maps|)."""
    a, b = _flat(original), _flat(randomised)
    return spearman(np.abs(a), np.abs(b)), spearman(a, b), ssim(original, randomised)


def degenerate(values: np.ndarray, *, reference_peak: float | None = None, tied_share: float | None = TIED_SHARE
               ) -> str | None:
    """Why ``values`` has no ranking to compare (constant, numerically zero next to ``reference_peak``, or one
    value on at least ``tied_share`` of the voxels), or None when it has one."""
    flat = np.abs(np.asarray(values, dtype=np.float64).ravel())
    if flat.size == 0 or np.ptp(flat) == 0:
        return "is constant"
    if reference_peak is not None and reference_peak > 0 and float(flat.max()) < NEAR_ZERO * reference_peak:
        return "is numerically zero"
    if tied_share is None:
        return None
    _, counts = np.unique(flat, return_counts=True)
    if counts.max() >= tied_share * flat.size:
        return f"holds one value on {100 * counts.max() / flat.size:.0f}% of its voxels"
    return None


def foreground_array(array: np.ndarray) -> np.ndarray:
    """The body: voxels above Otsu's threshold with enclosed cavities filled, so dark structures inside the
    body (ventricles, dark lesions) belong to it. Every voxel when the image is constant or when that leaves
    under :data:`MIN_BODY_SHARE` of the grid (then Otsu found a bright structure, not a body against air)."""
    if np.ptp(array) == 0:
        return np.ones(array.shape, dtype=bool)
    body = ndimage.binary_fill_holes(array > threshold_otsu(array))
    return body if body.mean() >= MIN_BODY_SHARE else np.ones(array.shape, dtype=bool)


def foreground(inputs: Tensor) -> np.ndarray:
    """The body of a model input (C, X, Y, Z): :func:`foreground_array` of the channel mean."""
    volume = inputs.detach().to("cpu", torch.float64)
    while volume.ndim > 3:
        volume = volume.mean(dim=0)
    return foreground_array(volume.numpy())


def top_overlap(first: np.ndarray, second: np.ndarray, *, fraction: float = TOP_FRACTION) -> float:
    """Dice overlap of the top ``fraction`` voxels of the two |maps| (ties broken by position)."""
    count = max(1, int(round(fraction * first.size)))
    top_a = np.argsort(-np.abs(first.ravel()), kind="stable")[:count]
    top_b = np.argsort(-np.abs(second.ravel()), kind="stable")[:count]
    return float(2 * np.intersect1d(top_a, top_b).size / (2 * count))


def discrete_entropy(values: np.ndarray, *, bins: int = ENTROPY_BINS) -> float:
    """Shannon entropy (nats) of the histogram of |values| in ``bins`` equal-width bins (Quantus'
    ``discrete_entropy``)."""
    counts, _ = np.histogram(np.abs(values.ravel()), bins=bins)
    return float(stats.entropy(counts))


def emprt(original: np.ndarray, randomised: np.ndarray) -> float:
    """eMPRT (Hedström et al. 2023): relative rise of the map's entropy once the model is randomised,
    (H(randomised) - H(original)) / H(original); above 0 the randomised model's map is the more disordered."""
    before = discrete_entropy(original)
    return (discrete_entropy(randomised) - before) / before if before > 0 else math.nan


def measure(original: Tensor, randomised: Tensor, body: np.ndarray, *, layers: int, layer: str,
            threshold: float) -> RandomisationStep:
    """Every similarity of one step of the cascade and its status: ``fail`` for a constant original map,
    ``inconclusive`` for a degenerate randomised one, else ``pass`` when the top-5 % overlap is below
    ``threshold``."""
    spearman_abs, spearman_signed, similarity = compare(original, randomised)
    a, b = _spatial_signed(original), _spatial_signed(randomised)
    region = body if body.shape == a.shape and body.sum() > 1 else np.ones(a.shape, dtype=bool)
    inside = spearman(np.abs(a[region]), np.abs(b[region]))
    overlap = top_overlap(a, b)
    flat_original = degenerate(a, tied_share=None)  # a map of the lesion alone is sparse, not degenerate
    flat_randomised = degenerate(b, reference_peak=float(np.abs(a).max()))
    if flat_original:  # a map that shows nothing cannot pass, whatever the randomised model gives
        status, detail = FAIL, f"the map itself {flat_original}"
    elif flat_randomised:
        status, detail = INCONCLUSIVE, f"the randomised model's map {flat_randomised}"
    else:
        status, detail = (PASS if overlap < threshold else FAIL), ""
    return RandomisationStep(layers, layer, spearman_abs, spearman_signed, similarity, spearman_body=inside,
                             top_overlap=overlap, emprt=emprt(a, b), status=status, detail=detail)


def _checkpoints(n_layers: int, n_steps: int) -> list[int]:
    """``n_steps`` points of the cascade, evenly spaced, always ending with the fully randomised model."""
    return sorted({max(1, int(math.ceil(n_layers * (i + 1) / n_steps))) for i in range(min(n_steps, n_layers))})


def cascading_randomisation(
    network: nn.Module,
    example: Tensor,
    explain: Callable[[nn.Module], Tensor],
    *,
    seed: int = 0,
    n_steps: int = 3,
    threshold: float = DEFAULT_THRESHOLD,
) -> SanityResult:
    """Run the cascade on a deep copy of ``network`` (the original is left untouched).

    ``explain(net)`` returns the explanation of the case under study by ``net`` (same input, same target);
    ``example`` is that input, used to find the layers' execution order. The explanation is recomputed after
    ``n_steps`` evenly spaced points of the cascade, the last being the fully randomised model.
    """
    if n_steps < 1:
        raise ConfigError(f"randomisation steps must be >= 1, got {n_steps}")
    if not 0 < threshold <= 1:
        raise ConfigError(f"sanity threshold must be in (0, 1], got {threshold}")
    original = explain(network).detach()
    randomised = copy.deepcopy(network)
    layers = list(reversed(parameterised_layers(randomised, example)))
    if not layers:
        raise ConfigError("the network has no parameterised layers to randomise")
    modules = dict(randomised.named_modules())
    devices = [example.device] if example.device.type == "cuda" else []
    checkpoints = set(_checkpoints(len(layers), n_steps))
    body = foreground(example[0])
    steps: list[RandomisationStep] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for count, name in enumerate(layers, start=1):
            reinitialise(modules[name])
            if count in checkpoints:
                steps.append(measure(original, explain(randomised).detach(), body, layers=count, layer=name,
                                     threshold=threshold))
    return SanityResult(steps=tuple(steps), n_layers=len(layers), threshold=threshold)


def as_record(result: SanityResult) -> dict[str, Any]:
    """JSON-ready summary: pass/fail, the final step's scores and the whole cascade."""
    return {
        "sanity_pass": result.passed,
        "sanity_status": result.status,
        "sanity_detail": result.final.detail,
        "sanity_top_overlap": result.final.top_overlap,
        "sanity_spearman_body": result.final.spearman_body,
        "sanity_spearman": result.final.spearman_abs,
        "sanity_spearman_signed": result.final.spearman,
        "sanity_ssim": result.final.ssim,
        "sanity_threshold": result.threshold,
        "cascade": [step.__dict__ for step in result.steps],
    }



def cascade_columns(cascade: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """:data:`SANITY_EXTRA_COLUMNS` of a cascade's last step (a list of :class:`RandomisationStep` dicts, as
    ``sanity_cascade`` holds them); empty when the check was not run."""
    if not cascade:
        return {}
    final = cascade[-1]
    return {"sanity_status": final["status"], "sanity_top_overlap": final["top_overlap"],
            "sanity_spearman_body": final["spearman_body"], "sanity_detail": final["detail"]}
