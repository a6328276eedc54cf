"""Shared helpers of the benchmarks: repeat-and-median timing, load average, records, run settings."""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

REQUIRED_KEYS = ("name", "method", "size", "device", "median_s", "spread_s", "repeats")


@dataclass(frozen=True)
class Settings:
    """What one run measures. ``quick`` keeps ``make bench-quick`` to a few minutes on 2 idle cores."""

    quick: bool
    repeats: int
    floor_cases: tuple[tuple[str, int, tuple[int, ...]], ...]  # (arch, size, batch sizes)
    floor_warmup: int
    batch_sizes: tuple[int, ...]
    method_model: str
    method_size: int
    roi_case: tuple[int, int, int]  # (size, window, stride) of the ROI occlusion vs MONAI comparison
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory_sizes: tuple[int, ...] = (64,)
    demo_args: tuple[str, ...] = ("--quick",)
    pipeline_cases: int = 4
    end_to_end_repeats: int = 1

    @classmethod
    def make(cls, *, quick: bool) -> "Settings":
        if quick:
            # Quick: every method on the tiny CNN at 32^3 with reduced sample counts (the ratios, not the
            # absolute seconds, are what the quick run is for); resnet18 only for the floor, batch 1.
            return cls(quick=True, repeats=3, floor_cases=(("tiny", 64, (1, 4)), ("resnet18", 64, (1,))), floor_warmup=0,
                       batch_sizes=(1, 4, 16), method_model="tiny", method_size=32, roi_case=(32, 8, 8),
                       method_options={"integrated_gradients": {"n_steps": 16, "max_steps": 16},
                                       "smoothgrad": {"n_samples": 16},
                                       "smooth_gradcampp": {"n_samples": 8},
                                       "occlusion": {"window_mm": 16.0, "stride_mm": 8.0}},
                       memory_sizes=(64,), demo_args=("--quick",), pipeline_cases=4)
        # Full: the method groups as --methods-only runs them on ResNet18 at 64^3 (sample counts cut: the ratios
        # do not depend on them, and 343 occlusion windows repeated by the peers would take hours on a CPU), the
        # floors of three networks at three sizes, memory at 128 and 256^3, radiomics and the end-to-end runs.
        return replace(cls.methods_at("resnet18", 64),
                       floor_cases=tuple((arch, size, (1, 2, 4, 8)) for arch in ("tiny", "resnet18", "densenet121")
                                         for size in (64, 96, 128)),
                       memory_sizes=(128, 256), demo_args=(), pipeline_cases=20, end_to_end_repeats=3)

    @classmethod
    def methods_at(cls, arch: str, size: int) -> "Settings":
        """The method, peer and metric groups alone on ``arch`` at ``size``^3, with sample counts cut so a
        real network (resnet18 at 64^3: 4.4 s per forward+backward on 2 cores) finishes within the hour:
        the ratios to the floor and to the peers do not depend on how many passes are counted. Occlusion
        windows and supervoxels grow with the volume (a quarter and 3/8 of its side: 16 and 24 mm at 64^3,
        32 and 48 mm at 128^3), so every size runs 64 windows: 512 windows of 16 mm at 128^3 would take
        hours once the peers repeat them."""
        window = size / 4.0
        return cls(quick=False, repeats=3, floor_cases=(), floor_warmup=1, batch_sizes=(1, 2, 4, 8),
                   method_model=arch, method_size=size, roi_case=(size, int(window), int(window)),
                   method_options={"integrated_gradients": {"n_steps": 16, "max_steps": 16},
                                   "smoothgrad": {"n_samples": 8},
                                   "smooth_gradcampp": {"n_samples": 8},
                                   "occlusion": {"window_mm": window, "stride_mm": window},
                                   "feature_ablation": {"supervoxel_mm": size * 3 / 8}})


def device_name() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_average() -> float:
    """The 1-minute load average now."""
    return round(os.getloadavg()[0], 2)


def measure(call: Callable[[], Any], *, repeats: int, device: str = "cpu", warmup: int = 1) -> dict[str, Any]:
    """Median wall time of ``call`` over ``repeats`` runs after ``warmup`` untimed ones, with the spread
    (min-max below 4 repeats, else the interquartile range) and every sample."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        call()
        synchronize(device)
        samples.append(time.perf_counter() - started)
    return _merge([{"median_s": sample} for sample in samples])


def measure_pair(first: Callable[[], Any], second: Callable[[], Any], *, repeats: int, device: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """Time two calls alternately (first, second, first, ...) so both see the same machine load."""
    first_runs: list[dict[str, Any]] = []
    second_runs: list[dict[str, Any]] = []
    for index in range(repeats):
        first_runs.append(measure(first, repeats=1, device=device, warmup=1 if index == 0 else 0))
        second_runs.append(measure(second, repeats=1, device=device, warmup=1 if index == 0 else 0))
    return _merge(first_runs), _merge(second_runs)


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    samples = [run["median_s"] for run in runs]
    if len(samples) >= 4:
        quartiles = statistics.quantiles(samples, n=4)
        spread, kind = quartiles[2] - quartiles[0], "iqr"
    else:
        spread, kind = max(samples) - min(samples), "min-max"
    return {"median_s": statistics.median(samples), "spread_s": spread, "spread_kind": kind,
            "repeats": len(samples), "samples_s": [round(s, 5) for s in samples]}


def record(name: str, method: str, size: str, device: str, timing: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One result row: the timing plus ratios to its floor and its peer where those are given."""
    row: dict[str, Any] = {"name": name, "method": method, "size": size, "device": device, **timing, **extra}
    if row.get("floor_s"):
        row["ratio_to_floor"] = row["median_s"] / row["floor_s"]
    if row.get("peer_median_s"):
        row["ratio_to_peer"] = row["median_s"] / row["peer_median_s"]
    return row
