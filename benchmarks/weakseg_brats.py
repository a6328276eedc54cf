"""Weakly-supervised whole-tumour segmentation on the 4 BRATS cases of DeepMedic (FLAIR + T1c).

    python -m benchmarks.weakseg_brats [--quick] [--work DIR] [--epochs E]

Labels are DERIVED FROM THE EXPERT MASKS (``tumour``: >= 2 % of a 64 mm patch is tumour, ``normal``: no
tumour voxel and mostly brain; patches cut by :mod:`benchmarks.brats_patches`); no voxel of any mask is
used in training. Two folds by patient: train on pat0005+pat0006 and test on pat0003+pat0004, then the
reverse, so each of the 4 patients is held out once. A GP-UNet and a plain CNN (``tiny``: Grad-CAM,
SmoothGrad) are trained on the patches at 2 mm (64 mm patches -> 32^3); both are fully convolutional, so the held-out patient's
whole brain is fed at 2 mm (120x120x78) and the maps come back on the 1 mm native grid. Thresholds are
chosen on the *training* patients' whole volumes (4 cases leave no separate validation patient) and
Dice is against the whole tumour (labels > 0). Caveat: patches are *selected* with the masks (a tumour patch
holds >= 2 % tumour), so the labels carry coarse location; the maps are of the ``tumour`` class (every test
patient has a tumour). Writes ``benchmarks/results/weakseg_brats.json``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.brats_patches import CHANNELS, DATA, cut_case
from benchmarks.weakseg_common import class_maps, evaluate, machine, record, write_results
from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.models.model_dir import load_model, save_model_dir
from medxai.models.train import train_model
from medxai.segmentation.segment import SegmentInput

RESULTS = Path(__file__).resolve().parent / "results" / "weakseg_brats.json"
FOLDS = ((("pat0005", "pat0006"), ("pat0003", "pat0004")), (("pat0003", "pat0004"), ("pat0005", "pat0006")))
MODELS = (("gp-unet", "weakseg", ("own",)), ("tiny", "classification", ("gradcam", "smoothgrad")))
WHOLE_GRID = (120, 120, 78)  # 240x240x155 at 1 mm -> ~2 mm, the patches' model resolution


def case_folder(patient: str) -> Path:
    return next(DATA.glob(f"*/brats_2013_{patient}_1"))


def whole_volume_input(patient: str, work: Path) -> SegmentInput:
    """The patient's two channels and its whole-tumour mask (labels > 0, written once under ``work``)."""
    folder = case_folder(patient)
    mask_path = work / "whole_tumour" / f"{patient}.nii.gz"
    if not mask_path.exists():
        labels = read_volume(folder / "OTMultiClass.nii.gz")
        write_nifti(labels.with_data((labels.data > 0).astype(np.uint8)), mask_path, dtype=np.uint8)
    return SegmentInput(patient, tuple(folder / f"{name}.nii.gz" for name in CHANNELS), mask_path, "tumour")


def patch_cohort(patients: tuple[str, ...], out: Path, *, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for patient in patients:
        rows += cut_case(case_folder(patient), out, size=64, stride=16, per_class=per_class, min_tumour=0.02,
                         min_brain=0.6, rng=rng)
    labels = out / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:  # no group column: both patients train
        writer = csv.DictWriter(handle, fieldnames=["case_id", "image", "mask", "label"], extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return labels


def whole_brain_model(trained: Path, out: Path) -> Path:
    """The trained weights with preprocessing that feeds the whole 1 mm volume at ~2 mm."""
    model = load_model(trained)
    config = dataclasses.replace(model.preprocessor.config, spatial_size=WHOLE_GRID)
    save_model_dir(out, network=model.network, arch=model.arch, classes=model.classes, task=model.task,
                   preprocessing=config, training={"weights_from": str(trained), "note": "whole-brain inference"},
                   metrics={})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one fold, few patches, 1 epoch")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--per-class", type=int, default=25, help="patches per class per patient")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="gp-unet,tiny", help="comma-separated subset of the models to train")
    parser.add_argument("--negative-class", default=None, help="GP networks: give this class a flat map (e.g. normal)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started_all = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="medxai-brats-weakseg-"))
    folds = FOLDS[:1] if args.quick else FOLDS
    epochs, per_class = (1, 4) if args.quick else (args.epochs, args.per_class)
    records = []
    for number, (train_patients, test_patients) in enumerate(folds, start=1):
        fold = work / f"fold{number}"
        labels = patch_cohort(train_patients, fold / "patches", per_class=per_class, seed=number)
        val = [whole_volume_input(p, work) for p in train_patients]
        test = [whole_volume_input(p, work) for p in test_patients]
        for arch, task, methods in (m for m in MODELS if m[0] in args.models.split(",")):
            started = time.perf_counter()
            negative_class = args.negative_class if task == "weakseg" else None
            trained = train_model(labels, fold / arch, arch=arch, task=task, epochs=epochs, batch_size=8, lr=args.lr,
                                  spatial_size=32, intensity="none", device="cpu", patience=epochs, seed=0,
                                  negative_class=negative_class)
            train_s = time.perf_counter() - started
            model = load_model(whole_brain_model(fold / arch, fold / f"{arch}-whole"))
            for method in methods:
                val_maps = class_maps(model, val, method=method, target="tumour", negative_class="normal")
                test_maps = class_maps(model, test, method=method, target="tumour", negative_class="normal")
                for entry in evaluate(val_maps, test_maps, label=f"fold{number} {arch}/{method}"):
                    records.append(record(
                        "weakseg_brats", f"{arch}/{method}", "240x240x155 @1 mm, model 2 mm",
                        [m.seconds for m in test_maps], fold=number, train_patients=list(train_patients),
                        test_patients=list(test_patients), train_seconds=round(train_s, 1),
                        patches=sum(1 for _ in open(labels)) - 1, epochs_run=trained["epochs_run"],
                        patch_val_auc=trained["val_auc"], lr=args.lr, epochs=epochs,
                        deep_supervision=trained["deep_supervision"],
                        negative_class=negative_class,
                        wall_seconds_so_far=round(time.perf_counter() - started_all, 1), machine=machine(), **entry,
                    ))
                write_results(args.out, records)
    for r in records:
        if not r.get("n_cases"):
            print(f"{r['variant']:<60} {r['chosen_by']}")
            continue
        print(f"{r['variant']:<60} thr={r['threshold']:<22} Dice " + ", ".join(
            f"{c['case_id']} {c['dice']:.3f}" for c in r["per_case"]))
    print(f"wall time {time.perf_counter() - started_all:.0f} s")


if __name__ == "__main__":
    main()
