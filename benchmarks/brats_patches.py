"""Real-data check for ``medxai train``: FLAIR+T1c patches cut from the BRATS cases of DeepMedic.

The cutting is ``medxai patch-cohort`` (:mod:`medxai.models.patch_cohort`): labels are DERIVED FROM THE
EXPERT MASKS (OTMultiClass > 0, the whole tumour), not diagnoses: ``lesion`` patches are centred on tumour
voxels, ``normal`` patches hold no tumour voxel and are mostly brain. Each patch keeps its true affine, so
heatmaps of these patches land on the original scans. Patients never straddle the split: ``train/labels.csv``
has a ``group`` column (the patient) so ``medxai train`` validates on a held-out patient, and
``test/labels.csv`` holds the patches of one more patient never seen in training. ``build`` only lists the
patients of each side and calls the library; the same cohorts come from the command line
(``medxai patch-cohort``, docs/sliding-window.md).

The data are CC BY-NC-SA: write the cohort outside the repository (default under /tmp).

    python -m benchmarks.brats_patches build --out /tmp/brats_patches
    medxai train /tmp/brats_patches/train -o /tmp/brats_model --intensity none
    medxai predict /tmp/brats_model $(python -m benchmarks.brats_patches scans /tmp/brats_patches/test) -o preds.csv
    python -m benchmarks.brats_patches evaluate /tmp/brats_patches/test/labels.csv preds.csv
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from medxai.models import patch_cohort
from medxai.models.patch_cohort import PatchSettings, SourceCase, write_patch_cohort

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats_deepmedic"
CHANNELS = ("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd")


def source_case(case: Path) -> SourceCase:
    """One BRATS patient as a patch-cohort source: FLAIR;T1c and the expert labels (their union: whole tumour)."""
    patient = case.name.replace("brats_2013_", "").removesuffix("_1")
    return SourceCase(patient, tuple(case / f"{name}.nii.gz" for name in CHANNELS), case / "OTMultiClass.nii.gz")


def cut_case(case: Path, out: Path, *, size: int, stride: int, per_class: int, min_tumour: float,
             min_brain: float, rng: np.random.Generator) -> list[dict[str, str]]:
    """One patient's patches at its native 1 mm, written under ``out``, for ``benchmarks/weakseg_brats.py``
    until it calls :func:`write_patch_cohort`: the library's patches and rule (``min_tumour`` is no longer
    used: tumour patches are centred on tumour voxels), labelled ``tumour``/``normal`` as that benchmark expects."""
    settings = PatchSettings(patch_size=size, spacing_mm=1.0, per_case=per_class, min_foreground=min_brain, stride=stride)
    source = source_case(case)
    rows = patch_cohort.write_case_patches(source, patch_cohort.cut_case(source, settings, rng), out)
    return [{**row, "label": "tumour" if row["label"] == patch_cohort.LESION else row["label"]} for row in rows]


def build(data: Path, out: Path, *, test_case: str, settings: PatchSettings) -> dict[str, dict[str, int]]:
    """Cut every patient into ``out/train`` (grouped) or ``out/test`` (the ``test_case`` patient)."""
    cases = sorted(p for p in data.glob("*/brats_*") if p.is_dir())
    if not any(case.name == test_case for case in cases):
        raise SystemExit(f"{test_case} is not among {[c.name for c in cases]}")
    split = {"train": [source_case(c) for c in cases if c.name != test_case],
             "test": [source_case(c) for c in cases if c.name == test_case]}
    counts = {}
    for side, sources in split.items():
        record = write_patch_cohort(sources, out / side, settings)
        counts[side] = {f"{source['case_id']}:{label}": source[label] for source in record["sources"]
                        for label in ("lesion", "normal")}
    return counts


def scans(folder: Path) -> list[str]:
    """The ``image`` cells of ``folder/labels.csv`` as absolute ``a;b`` arguments for ``medxai predict``."""
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        return [";".join(str(folder / part) for part in row["image"].split(";")) for row in csv.DictReader(handle)]


def evaluate(labels_csv: Path, preds_csv: Path) -> dict[str, object]:
    """AUC/F1/accuracy of ``preds.csv`` against the mask-derived labels (matched by the FLAIR file's case id)."""
    from medxai.io.naming import case_id_from_path
    from medxai.models.evaluation import classification_metrics

    with open(labels_csv, newline="", encoding="utf-8") as handle:
        truth = {case_id_from_path(row["image"].split(";")[0]): row["label"] for row in csv.DictReader(handle)}
    with open(preds_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    classes = [column[2:] for column in rows[0] if column.startswith("p_")]
    probabilities = np.array([[float(row[f"p_{c}"]) for c in classes] for row in rows])
    targets = [classes.index(truth[row["case_id"]]) for row in rows]
    return classification_metrics(probabilities, targets, classes=classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="cut the patch cohort")
    make.add_argument("--data", type=Path, default=DATA)
    make.add_argument("--out", type=Path, default=Path("/tmp/brats_patches"))
    make.add_argument("--test-case", default="brats_2013_pat0004_1")
    make.add_argument("--patch-size", type=int, default=32)
    make.add_argument("--spacing", type=float, default=1.5, help="mm; the volumes are resampled to it")
    make.add_argument("--per-case", type=int, default=30, help="patches per label per patient (at most)")
    make.add_argument("--min-foreground", type=float, default=0.6, help="brain share of a 'normal' patch")
    make.add_argument("--seed", type=int, default=0)
    listing = commands.add_parser("scans", help="print a split's scans for medxai predict")
    listing.add_argument("folder", type=Path)
    score = commands.add_parser("evaluate", help="AUC of preds.csv against labels.csv")
    score.add_argument("labels", type=Path)
    score.add_argument("preds", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        settings = PatchSettings(patch_size=args.patch_size, spacing_mm=args.spacing, per_case=args.per_case,
                                 seed=args.seed, min_foreground=args.min_foreground)
        counts = build(args.data, args.out, test_case=args.test_case, settings=settings)
        print(json.dumps(counts, indent=2))
    elif args.command == "scans":
        print(" ".join(scans(args.folder)))
    else:
        print(json.dumps(evaluate(args.labels, args.preds), indent=2))


if __name__ == "__main__":
    main()
