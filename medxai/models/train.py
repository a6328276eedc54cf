"""Training a 3D classifier from ``labels.csv`` into a model directory.

Stratified split, class-weighted cross-entropy for imbalance, light MONAI augmentation (flips, a small
affine, intensity scale/shift), early stopping on validation AUC (near-ties in AUC go to the lower
validation loss: ``selection.py``), per-epoch ``metrics.csv`` and the final validation AUC/F1/confusion
matrix in ``medxai-model.json`` and ``validation.json``. Preprocessed volumes
are cached in memory once. Deterministic on CPU for a given seed; mixed precision on CUDA only.
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
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from medxai.errors import ConfigError, MedxaiError
from medxai.models.dataset import data_sha256, prepare_cases, read_labels, stratified_split
from medxai.models.evaluation import classification_metrics
from medxai.models.loaded import resolve_device
from medxai.models.model_dir import check_model_destination, save_model_dir
from medxai.models.preprocessing import PreprocessingConfig, Preprocessor, parse_intensity
from medxai.models.registry import build_network, get_architecture
from medxai.models.selection import AUC_TIE, CheckpointSelector
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


def augmentation(seed: int) -> Any:
    """Light 3D augmentation: flips on every axis, a small affine, intensity scale and shift (MONAI)."""
    from monai.transforms import Compose, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

    transforms = Compose([
        *(RandFlipd(keys="image", prob=0.5, spatial_axis=axis) for axis in range(3)),
        RandAffined(keys="image", prob=0.5, rotate_range=(0.15, 0.15, 0.15), scale_range=(0.08, 0.08, 0.08),
                    translate_range=(3, 3, 3), padding_mode="zeros"),
        RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
    ])
    transforms.set_random_state(seed=seed)
    return transforms


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


def train_model(
    data: str | Path, out_dir: str | Path, *, arch: str = "tiny", task: str = "classification", epochs: int = 20,
    batch_size: int = 8, lr: float = 1e-3, val_fraction: float = 0.2, seed: int = 0,
    spatial_size: int | Sequence[int] = 64, spacing: Sequence[float] | None = None, device: str = "auto",
    patience: int = 10, intensity: str = "zscore", classes: Sequence[str] | None = None,
    max_grad_norm: float | None = None, warmup_epochs: float = 0.0, pooling: str | None = None,
    deep_supervision: float | None = None, negative_class: str | None = None, progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on the cohort ``data`` (folder with ``labels.csv`` or the CSV) and write ``out_dir``.

    ``max_grad_norm`` clips each step's gradient to that global L2 norm (Pascanu et al., ICML 2013), for
    networks whose loss spikes at a learning rate they otherwise need (GP models' pooled maps).
    ``warmup_epochs`` ramps the learning rate linearly from near zero over that many epochs' steps (Goyal et
    al., arXiv:1706.02677), before the cosine decay takes over. ``pooling`` (``max`` or ``lse:R``) replaces a
    weakly-supervised network's default pooling of its class maps (``medxai.models.weakseg.base``).
    ``deep_supervision`` weighs the loss of a training-only auxiliary classifier on a weakly-supervised
    network's encoder (``medxai.models.weakseg.deep_supervision``; None: 0.5 for those networks, 0 = off).
    ``negative_class`` (weakly-supervised networks) gives that class, the absence of a finding, a flat map.

    Returns a summary: best epoch, validation AUC/F1/accuracy/confusion matrix, split sizes, wall time."""
    started = time.perf_counter()
    check_model_destination(out_dir)
    spec = get_architecture(arch)
    if spec.task != task:
        raise ConfigError(f"architecture {arch!r} is for task {spec.task!r}, not {task!r}")
    if epochs < 1 or batch_size < 1 or lr <= 0 or patience < 1:
        raise ConfigError("epochs, batch size and patience must be at least 1 and the learning rate positive")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ConfigError(f"the gradient-norm clip must be positive, got {max_grad_norm}")
    if not 0 <= warmup_epochs < epochs:
        raise ConfigError(f"the warm-up must be at least 0 and shorter than the {epochs} epochs, got {warmup_epochs}")
    for option, value in (("--pooling", pooling), ("--negative-class", negative_class)):
        if value is not None and spec.task != "weakseg":
            raise ConfigError(f"{option} applies to the weakly-supervised architectures, not to {arch!r}")
    sharpness = None if pooling is None else parse_pooling(pooling)
    if deep_supervision is not None and (deep_supervision < 0 or (deep_supervision > 0 and spec.task != "weakseg")):
        raise ConfigError(f"deep supervision is a weight >= 0 for the weakly-supervised architectures, got "
                          f"{deep_supervision} for {arch!r}")
    torch_device = resolve_device(device)
    amp = torch_device.type == "cuda"
    labelled = read_labels(data)
    class_names = sorted(set(labelled.labels)) if classes is None else list(classes)
    unknown = sorted(set(labelled.labels) - set(class_names))
    if unknown:
        raise ConfigError(f"labels not among the given classes: {', '.join(unknown)}", path=labelled.csv_path)
    targets = np.array([class_names.index(label) for label in labelled.labels])
    if negative_class is not None and negative_class not in class_names:
        raise ConfigError(f"negative class {negative_class!r} is not one of the classes ({', '.join(class_names)})",
                          path=labelled.csv_path)
    size = (int(spatial_size),) * 3 if isinstance(spatial_size, int) else tuple(int(s) for s in spatial_size)
    channels = ("image",) if labelled.channel_count == 1 else tuple(f"channel_{i}" for i in range(labelled.channel_count))
    config = PreprocessingConfig(
        spatial_size=size, spacing=None if spacing is None else tuple(spacing),  # type: ignore[arg-type]
        channels=channels, intensity=parse_intensity(intensity),
    )
    train_idx, val_idx = stratified_split(targets, val_fraction=val_fraction, seed=seed, groups=labelled.groups)
    images = prepare_cases(labelled.cases, Preprocessor(config), progress=progress)
    labels = torch.as_tensor(targets, dtype=torch.long)

    with deterministic(seed):
        network = build_network(arch, in_channels=config.in_channels, num_classes=len(class_names), spatial_size=size)
        if pooling is not None:
            network.set_sharpness(sharpness)
        if negative_class is not None:
            network.set_negative_class(class_names.index(negative_class))
        supervised = getattr(network, "encoder_layer", None) is not None
        if deep_supervision is None:
            deep_supervision = DEFAULT_SUPERVISION_WEIGHT if supervised else 0.0
        if deep_supervision > 0 and not supervised:
            raise ConfigError(f"architecture {arch!r} names no encoder layer for deep supervision")
        supervision = None
        if deep_supervision > 0:
            supervision = DeepSupervision(network, num_classes=len(class_names), weight=deep_supervision)
            supervision.head.to(torch_device)
        network.to(torch_device)
        parameters = list(network.parameters()) + (supervision.parameters() if supervision else [])
        loss_fn = nn.CrossEntropyLoss(weight=_class_weights(targets[train_idx], len(class_names)).to(torch_device))
        optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
        steps_per_epoch = math.ceil(len(train_idx) / batch_size)
        schedule = learning_rate_schedule(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                          warmup_epochs=warmup_epochs)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        transforms = augmentation(seed)
        generator = torch.Generator().manual_seed(seed)
        history: list[dict[str, Any]] = []
        selector = CheckpointSelector()
        for epoch in range(1, epochs + 1):
            epoch_start = time.perf_counter()
            network.train()
            if supervision is not None:
                supervision.head.train()
            order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=generator)]
            running, running_auxiliary = 0.0, 0.0
            for start in range(0, len(order), batch_size):
                batch_idx = order[start:start + batch_size]
                batch = _augmented_batch(images, batch_idx, transforms).to(torch_device)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=torch_device.type, dtype=torch.float16, enabled=amp):
                    batch_labels = labels[batch_idx].to(torch_device)
                    main_loss = loss_fn(network(batch).float(), batch_labels)
                    auxiliary_loss = supervision.loss(loss_fn, batch_labels) if supervision is not None else None
                    loss = main_loss if auxiliary_loss is None else main_loss + auxiliary_loss
                scaler.scale(loss).backward()
                if max_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                epoch_lr = optimizer.param_groups[0]["lr"]
                schedule.step()
                running += float(main_loss.detach()) * len(batch_idx)
                if auxiliary_loss is not None:
                    running_auxiliary += float(auxiliary_loss.detach()) * len(batch_idx)
            val_loss, probabilities = _evaluate(
                network, images[val_idx], labels[val_idx], loss_fn=loss_fn, batch_size=batch_size, device=torch_device, amp=amp,
            )
            scores = classification_metrics(probabilities, targets[val_idx], classes=class_names)
            auc = scores["auc"] if not math.isnan(scores["auc"]) else -math.inf
            history.append({
                "epoch": epoch, "lr": epoch_lr, "train_loss": running / len(train_idx),
                "train_auxiliary_loss": running_auxiliary / len(train_idx) if supervision is not None else "",
                "val_loss": val_loss, "val_auc": scores["auc"],
                "val_f1": scores["f1_macro"], "val_accuracy": scores["accuracy"],
                "seconds": time.perf_counter() - epoch_start,
            })
            selector.offer(epoch, auc, val_loss, lambda: {k: v.detach().to("cpu").clone() for k, v in network.state_dict().items()},
                           probabilities)
            LOG.info("epoch %d/%d: train loss %.4f, val loss %.4f, val AUC %.4f, %.1f s", epoch, epochs,
                     history[-1]["train_loss"], val_loss, scores["auc"], history[-1]["seconds"])
            if progress is not None:
                progress("Training epochs", epoch, epochs)
            if epoch - selector.best_auc_epoch >= patience:
                break
        if supervision is not None:
            supervision.remove()  # the auxiliary head is not part of the model
    best = selector.chosen()
    if best is None:
        raise MedxaiError(f"training diverged: validation loss is not finite (try a lower --lr than {lr})")
    network.load_state_dict(best.state)
    final = classification_metrics(best.probabilities, targets[val_idx], classes=class_names)
    seconds = time.perf_counter() - started
    val_cases = [labelled.cases[i] for i in val_idx]
    validation = {
        "classes": class_names, "best_epoch": best.epoch, **final,
        "cases": [
            {"case_id": case.case_id, "label": case.label,
             **{f"p_{name}": float(p) for name, p in zip(class_names, best.probabilities[row])}}
            for row, case in enumerate(val_cases)
        ],
    }
    training = {
        "data": labelled.csv_path.name, "data_sha256": data_sha256(labelled), "n_cases": len(targets),
        "n_train": len(train_idx), "n_val": len(val_idx),
        "class_counts": {name: int((targets == i).sum()) for i, name in enumerate(class_names)},
        "epochs": epochs, "epochs_run": len(history), "best_epoch": best.epoch, "patience": patience,
        "checkpoint": f"best validation AUC; epochs within {AUC_TIE} of it: lowest validation loss",
        "batch_size": batch_size, "lr": lr, "optimizer": "AdamW(weight_decay=1e-4), cosine LR decay over --epochs", "max_grad_norm": max_grad_norm,
        "warmup_epochs": warmup_epochs, "pooling": pooling or "architecture default",
        "deep_supervision": deep_supervision, "negative_class": negative_class,
        "val_fraction": val_fraction,
        "split": "stratified, by group column" if labelled.groups else "stratified by case", "seed": seed,
        "device": torch_device.type, "mixed_precision": amp, "class_weights": "inverse frequency",
        "augmentation": "RandFlip x3 (p=0.5), RandAffine (p=0.5, rot 0.15 rad, scale 8%, shift 3 vox), "
                        "RandScaleIntensity 0.1, RandShiftIntensity 0.1", "seconds": round(seconds, 2),
    }
    metrics = {f"val_{key}": final[key] for key in ("auc", "f1_macro", "accuracy", "confusion_matrix", "n")}
    save_model_dir(
        out_dir, network=network, arch=arch, classes=class_names, task=task, preprocessing=config,
        training=training, metrics=metrics,
        extra_files={"metrics.csv": _metrics_csv(history), "validation.json": json.dumps(validation, indent=2) + "\n"},
    )
    return {"model_dir": str(out_dir), "classes": class_names, **metrics, "best_epoch": best.epoch,
            "epochs_run": len(history), "n_train": len(train_idx), "n_val": len(val_idx),
            "device": torch_device.type, "deep_supervision": deep_supervision, "seconds": round(seconds, 2)}
