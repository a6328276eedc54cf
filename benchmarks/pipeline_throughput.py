"""Batch throughput of ``medxai run`` on a 20-case classify-explain run (predict + explain, the shipped
classify-explain-report pipeline with score and report off), in cases per minute.

Compared with the stand-alone commands over the same scans in one process (``medxai predict`` then
``medxai explain`` with the same methods, seed and batch size): the runner's price for per-case isolation,
atomic case folders, the manifest and worker processes. Phantoms of 64^3 voxels (mixed oblique/anisotropic
grids), a seeded ``tiny`` classifier on a 32^3 model grid. Writes ``benchmarks/results/pipeline_throughput.json``.
Run: ``.venv/bin/python benchmarks/pipeline_throughput.py [--cases 20] [--workers 1 2]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("integrated_gradients", "smoothgrad", "gradcam")
SETTINGS = ["--set", "score.enabled=false", "--set", "report.enabled=false"]


def _prepare(folder: Path, cases: int) -> tuple[Path, Path]:
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network
    from medxai.synthetic import make_cohort

    labels = make_cohort(folder / "cohort", cases=cases, seed=11, size=64)
    torch.manual_seed(0)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(32, 32, 32))
    save_model_dir(folder / "model", network=network, arch="tiny", classes=["lesion", "normal"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(32, 32, 32)), training={"seeded": 0}, metrics={})
    return labels, folder / "model"


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    medxai = [sys.executable, "-m", "medxai"]
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        labels, model = _prepare(folder, args.cases)
        with labels.open(newline="") as handle:
            scans = [str(labels.parent / row["image"]) for row in csv.DictReader(handle)]
        peer = _timed([*medxai, "predict", str(model), *scans, "-o", str(folder / "preds.csv")]) + _timed(
            [*medxai, "explain", str(model), *scans, "-o", str(folder / "explain"), "--device", "cpu",
             "--seed", "0", "--batch-size", "8", *(x for m in METHODS for x in ("-m", m))])
        for workers in args.workers:
            seconds = _timed([*medxai, "run", "classify-explain-report", "--input", str(labels), "-o",
                              str(folder / f"run-{workers}"), "--workers", str(workers), "--set", f"model.path={model}",
                              *SETTINGS])
            records.append({
                "name": f"pipeline_classify_explain_{args.cases}_cases_{workers}_workers",
                "method": f"medxai run classify-explain-report (predict + explain: {', '.join(METHODS)}), "
                          f"--workers {workers}",
                "size": f"{args.cases} cases of 64^3, tiny model on 32^3",
                "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
                "median_s": seconds,
                "cases_per_minute": round(60 * args.cases / seconds, 2),
                "peer": "medxai predict + medxai explain over the same scans, one process each (no isolation)",
                "peer_median_s": peer,
                "ratio_to_peer": seconds / peer,
                "repeats": 1,
                "load_average_1min": os.getloadavg()[0],
            })
            print(json.dumps(records[-1], indent=2))
    out = ROOT / "benchmarks" / "results" / "pipeline_throughput.json"
    out.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
