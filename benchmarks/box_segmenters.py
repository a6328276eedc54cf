"""Dice of the box segmenters with and without the box prior, on the shared sarcoma and lung CTs.

Cases: the three IBSI soft-tissue-sarcoma CTs (STS_001..003, GTV masks) and the two PyRadiomics lung CTs
(lung1, lung2, lesion masks) of ``$MEDXAI_TEST_DATA``. Box = the mask's bounding box + 10 mm per side
(``ceil(10 / spacing)`` voxels), as ``medxai radiomics --bbox`` would get it. Every segmenter runs plain
(``prior=False``, the segmenters before the prior) and with the box prior at each candidate random-walker
beta. The beta is chosen by leave-one-case-out: for each held-out case, the beta with the best median Dice
on the other four cases (ties to the smaller beta); the held-out Dice at that beta is reported, with the
folds' votes, and the Dice at the library's beta (``PRIOR_BETA``; docs/box-segmenters.md says how it
was picked). Writes ``results/box_segmenters.json``.

Run: ``python -m benchmarks.box_segmenters`` (~15 min on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

from medxai.io.readers import read_mask, read_volume
from medxai.radiomics.boxes import Box, box_from_voxels
from medxai.radiomics.segmenters import (
    BOX_FILL_LIMIT,
    PRIOR_BETA,
    SEGMENTERS,
    segment_in_box,
)
from medxai.volume import Volume

ROOT = Path(__file__).resolve().parents[1]
BETAS = (1000.0, 5000.0, 30000.0)
MARGIN_MM = 10.0


def _cases(data: Path) -> dict[str, tuple[Path, Path]]:
    sts = {f"STS_00{i}": (data / "ibsi_sts" / "nifti" / f"STS_00{i}" / "CT_image.nii.gz",
                          data / "ibsi_sts" / "nifti" / f"STS_00{i}" / "CT_mask.nii.gz") for i in (1, 2, 3)}
    lung = {f"lung{i}": (data / "pyradiomics" / f"lung{i}_image.nrrd", data / "pyradiomics" / f"lung{i}_label.nrrd")
            for i in (1, 2)}
    return {**sts, **lung}


def _load(image_path: Path, mask_path: Path) -> tuple[Volume, np.ndarray, Box]:
    image = read_volume(image_path)
    truth = read_mask(mask_path, image).data > 0
    margin = np.ceil(MARGIN_MM / np.asarray(image.spacing)).astype(int)
    voxels = np.argwhere(truth)
    return image, truth, box_from_voxels([*(voxels.min(0) - margin), *(voxels.max(0) + margin)], image)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _measure(image: Volume, truth: np.ndarray, box: Box, method: str, prior: bool, beta: float) -> dict[str, float]:
    start = time.perf_counter()
    mask = segment_in_box(image, box, method=method, prior=prior, prior_beta=beta)
    found = mask.data > 0
    return {"dice": round(_dice(found, truth), 4), "box_fraction": mask.metadata["box_fraction"],
            "fills_box": bool(mask.metadata["fills_box"]), "volume_ratio": round(found.sum() / truth.sum(), 3),
            "seconds": round(time.perf_counter() - start, 2)}


def _leave_one_out(per_beta: dict[float, dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Held-out Dice per case at the beta chosen on the other cases, and the beta each fold chose."""
    cases = list(next(iter(per_beta.values())))
    held, chosen = {}, {}
    for case in cases:
        others = {beta: statistics.median(d for c, d in scores.items() if c != case) for beta, scores in per_beta.items()}
        beta = max(sorted(others), key=lambda b: others[b])  # sorted: a tie goes to the smaller beta
        held[case], chosen[case] = per_beta[beta][case], beta
    return held, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEDXAI_TEST_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "box_segmenters.json")
    args = parser.parse_args()
    rows, summary = [], {}
    loaded = {case: _load(*paths) for case, paths in _cases(args.data).items()}
    for method in SEGMENTERS:
        per_beta: dict[float, dict[str, float]] = {beta: {} for beta in BETAS}
        plain: dict[str, float] = {}
        for case, (image, truth, box) in loaded.items():
            record = _measure(image, truth, box, method, False, PRIOR_BETA)
            rows.append({"case": case, "segmenter": method, "prior": False, "beta": None, **record})
            plain[case] = record["dice"]
            for beta in BETAS:
                record = _measure(image, truth, box, method, True, beta)
                rows.append({"case": case, "segmenter": method, "prior": True, "beta": beta, **record})
                per_beta[beta][case] = record["dice"]
            print(method, case, plain[case], {b: float(per_beta[b][case]) for b in BETAS}, flush=True)
        held, chosen = _leave_one_out(per_beta)
        summary[method] = {
            "plain": {"per_case": plain, "median": statistics.median(plain.values())},
            "prior_leave_one_out": {"per_case": held, "median": statistics.median(held.values()), "beta_chosen": chosen},
            "prior_by_beta_median": {str(b): statistics.median(per_beta[b].values()) for b in BETAS},
            "prior_default_beta": {"per_case": per_beta[PRIOR_BETA], "median": statistics.median(per_beta[PRIOR_BETA].values())},
        }
    votes = Counter(beta for s in summary.values() for beta in s["prior_leave_one_out"]["beta_chosen"].values())
    header = {"name": "box_segmenters", "margin_mm": MARGIN_MM, "betas": BETAS, "library_beta": PRIOR_BETA,
              "beta_votes": {str(b): n for b, n in sorted(votes.items())}, "box_fill_limit": BOX_FILL_LIMIT,
              "cases": list(loaded), "date": time.strftime("%Y-%m-%d")}
    args.out.write_text(json.dumps({"header": header, "summary": summary, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({m: {"plain": s["plain"]["median"], "prior_loo": s["prior_leave_one_out"]["median"]}
                      for m, s in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
