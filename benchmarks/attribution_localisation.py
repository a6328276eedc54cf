"""Does each method's heatmap land on the lesion? A tiny CNN trained on the phantom cohort, explained on
held-out lesion phantoms through ``explain_case`` (heatmaps on each scan's own grid, a quarter of the test
cases on anisotropic/oblique/flipped grids), scored against the lesion mask on that grid:

- ``mass_in_mask``: share of the positive attribution inside the lesion (relevance mass accuracy,
  Arras et al. 2022); the lesion's own volume share is reported as ``chance`` for comparison;
- ``pointing_game``: share of cases whose heatmap maximum lies in the lesion (Zhang et al. 2018).

Every method is reported, the ones that do badly included. Writes
``benchmarks/results/attribution_localisation.json``.
Run: ``.venv/bin/python benchmarks/attribution_localisation.py [--quick]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "attribution_localisation.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and epochs (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from medxai.attribution.engine import explain_case
    from medxai.attribution.registry import METHODS
    from medxai.io.readers import read_mask, read_volume
    from medxai.metrics.localisation import localisation_scores
    from medxai.models.model_dir import load_model
    from medxai.models.train import train_model
    from medxai.synthetic import make_cohort

    size, train_cases, test_cases, epochs = (24, 24, 8, 3) if args.quick else (32, 96, 24, 12)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        labels = make_cohort(root / "train", cases=train_cases, seed=args.seed, size=size)
        summary = train_model(labels, root / "model", arch="tiny", epochs=epochs, spatial_size=size, device="cpu",
                              seed=args.seed, patience=epochs, batch_size=8)
        model = load_model(root / "model")
        test_csv = make_cohort(root / "test", cases=test_cases, seed=args.seed + 1000, size=size)
        with open(test_csv, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["label"] == "lesion"]
        scores: dict[str, list[dict[str, float]]] = {name: [] for name in METHODS}
        seconds: dict[str, list[float]] = {name: [] for name in METHODS}
        chance = []
        for row in rows:
            image = root / "test" / row["image"]
            mask = read_mask(root / "test" / row["mask"], read_volume(image))
            chance.append(float(mask.data.mean()))
            explanation = explain_case(model, image, methods=list(METHODS), target="lesion", seed=args.seed)
            for name, heatmap in explanation.heatmaps.items():
                scores[name].append(localisation_scores(heatmap, mask))
                seconds[name].append(explanation.record["methods"][name]["wall_s"])
    records = []
    for name in METHODS:
        mass = [s["mass_in_mask"] for s in scores[name] if not np.isnan(s["mass_in_mask"])]
        records.append({
            "name": f"attribution_localisation_tiny_{size}", "method": name, "size": f"{size}^3 phantoms, model grid {size}^3",
            "device": "cpu", "median_s": statistics.median(seconds[name]), "repeats": len(seconds[name]),
            "spread_s": max(seconds[name]) - min(seconds[name]),
            "mass_in_mask": statistics.mean(mass) if mass else None,
            "pointing_game": statistics.mean(s["pointing_game"] for s in scores[name]),
            "chance_mass": statistics.mean(chance), "n_cases": len(rows),
            "model_val_auc": summary.get("val_auc"), "train_cases": train_cases, "epochs": epochs,
            "load_average_1min": os.getloadavg()[0],
        })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(records, indent=2) + "\n")
    print(f"{'method':22s} {'mass in lesion':>15s} {'pointing game':>14s} {'median s':>9s}")
    for entry in records:
        mass = "-" if entry["mass_in_mask"] is None else f"{entry['mass_in_mask']:.3f}"
        print(f"{entry['method']:22s} {mass:>15s} {entry['pointing_game']:>14.2f} {entry['median_s']:>9.2f}")
    print(f"chance (lesion volume share) {records[0]['chance_mass']:.3f}; val AUC {summary.get('val_auc')}; "
          f"{len(rows)} lesion cases; {time.perf_counter() - started:.0f} s; wrote {OUT}")


if __name__ == "__main__":
    main()
