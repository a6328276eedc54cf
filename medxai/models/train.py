"""Training a 3D classifier from ``labels.csv`` into a model directory: :class:`Trainer` runs one validated
:class:`~medxai.models.train_config.TrainConfig`; :func:`train_model` is the keyword entry point.

Stratified split, class-weighted cross-entropy for imbalance, light MONAI augmentation (flips, a small
affine, intensity scale/shift; recorded from the transform objects), early stopping on validation AUC
(near-ties in AUC go to the lower validation loss: ``selection.py``), per-epoch ``metrics.csv`` and the final
validation AUC/F1/confusion matrix in ``medxai-model.json`` and ``validation.json``. Preprocessed volumes are
cached in memory once. Deterministic on CPU for a given seed; mixed precision on CUDA only. A cohort cut into
patches (``patches.json``, ``medxai patch-cohort``) is trained at its patch size and spacing, and the model
directory records the sliding window that applies it to whole scans.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import time
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from medxai.errors import ConfigError, MedxaiError
from medxai.models.dataset import LabelledSet, data_sha256, prepare_cases, read_labels, stratified_split
from medxai.models.evaluation import classification_metrics
from medxai.models.loaded import resolve_device
from medxai.models.model_dir import check_model_destination, save_model_dir
from medxai.models.preprocessing import PreprocessingConfig, Preprocessor, parse_intensity
from medxai.models.registry import build_network
from medxai.models.selection import AUC_TIE, CheckpointSelector
from medxai.models.train_config import TrainConfig, describe_augmentation
from medxai.models.weakseg.base import parse_pooling
from medxai.models.weakseg.deep_supervision import DEFAULT_WEIGHT as DEFAULT_SUPERVISION_WEIGHT
from medxai.models.weakseg.deep_supervision import DeepSupervision

Progress = Callable[[str, int, int], None]
LOG = logging.getLogger(__name__)
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_auxiliary_loss", "val_loss", "val_auc", "val_f1", "val_accuracy",
                  "seconds")


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed every generator (MONAI ``set_determinism``) and ask torch for deterministic kernels; restore after."""
    from monai.utils import set_determinism

    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    set_determinism(seed=seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        set_determinism(seed=None)


def learning_rate_schedule(optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                           warmup_epochs: float = 0.0, final_ratio: float = 0.02) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: a linear warm-up over ``warmup_epochs`` (from ``1/warmup_steps`` of the rate), times
    a cosine decay by epoch to ``final_ratio`` of the rate at the last epoch (Loshchilov & Hutter, SGDR);
    without warm-up the same rates as ``CosineAnnealingLR(T_max=epochs)`` stepped once an epoch."""
    warmup_steps = max(1, round(warmup_epochs * steps_per_epoch)) if warmup_epochs > 0 else 0

    def factor(step: int) -> float:
        cosine = final_ratio + (1.0 - final_ratio) * (1.0 + math.cos(math.pi * (step // steps_per_epoch) / epochs)) / 2.0
        return cosine * min(1.0, (step + 1) / warmup_steps) if warmup_steps else cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _augmented_batch(images: torch.Tensor, indices: torch.Tensor, transforms: Any) -> torch.Tensor:
    from monai.utils import convert_to_tensor

    samples = [convert_to_tensor(transforms({"image": images[i]})["image"], track_meta=False) for i in indices.tolist()]
    return torch.stack(samples).to(torch.float32)


def _evaluate(network: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, loss_fn: nn.Module,
              batch_size: int, device: torch.device, amp: bool) -> tuple[float, np.ndarray]:
    network.eval()
    losses, probabilities = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits = network(batch)
            logits = logits.float()
            losses.append(float(loss_fn(logits, targets[start:start + batch_size].to(device))) * len(batch))
            probabilities.append(torch.softmax(logits, dim=1).cpu().numpy())
    return sum(losses) / len(images), np.concatenate(probabilities)


def _class_weights(targets: np.ndarray, count: int) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set gets weight 1 for every class."""
    frequencies = np.bincount(targets, minlength=count).astype(np.float64)
    return torch.tensor(len(targets) / (count * np.maximum(frequencies, 1.0)), dtype=torch.float32)


def _metrics_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
    return buffer.getvalue()


SLIDING_OVERLAP, SLIDING_BLEND = 0.25, "gaussian"  # the sliding window recorded for a patch-trained model


@dataclass
class _Fit:
    """What the epochs produced: the network (best checkpoint loaded), the per-epoch rows, the checkpoint."""

    network: nn.Module
    history: list[dict[str, Any]]
    best: Any
    deep_supervision: float


class Trainer:
    """Trains one :class:`TrainConfig` (validated on construction, before any data is read)."""

    def __init__(self, config: TrainConfig) -> None:
        self.requested = config
        self.config = config.validate()

    def run(self, data: str | Path, out_dir: str | Path, *, progress: Progress | None = None) -> dict[str, Any]:
        """Train on the cohort ``data`` (folder with ``labels.csv`` or the CSV) and write ``out_dir``.

        Returns a summary: best epoch, validation AUC/F1/accuracy/confusion matrix, split sizes, wall time, and
        how the negative class was chosen."""
        started = time.perf_counter()
        check_model_destination(out_dir)
        labelled = read_labels(data)
        config, window = self._with_patches(labelled)
        class_names = sorted(set(labelled.labels)) if config.classes is None else list(config.classes)
        unknown = sorted(set(labelled.labels) - set(class_names))
        if unknown:
            raise ConfigError(f"labels not among the given classes: {', '.join(unknown)}", path=labelled.csv_path)
        config, negative_chosen = config.with_classes(class_names, path=labelled.csv_path)
        targets = np.array([class_names.index(label) for label in labelled.labels])
        preprocessing = _preprocessing(config, labelled)
        train_idx, val_idx = stratified_split(targets, val_fraction=config.val_fraction, seed=config.seed,
                                              groups=labelled.groups)
        images = prepare_cases(labelled.cases, Preprocessor(preprocessing), progress=progress)
        device = resolve_device(config.device)
        transforms = config.augmentation.build(config.seed)
        with deterministic(config.seed):
            fit = self._fit(config, class_names, preprocessing.in_channels, images, targets, train_idx, val_idx,
                            transforms, device, progress)
        final = classification_metrics(fit.best.probabilities, targets[val_idx], classes=class_names)
        seconds = time.perf_counter() - started
        training = _training_record(config, labelled, targets, train_idx, val_idx, fit, class_names,
                                    negative_chosen=negative_chosen, device=device, seconds=seconds,
                                    augmentation=describe_augmentation(transforms), window=window)
        metrics = {f"val_{key}": final[key] for key in ("auc", "f1_macro", "accuracy", "confusion_matrix", "n")}
        validation = _validation_record(labelled, val_idx, class_names, fit.best, final)
        save_model_dir(
            out_dir, network=fit.network, arch=config.arch, classes=class_names, task=config.task,
            preprocessing=preprocessing, training=training, metrics=metrics,
            extra_files={"metrics.csv": _metrics_csv(fit.history), "validation.json": json.dumps(validation, indent=2) + "\n"},
            sliding_window=window,
        )
        return {"model_dir": str(out_dir), "classes": class_names, **metrics, "best_epoch": fit.best.epoch,
                "epochs_run": len(fit.history), "n_train": len(train_idx), "n_val": len(val_idx),
                "device": device.type, "deep_supervision": fit.deep_supervision, "lr": config.lr,
                "max_grad_norm": config.max_grad_norm or None, "negative_class": config.negative_class,
                "negative_class_chosen": negative_chosen, "seconds": round(seconds, 2)}

    def _with_patches(self, labelled: LabelledSet) -> tuple[TrainConfig, dict[str, Any] | None]:
        """The config at the patch size and spacing of a cohort cut into patches (``patches.json``, read by
        :func:`medxai.models.patch_cohort.read_patch_record`), and the sliding window that record gives."""
        from medxai.models.patch_cohort import read_patch_record

        window = read_patch_record(labelled.csv_path, overlap=SLIDING_OVERLAP, blend=SLIDING_BLEND)
        if window is None:
            return self.config, None
        size = tuple(int(v) for v in window["patch_size"])
        spacing = tuple(float(v) for v in window["spacing_mm"])
        for option, given, cut in (("--spatial-size", self.requested.spatial_size, size),
                                   ("--spacing", self.requested.spacing, spacing)):
            if given is not None and tuple(given) != cut:
                raise ConfigError(f"{option} {','.join(f'{v:g}' for v in given)} disagrees with the patches the cohort "
                                  f"was cut into ({','.join(f'{v:g}' for v in cut)})", path=labelled.csv_path.parent)
        return replace(self.config, spatial_size=size, spacing=spacing).validate(), dict(window)

    def _fit(self, config: TrainConfig, class_names: list[str], in_channels: int, images: torch.Tensor, targets: np.ndarray,
             train_idx: np.ndarray, val_idx: np.ndarray, transforms: Any, device: torch.device,
             progress: Progress | None) -> _Fit:
        """The epochs: AdamW with a cosine schedule, class-weighted cross-entropy, early stopping on AUC."""
        assert config.epochs is not None and config.lr is not None
        amp = device.type == "cuda"
        network, supervision, weight = _network(config, class_names, in_channels, device)
        parameters = list(network.parameters()) + (supervision.parameters() if supervision else [])
        loss_fn = nn.CrossEntropyLoss(weight=_class_weights(targets[train_idx], len(class_names)).to(device))
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=1e-4)
        schedule = learning_rate_schedule(optimizer, epochs=config.epochs, warmup_epochs=config.warmup_epochs,
                                          steps_per_epoch=math.ceil(len(train_idx) / config.batch_size))
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        generator = torch.Generator().manual_seed(config.seed)
        labels = torch.as_tensor(targets, dtype=torch.long)
        history: list[dict[str, Any]] = []
        selector = CheckpointSelector()
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            network.train()
            if supervision is not None:
                supervision.head.train()
            order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=generator)]
            running, running_auxiliary, epoch_lr = 0.0, 0.0, config.lr
            for start in range(0, len(order), config.batch_size):
                batch_idx = order[start:start + config.batch_size]
                batch = _augmented_batch(images, batch_idx, transforms).to(device)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    batch_labels = labels[batch_idx].to(device)
                    main_loss = loss_fn(network(batch).float(), batch_labels)
                    auxiliary_loss = supervision.loss(loss_fn, batch_labels) if supervision is not None else None
                    loss = main_loss if auxiliary_loss is None else main_loss + auxiliary_loss
                scaler.scale(loss).backward()
                if config.max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                epoch_lr = optimizer.param_groups[0]["lr"]
                schedule.step()
                running += float(main_loss.detach()) * len(batch_idx)
                if auxiliary_loss is not None:
                    running_auxiliary += float(auxiliary_loss.detach()) * len(batch_idx)
            val_loss, probabilities = _evaluate(network, images[val_idx], labels[val_idx], loss_fn=loss_fn,
                                                batch_size=config.batch_size, device=device, amp=amp)
            scores = classification_metrics(probabilities, targets[val_idx], classes=class_names)
            history.append({
                "epoch": epoch, "lr": epoch_lr, "train_loss": running / len(train_idx),
                "train_auxiliary_loss": running_auxiliary / len(train_idx) if supervision is not None else "",
                "val_loss": val_loss, "val_auc": scores["auc"], "val_f1": scores["f1_macro"],
                "val_accuracy": scores["accuracy"], "seconds": time.perf_counter() - epoch_start,
            })
            auc = scores["auc"] if not math.isnan(scores["auc"]) else -math.inf
            selector.offer(epoch, auc, val_loss, lambda: {k: v.detach().to("cpu").clone() for k, v in network.state_dict().items()},
                           probabilities)
            LOG.info("epoch %d/%d: train loss %.4f, val loss %.4f, val AUC %.4f, %.1f s", epoch, config.epochs,
                     history[-1]["train_loss"], val_loss, scores["auc"], history[-1]["seconds"])
            if progress is not None:
                progress("Training epochs", epoch, config.epochs)
            if epoch - selector.best_auc_epoch >= config.patience:
                break
        if supervision is not None:
            supervision.remove()  # the auxiliary head is not part of the model
        best = selector.chosen()
        if best is None:
            raise MedxaiError(f"training diverged: validation loss is not finite (try a lower --lr than {config.lr})")
        network.load_state_dict(best.state)
        return _Fit(network=network, history=history, best=best, deep_supervision=weight)


def _preprocessing(config: TrainConfig, labelled: LabelledSet) -> PreprocessingConfig:
    count = labelled.channel_count
    return PreprocessingConfig(
        spatial_size=config.spatial_size,  # type: ignore[arg-type]
        spacing=config.spacing, channels=("image",) if count == 1 else tuple(f"channel_{i}" for i in range(count)),
        intensity=parse_intensity(config.intensity),
    )


def _network(config: TrainConfig, class_names: list[str], in_channels: int,
             device: torch.device) -> tuple[nn.Module, DeepSupervision | None, float]:
    """The network (pooling and flat negative class set), its deep-supervision head (or None) and its weight."""
    network = build_network(config.arch, in_channels=in_channels, num_classes=len(class_names),
                            spatial_size=config.spatial_size)
    if config.pooling is not None:
        network.set_sharpness(parse_pooling(config.pooling))
    if config.negative_class is not None:
        network.set_negative_class(class_names.index(config.negative_class))
    supervised = getattr(network, "encoder_layer", None) is not None
    weight = config.deep_supervision
    if weight is None:
        weight = DEFAULT_SUPERVISION_WEIGHT if supervised else 0.0
    if weight > 0 and not supervised:
        raise ConfigError(f"architecture {config.arch!r} names no encoder layer for deep supervision")
    supervision = None
    if weight > 0:
        supervision = DeepSupervision(network, num_classes=len(class_names), weight=weight)
        supervision.head.to(device)
    return network.to(device), supervision, weight


def _validation_record(labelled: LabelledSet, val_idx: np.ndarray, class_names: list[str], best: Any,
                       final: dict[str, Any]) -> dict[str, Any]:
    return {
        "classes": class_names, "best_epoch": best.epoch, **final,
        "cases": [
            {"case_id": case.case_id, "label": case.label,
             **{f"p_{name}": float(p) for name, p in zip(class_names, best.probabilities[row])}}
            for row, case in enumerate(labelled.cases[i] for i in val_idx)
        ],
    }


def _training_record(config: TrainConfig, labelled: LabelledSet, targets: np.ndarray, train_idx: np.ndarray,
                     val_idx: np.ndarray, fit: _Fit, class_names: list[str], *, negative_chosen: str | None,
                     device: torch.device, seconds: float, augmentation: list[dict[str, Any]],
                     window: dict[str, Any] | None) -> dict[str, Any]:
    """``medxai-model.json``'s ``training``: the data, the split and every choice of the config."""
    record = {
        "data": labelled.csv_path.name, "data_sha256": data_sha256(labelled), "n_cases": len(targets),
        "n_train": len(train_idx), "n_val": len(val_idx),
        "class_counts": {name: int((targets == i).sum()) for i, name in enumerate(class_names)},
        "epochs": config.epochs, "epochs_run": len(fit.history), "best_epoch": fit.best.epoch, "patience": config.patience,
        "checkpoint": f"best validation AUC; epochs within {AUC_TIE} of it: lowest validation loss",
        "batch_size": config.batch_size, "lr": config.lr,
        "optimizer": "AdamW(weight_decay=1e-4), cosine LR decay over --epochs",
        "max_grad_norm": config.max_grad_norm or None, "warmup_epochs": config.warmup_epochs,
        "pooling": config.pooling or "architecture default", "deep_supervision": fit.deep_supervision,
        "negative_class": config.negative_class, "negative_class_chosen": negative_chosen,
        "val_fraction": config.val_fraction,
        "split": "stratified, by group column" if labelled.groups else "stratified by case", "seed": config.seed,
        "device": device.type, "mixed_precision": device.type == "cuda", "class_weights": "inverse frequency",
        "augmentation": augmentation, "seconds": round(seconds, 2),
    }
    if window is not None:
        record["patches"] = "trained on the patch cohort's patches (patches.json): applied to whole scans by sliding windows"
    return record


def train_model(data: str | Path, out_dir: str | Path, *, progress: Progress | None = None, **options: Any) -> dict[str, Any]:
    """Train on ``data`` into ``out_dir`` with the :class:`TrainConfig` fields as keywords (``arch``, ``task``,
    ``epochs``, ``lr``, ``spatial_size``, ``max_grad_norm``, ``negative_class``, ...; unset ones take the task's
    defaults). ``max_grad_norm`` clips each step's gradient to that global L2 norm (Pascanu et al., ICML 2013;
    0 = off); ``warmup_epochs`` ramps the learning rate linearly (Goyal et al., arXiv:1706.02677) before the
    cosine decay; ``pooling`` (``max`` or ``lse:R``) replaces a weakly-supervised network's pooling of its class
    maps; ``deep_supervision`` weighs a training-only auxiliary classifier on its encoder (None: 0.5 for those
    networks, 0 = off); ``negative_class`` gives that class, the absence of a finding, a flat map (``auto``: the
    class whose name says so, for weakseg)."""
    return Trainer(TrainConfig.from_options(**options)).run(data, out_dir, progress=progress)
