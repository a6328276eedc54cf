"""Seeded perturbations of 3D volumes for the faithfulness and robustness metrics.

Each perturbation draws its randomness per (example, sample) pair from its own seeded generator, so a
metric gives the same value however Captum slices the samples into batches (``max_examples_per_batch``)
and whatever the batch size: batched equals unbatched by construction. Sizes are physical: noise is a
fraction of the robust intensity range, blocks are cubes of ``block_mm`` millimetres on the model grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from medxai.errors import ConfigError


def robust_range(volume: Tensor, *, low: float = 0.5, high: float = 99.5) -> float:
    """Intensity range between the ``low`` and ``high`` percentiles (1.0 when the volume is flat)."""
    values = volume.detach().to("cpu", torch.float64).numpy().ravel()
    lo, hi = np.percentile(values, [low, high])
    span = float(hi - lo)
    return span if span > 0 else 1.0


def sample_generator(seed: int, example: int, sample: int) -> torch.Generator:
    """The generator of one (example, sample) pair: a torch CPU generator seeded from NumPy's
    ``SeedSequence([seed, example, sample])`` (first 63 bits of its first 64-bit state word)."""
    state = np.random.SeedSequence([seed, example, sample]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


class Perturbation(Protocol):
    """Perturbs one example (C, X, Y, Z) with the given generator; ``intensity_range`` is the example's
    :func:`robust_range` when the caller already has it (computed here otherwise)."""

    def perturb(self, example: Tensor, *, generator: torch.Generator, intensity_range: float | None = None) -> Tensor: ...


@dataclass(frozen=True)
class GaussianNoise:
    """Additive Gaussian noise with std = ``std_fraction`` x the example's robust intensity range."""

    std_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not self.std_fraction > 0:
            raise ConfigError(f"noise std fraction must be > 0, got {self.std_fraction}")

    def perturb(self, example: Tensor, *, generator: torch.Generator, intensity_range: float | None = None) -> Tensor:
        std = self.std_fraction * (robust_range(example) if intensity_range is None else intensity_range)
        noise = torch.randn(example.shape, generator=generator, dtype=torch.float32)
        return example + (std * noise).to(example.device, example.dtype)


@dataclass(frozen=True)
class UniformNoise:
    """Uniform noise in the L-infinity ball of radius ``radius_fraction`` x the robust intensity range
    (the sampling of Yeh et al. 2019's max-sensitivity, with a radius in intensity-range units)."""

    radius_fraction: float = 0.02

    def __post_init__(self) -> None:
        if not self.radius_fraction > 0:
            raise ConfigError(f"noise radius fraction must be > 0, got {self.radius_fraction}")

    def perturb(self, example: Tensor, *, generator: torch.Generator, intensity_range: float | None = None) -> Tensor:
        radius = self.radius_fraction * (robust_range(example) if intensity_range is None else intensity_range)
        noise = torch.rand(example.shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0
        return example + (radius * noise).to(example.device, example.dtype)


def block_voxels(block_mm: float, spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Edge lengths in voxels of a ``block_mm`` cube on a grid with ``spacing`` (at least 1, at most the shape)."""
    if not block_mm > 0:
        raise ConfigError(f"block size must be > 0 mm, got {block_mm}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ConfigError(f"spacing must be three positive sizes in mm, got {spacing}")
    return tuple(int(min(n, max(1, round(block_mm / s)))) for s, n in zip(spacing, shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class BlockPerturbation:
    """``n_blocks`` random cubes of ``block_mm`` mm (model-grid ``spacing``) set to ``baseline`` (``fill='baseline'``)
    or given Gaussian noise of ``noise_fraction`` x the robust range (``fill='noise'``)."""

    spacing: tuple[float, float, float]
    block_mm: float = 8.0
    n_blocks: int = 4
    fill: Literal["baseline", "noise"] = "baseline"
    baseline: float = 0.0
    noise_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.n_blocks < 1:
            raise ConfigError(f"number of blocks must be >= 1, got {self.n_blocks}")
        if self.fill not in ("baseline", "noise"):
            raise ConfigError(f"block fill must be 'baseline' or 'noise', got {self.fill!r}")
        block_voxels(self.block_mm, self.spacing, (1, 1, 1))

    def perturb(self, example: Tensor, *, generator: torch.Generator, intensity_range: float | None = None) -> Tensor:
        shape = tuple(int(n) for n in example.shape[1:])
        edge = block_voxels(self.block_mm, self.spacing, shape)  # type: ignore[arg-type]
        region = torch.zeros(shape, dtype=torch.bool)
        for _ in range(self.n_blocks):
            corner = [int(torch.randint(0, n - e + 1, (1,), generator=generator)) for n, e in zip(shape, edge)]
            region[tuple(slice(c, c + e) for c, e in zip(corner, edge))] = True
        region = region.to(example.device).expand_as(example)
        if self.fill == "baseline":
            replacement = torch.full_like(example, self.baseline)
        else:
            std = self.noise_fraction * (robust_range(example) if intensity_range is None else intensity_range)
            noise = torch.randn(example.shape, generator=generator, dtype=torch.float32)
            replacement = example + (std * noise).to(example.device, example.dtype)
        return torch.where(region, replacement, example)


class SeededStream:
    """The perturbation function handed to Captum: perturbs each row of the expanded batch it receives.

    Captum repeats every input example ``k`` times (``repeat_interleave``) and calls the function once per
    slice of samples; the stream counts the samples already drawn so each row gets the generator of its own
    (example, sample) pair. Every row of one example is a copy of the same input, so its robust intensity
    range is computed once per example (a percentile over the whole volume, not free at 128^3).
    """

    def __init__(self, perturbation: Perturbation, *, batch_size: int, seed: int) -> None:
        self.perturbation = perturbation
        self.batch_size = batch_size
        self.seed = seed
        self.drawn = 0
        self._ranges: dict[int, float] = {}

    def __call__(self, inputs: Tensor) -> Tensor:
        rows = inputs.shape[0]
        if rows % self.batch_size:
            raise ValueError(f"{rows} rows is not a multiple of the batch size {self.batch_size}")
        per_example = rows // self.batch_size
        out = torch.empty_like(inputs)
        for row in range(rows):
            example, sample = divmod(row, per_example)
            generator = sample_generator(self.seed, example, self.drawn + sample)
            if example not in self._ranges:
                self._ranges[example] = robust_range(inputs[row])
            out[row] = self.perturbation.perturb(inputs[row], generator=generator, intensity_range=self._ranges[example])
        self.drawn += per_example
        return out


def as_captum_perturb_func(perturbation: Perturbation, *, batch_size: int, seed: int) -> Callable[[Tensor], Tensor]:
    """A one-argument perturbation function (Captum's ``perturb_func``), fresh for one metric call."""
    stream = SeededStream(perturbation, batch_size=batch_size, seed=seed)
    return lambda inputs: stream(inputs)
