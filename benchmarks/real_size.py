"""The real-size row: every method on a 512x512x300 CT-like volume through the demo's model class, as
``medxai explain`` runs it (the scan resized to the model grid, each heatmap mapped back to 512x512x300).

The volume is the phantom generator's (``medxai.synthetic``) at CT size and spacing (0.7 x 0.7 x 1.2 mm, a
358 x 358 x 360 mm field of view), rendered at bench time slab by slab (a whole-volume render holds several
float64 coordinate arrays of 79 M voxels) and never stored. The model is the demo's architecture and model
grid, untrained and seeded: the cost of a method does not depend on the weights.

The pass floors of that model at its grid come first (``benchmarks.floor``). Per method: the method's time
(``median_s``, one run), the time of the whole ``explain_case`` call (scan preprocessing and mapping back
included), the passes it ran, its floor (passes x the best per-sample pass time; for one-sample-per-pass
methods also the batch-1 floor), the time pre-flight's estimate and its ratio to the actual time, and the peak
resident memory. One more row puts occlusion's time
over integrated gradients' as its ``ratio_to_peer`` (both with default settings, measured side by side; goal <= 20).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.attribution_cost import SINGLE_SAMPLE_METHODS, passes as counted_passes
from benchmarks.common import record

SHAPE = (512, 512, 300)
SPACING_MM = (0.7, 0.7, 1.2)
SLAB = 20  # slices rendered at a time
OCCLUSION_GOAL = 20.0  # occlusion / integrated gradients, default settings


def ct_like_volume(*, seed: int = 0) -> Any:
    """A lesion phantom on a 512x512x300 grid of CT spacing (RAS, centred on the phantom), rendered by slabs."""
    from medxai.synthetic import make_spec, render
    from medxai.volume import Volume

    fov = max(n * s for n, s in zip(SHAPE, SPACING_MM))
    spec = make_spec(seed=seed, task="presence", label="lesion", size=int(round(fov)))
    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = np.asarray(spec.centre_mm) - np.asarray(SPACING_MM) * (np.asarray(SHAPE) - 1) / 2
    data = np.empty(SHAPE, dtype=np.float32)
    for first in range(0, SHAPE[2], SLAB):
        count = min(SLAB, SHAPE[2] - first)
        slab = affine.copy()
        slab[:3, 3] = affine[:3, 3] + affine[:3, 2] * first
        data[..., first : first + count] = render(spec, affine=slab, shape=(*SHAPE[:2], count), noise_seed=first).image.data
    return Volume(data, affine, {"source": "synthetic", "seed": seed}, ())


def demo_model(folder: Path) -> Any:
    """The demo's architecture on the demo's model grid, untrained (seeded), saved and loaded as a model directory."""
    import torch

    from medxai.demo import DemoSettings
    from medxai.models.model_dir import load_model, save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network

    settings = DemoSettings()
    grid = (settings.model_size,) * 3
    torch.manual_seed(0)
    network = build_network(settings.arch, in_channels=1, num_classes=2, spatial_size=grid)
    save_model_dir(folder, network=network, arch=settings.arch, classes=["normal", "lesion"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=grid), training={}, metrics={})
    return load_model(folder)


def real_size_records(*, device: str, repeats: int = 3) -> list[dict[str, Any]]:
    """One row per method on the CT-sized volume, then occlusion over integrated gradients."""
    from benchmarks.floor import floor_records
    from medxai.attribution.engine import explain_case
    from medxai.attribution.registry import METHODS

    volume = ct_like_volume()
    size = "x".join(map(str, SHAPE))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medxai-bench-real-") as tmp:
        model = demo_model(Path(tmp) / "model")
        grid = model.preprocessor.config.spatial_size
        floor_rows, floor = floor_records(model.arch, grid[0], device=device, repeats=repeats, batch_sizes=(1, 2, 4, 8))
        rows += floor_rows
        for name in METHODS:
            started = time.perf_counter()
            explanation = explain_case(model, volume, methods=[name], case_id="ct_like", device=device)
            whole = time.perf_counter() - started
            if name in explanation.failed:
                rows.append({"name": f"real_size/{name}", "method": name, "size": size, "device": device,
                             "error": explanation.failed[name]})
                continue
            entry = explanation.record["methods"][name]
            ran = counted_passes(name, entry["parameters"], entry["diagnostics"], tuple(grid))
            timing = {"median_s": entry["actual_seconds"], "spread_s": 0.0, "spread_kind": "one run", "repeats": 1}
            rows.append(record(
                f"real_size/{name}", name, size, device, timing, model=model.arch, model_grid=list(grid),
                passes=ran, floor_s=floor.cost(**ran), estimated_s=entry["estimated_seconds"],
                estimate_ratio=entry["actual_seconds"] / max(entry["estimated_seconds"], 1e-9),
                planned_passes=entry["passes"], peak_rss_mib=entry["peak_rss_mib"], explain_case_s=whole,
                batch_size=explanation.record["batch_size"]["used"],
                windows=entry["diagnostics"].get("windows"), supervoxels=entry["diagnostics"].get("supervoxels")))
            if name in SINGLE_SAMPLE_METHODS:  # one sample per pass: a batch-1 pass is its floor
                rows[-1]["floor_b1_s"] = floor.cost_at_batch_1(**ran)
                rows[-1]["ratio_to_b1_floor"] = rows[-1]["median_s"] / rows[-1]["floor_b1_s"]
    timed = {row["method"]: row for row in rows if row["name"].startswith("real_size/") and "median_s" in row}
    if {"occlusion", "integrated_gradients"} <= set(timed):  # occlusion with integrated gradients as its "peer"
        rows.append(record("real_size/occlusion_vs_integrated_gradients", "occlusion", size, device,
                           {key: timed["occlusion"][key] for key in ("median_s", "spread_s", "spread_kind", "repeats")},
                           peer="integrated_gradients (default settings, same run)",
                           peer_median_s=timed["integrated_gradients"]["median_s"], goal=f"ratio_to_peer <= {OCCLUSION_GOAL:g}"))
    return rows
