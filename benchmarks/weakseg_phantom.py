"""Weakly-supervised lesion segmentation on the phantom cohort: GP-UNet's own heatmap vs post-hoc maps.

    python -m benchmarks.weakseg_phantom [--quick] [--work DIR] [--epochs E] [--size S] [--train-cases N]

Trains a GP-UNet (``--task weakseg``) and a plain CNN (``tiny``) on the same presence cohort with class
labels only (same cases, epochs, learning rate and batch size), picks each method's threshold on a
separate validation cohort by median Dice (Chatterjee et al.'s procedure, over multiotsu-offset 0.0-1.0,
fractions of the peak and percentiles; also with largest-component and with ``--refine otsu``) and
reports Dice/IoU/HD95 on the lesion cases of a held-out test cohort against the phantom's lesion masks,
for the lesion-class map (``target=lesion``) and the predicted class's map (``target=predicted``: a case
predicted normal gets an empty mask, Dice 0). Writes ``benchmarks/results/weakseg_phantom.json``.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.weakseg_common import class_maps, classification, evaluate, machine, predictions, record, write_results
from medxai.models.model_dir import load_model
from medxai.models.train import train_model
from medxai.segmentation.segment import collect_inputs
from medxai.synthetic import make_cohort

RESULTS = Path(__file__).resolve().parent / "results" / "weakseg_phantom.json"
MODELS = (("gp-unet", "weakseg", ("own",)), ("tiny", "classification", ("gradcam", "smoothgrad")),
          ("gp-shuffleunet", "weakseg", ("own",)), ("gp-reconresnet", "weakseg", ("own",)))
DEFAULT_MODELS = "gp-unet,tiny"


def cohort(folder: Path, *, cases: int, seed: int) -> Path:
    """The phantom cohort's labels.csv, generated unless ``folder`` already holds one of that many cases
    (another process of the same run made it: same seed, same generator)."""
    labels = folder / "labels.csv"
    if labels.exists() and sum(1 for _ in labels.open(encoding="utf-8")) - 1 == cases:
        return labels
    return make_cohort(folder, cases=cases, seed=seed, size=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (few cases, 1 epoch)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-grad-norm", type=float, default=None, help="gradient-norm clip for training (default none)")
    parser.add_argument("--warmup-epochs", type=float, default=0.0, help="linear learning-rate warm-up (epochs)")
    parser.add_argument("--deep-supervision", type=float, default=None,
                        help="GP networks' auxiliary-classifier weight (default: train's, 0.5; 0 = off)")
    parser.add_argument("--pooling", default=None, help="GP networks: max or lse:R (default: the architecture's)")
    parser.add_argument("--negative-class", default=None, help="GP networks: give this class a flat map (e.g. normal)")
    parser.add_argument("--size", type=int, default=32, help="model grid (voxels per axis; phantoms are 64^3)")
    parser.add_argument("--train-cases", type=int, default=200)
    parser.add_argument("--val-cases", type=int, default=24)
    parser.add_argument("--test-cases", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help="comma-separated subset of the models to train (run them in parallel processes on a shared --work)")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate the models already trained in --work (their training settings come from their model directories)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # training's per-epoch lines
    torch.set_num_threads(args.threads)
    started_all = time.perf_counter()
    cases = (8, 6, 8) if args.quick else (args.train_cases, args.val_cases, args.test_cases)
    epochs = 1 if args.quick else args.epochs
    work = args.work or Path(tempfile.mkdtemp(prefix="medxai-weakseg-"))
    cohorts = {name: cohort(work / name, cases=n, seed=seed) for name, n, seed in zip(("train", "val", "test"), cases, (1, 3, 2))}
    val_cases, test_cases = collect_inputs([cohorts["val"]]), collect_inputs([cohorts["test"]])
    val_lesions, test_lesions = [c for c in val_cases if c.mask], [c for c in test_cases if c.mask]
    records = []
    chosen = args.models.split(",")
    for arch, task, methods in (m for m in MODELS if m[0] in chosen):
        started = time.perf_counter()
        if args.reuse:
            model = load_model(work / arch)
            training = model.info["training"]
            trained = {"val_auc": model.info["metrics"]["val_auc"], **training}
            train_s = training["seconds"]
        else:
            trained = train_model(cohorts["train"], work / arch, arch=arch, task=task, epochs=epochs, batch_size=args.batch_size,
                                  lr=args.lr, spatial_size=args.size, device="cpu", patience=epochs, seed=0,
                                  max_grad_norm=args.max_grad_norm, warmup_epochs=args.warmup_epochs,
                                  deep_supervision=args.deep_supervision if task == "weakseg" else None,
                                  negative_class=args.negative_class if task == "weakseg" else None,
                                  pooling=args.pooling if task == "weakseg" else None)
            train_s = time.perf_counter() - started
            model = load_model(work / arch)
            training = model.info["training"]
        test_classification = classification(predictions(model, test_cases), positive="lesion")
        for method in methods:
            for target in ("lesion", "predicted"):
                val = class_maps(model, val_lesions, method=method, target=target, negative_class="normal")
                test = class_maps(model, test_lesions, method=method, target=target, negative_class="normal")
                for entry in evaluate(val, test, label=f"{arch}/{method} target={target}"):
                    records.append(record(
                        "weakseg_phantom", f"{arch}/{method}", f"64^3 phantoms, model grid {args.size}^3",
                        [m.seconds for m in test], target=target, train_seconds=round(train_s, 1),
                        epochs=training["epochs"], lr=training["lr"], max_grad_norm=training["max_grad_norm"],
                        warmup_epochs=training.get("warmup_epochs", 0.0), deep_supervision=training.get("deep_supervision", 0.0),
                        negative_class=training.get("negative_class"), pooling=training.get("pooling"),
                        reused_model=args.reuse, epochs_run=trained["epochs_run"], best_epoch=trained["best_epoch"],
                        val_auc_training=trained["val_auc"], test_classification=test_classification,
                        cohorts={"train": cases[0], "validation": cases[1], "test": cases[2],
                                 "validation_lesion_cases": len(val_lesions), "test_lesion_cases": len(test_lesions)},
                        wall_seconds_so_far=round(time.perf_counter() - started_all, 1), machine=machine(), **entry,
                    ))
                write_results(args.out, records)
    for r in records:
        if r.get("n_cases"):
            print(f"{r['variant']:<75} thr={r['threshold']:<22} median Dice {r['median_dice']:.3f} (n={r['n_cases']})")
        else:
            print(f"{r['variant']:<75} {r['chosen_by']}")
    print(f"wall time {time.perf_counter() - started_all:.0f} s")


if __name__ == "__main__":
    main()
