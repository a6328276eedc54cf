"""Real-data check for ``medxai train``: 64^3 FLAIR+T1c patches cut from the BRATS cases of DeepMedic.

Labels are DERIVED FROM THE EXPERT MASKS, not diagnoses: ``tumour`` when at least ``--min-tumour`` of the
patch is tumour (OTMultiClass > 0), ``normal`` when the patch holds no tumour voxel and is mostly brain;
patches in between are left out. Each patch keeps its true affine (the case affine shifted to the patch
corner), so heatmaps of these patches land on the original scans. Patients never straddle the split:
``train/labels.csv`` has a ``group`` column (the patient) so ``medxai train`` validates on a held-out
patient, and ``test/labels.csv`` holds the patches of one more patient never seen in training.

The data are CC BY-NC-SA: write the cohort outside the repository (default under /tmp).

    python -m benchmarks.brats_patches build --out /tmp/brats_patches
    medxai train /tmp/brats_patches/train -o /tmp/brats_model --intensity none --spatial-size 64
    medxai predict /tmp/brats_model $(python -m benchmarks.brats_patches scans /tmp/brats_patches/test) -o preds.csv
    python -m benchmarks.brats_patches evaluate /tmp/brats_patches/test/labels.csv preds.csv
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.volume import Volume

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats_deepmedic"
CHANNELS = ("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd")
CLASSES = ("normal", "tumour")


def box_sums(mask: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Voxel counts of ``mask`` in every ``size``^3 box on a ``stride`` grid (summed-volume table)."""
    table = np.pad(mask.astype(np.int64), ((1, 0),) * 3).cumsum(0).cumsum(1).cumsum(2)
    starts = [np.arange(0, n - size + 1, stride) for n in mask.shape]
    i, j, k = np.meshgrid(*starts, indexing="ij")
    a, b, c = i + size, j + size, k + size
    total = (table[a, b, c] - table[i, b, c] - table[a, j, c] - table[a, b, k]
             + table[i, j, c] + table[i, b, k] + table[a, j, k] - table[i, j, k])
    return total, starts


def patch_volume(volume: Volume, corner: np.ndarray, size: int) -> Volume:
    """The ``size``^3 patch at ``corner`` with the affine that keeps it where it was in the world."""
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ corner + volume.affine[:3, 3]
    i, j, k = (int(c) for c in corner)
    return Volume(np.ascontiguousarray(volume.data[i:i + size, j:j + size, k:k + size]), affine)


def cut_case(case: Path, out: Path, *, size: int, stride: int, per_class: int, min_tumour: float,
             min_brain: float, rng: np.random.Generator) -> list[dict[str, str]]:
    """Write up to ``per_class`` patches of each class of one patient; return their labels.csv rows."""
    channels = [read_volume(case / f"{name}.nii.gz") for name in CHANNELS]
    tumour = read_volume(case / "OTMultiClass.nii.gz").data > 0
    brain = read_volume(case / "brainmask.nii.gz").data > 0
    tumour_count, starts = box_sums(tumour, size, stride)
    brain_count, _ = box_sums(brain, size, stride)
    voxels = size**3
    chosen = {
        "tumour": np.argwhere(tumour_count >= min_tumour * voxels),
        "normal": np.argwhere((tumour_count == 0) & (brain_count >= min_brain * voxels)),
    }
    patient = case.name.replace("brats_2013_", "").removesuffix("_1")
    rows = []
    for label, candidates in chosen.items():
        picked = candidates[rng.permutation(len(candidates))[:per_class]]
        for number, index in enumerate(sorted(map(tuple, picked))):
            corner = np.array([starts[axis][index[axis]] for axis in range(3)])
            case_id = f"{patient}_{label}_{number:03d}"
            names = []
            for name, volume in zip(("flair", "t1c"), channels):
                names.append(f"patches/{case_id}_{name}.nii.gz")
                write_nifti(patch_volume(volume, corner, size), out / names[-1], dtype=np.float32)
            mask = patch_volume(Volume(tumour.astype(np.uint8), channels[0].affine), corner, size)
            write_nifti(mask, out / f"patches/{case_id}_mask.nii.gz", dtype=np.uint8)
            rows.append({"case_id": case_id, "image": ";".join(names), "mask": f"patches/{case_id}_mask.nii.gz",
                         "label": label, "group": patient})
    return rows


def write_labels(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "image", "mask", "label", "group"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def build(data: Path, out: Path, *, test_case: str, size: int, stride: int, per_class: int, min_tumour: float,
          min_brain: float, seed: int) -> dict[str, dict[str, int]]:
    """Cut every patient into ``out/train`` (grouped) or ``out/test`` (the ``test_case`` patient)."""
    rng = np.random.default_rng(seed)
    cases = sorted(p for p in data.glob("*/brats_*") if p.is_dir())
    if not any(case.name == test_case for case in cases):
        raise SystemExit(f"{test_case} is not among {[c.name for c in cases]}")
    split: dict[str, list[dict[str, str]]] = {"train": [], "test": []}
    for case in cases:
        side = "test" if case.name == test_case else "train"
        split[side] += cut_case(case, out / side, size=size, stride=stride, per_class=per_class,
                                min_tumour=min_tumour, min_brain=min_brain, rng=rng)
    counts = {}
    for side, rows in split.items():
        write_labels(rows, out / side / "labels.csv")
        counts[side] = {f"{group}:{label}": sum(r["group"] == group and r["label"] == label for r in rows)
                        for group in sorted({r["group"] for r in rows}) for label in CLASSES}
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
    make.add_argument("--size", type=int, default=64)
    make.add_argument("--stride", type=int, default=16)
    make.add_argument("--per-class", type=int, default=30, help="patches per class per patient (at most)")
    make.add_argument("--min-tumour", type=float, default=0.02, help="tumour share of a 'tumour' patch")
    make.add_argument("--min-brain", type=float, default=0.6, help="brain share of a 'normal' patch")
    make.add_argument("--seed", type=int, default=0)
    listing = commands.add_parser("scans", help="print a split's scans for medxai predict")
    listing.add_argument("folder", type=Path)
    score = commands.add_parser("evaluate", help="AUC of preds.csv against labels.csv")
    score.add_argument("labels", type=Path)
    score.add_argument("preds", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        counts = build(args.data, args.out, test_case=args.test_case, size=args.size, stride=args.stride,
                       per_class=args.per_class, min_tumour=args.min_tumour, min_brain=args.min_brain, seed=args.seed)
        print(json.dumps(counts, indent=2))
    elif args.command == "scans":
        print(" ".join(scans(args.folder)))
    else:
        print(json.dumps(evaluate(args.labels, args.preds), indent=2))


if __name__ == "__main__":
    main()
