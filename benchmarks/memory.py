"""Peak resident memory of explaining one volume with one method under automatic batching.

Each case runs in its own subprocess (``python -m benchmarks.memory '{json}'``) so peaks don't mix. The
child samples its own RSS with psutil (medxai's ``PeakMemorySampler``) around the method, after imports,
model and input: ``ru_maxrss`` would not do, Linux carries it over from the parent across fork and exec.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

MEMORY_OPTIONS = {  # fewer samples than the defaults: the peak depends on the batch, not on the count
    "integrated_gradients": {"n_steps": 8, "max_steps": 8}, "smoothgrad": {"n_samples": 8},
    "smooth_gradcampp": {"n_samples": 4}, "occlusion": {"window_mm": 32.0, "stride_mm": 32.0},
    "feature_ablation": {"supervoxel_mm": 32.0},
}


def measure_case(method: str, arch: str, size: int, device: str) -> dict[str, Any]:
    """Run in the child: explain one random ``size^3`` volume with ``method`` and report peaks (MiB)."""
    import torch

    from benchmarks.attribution_cost import method_options, method_runner
    from benchmarks.floor import make_model
    import psutil

    from medxai.attribution.admission import admit, sample_cost
    from medxai.attribution.memory import PeakMemorySampler, auto_batch_size

    network, inputs = make_model(arch, size, device=device)
    before = psutil.Process().memory_info().rss / 2**20  # imports, model and input
    options = method_options(method, arch, {method: MEMORY_OPTIONS.get(method, {})})
    with PeakMemorySampler(torch.device(device), interval_s=0.005) as sampler:
        # The automatic batching probe and explain's pre-flight check count as the method's.
        cost = sample_cost(network, inputs, [method])
        batch_size = auto_batch_size(network, inputs, sample_bytes=cost.backward)
        estimated = admit(method, cost, batch_size=batch_size, device=inputs.device)  # a MemoryError, as in explain
        call, _ = method_runner(method, network, inputs, device=device, batch_size=batch_size, options=options)
        call()
    return {"baseline_rss_mib": before, "peak_rss_mib": sampler.result.rss_mib, "peak_cuda_mib": sampler.result.cuda_mib,
            "batch_size": batch_size, "estimated_pass_mib": estimated / 2**20, "options": options}


def memory_records(methods: list[str], *, arch: str, size: int, device: str, timeout_s: float = 900) -> list[dict[str, Any]]:
    """One subprocess per method; a failed or killed child is recorded with its reason."""
    rows = []
    for method in methods:
        case = json.dumps({"method": method, "arch": arch, "size": size, "device": device})
        name = f"memory/{method}/{size}"
        try:
            done = subprocess.run([sys.executable, "-m", "benchmarks.memory", case], capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            rows.append({"name": name, "method": method, "size": f"{size}^3", "error": f"timed out after {timeout_s} s"})
            continue
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"name": name, "method": method, "size": f"{size}^3", "error": f"exit {done.returncode}: {tail}"})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"name": name, "method": method, "size": f"{size}^3", "device": device, "model": arch,
                     "added_rss_mib": result["peak_rss_mib"] - result["baseline_rss_mib"], **result})
    return rows


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(measure_case(spec["method"], spec["arch"], spec["size"], spec["device"])))
