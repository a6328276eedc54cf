"""Class probabilities for scans, in batches, from one model or an ensemble (soft voting: mean probability)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from medxai.errors import ConfigError, InvalidInputError, one_line
from medxai.io.atomic import write_text_atomic
from medxai.io.naming import scan_case_ids, scan_channels, scan_source
from medxai.models.loaded import LoadedModel
from medxai.volume import Volume

Progress = Callable[[str, int, int], None]
Scan = Path | Sequence[Path]


@dataclass(frozen=True)
class Prediction:
    """One case: probabilities per class (ensemble mean), the predicted class and each member's probabilities."""

    case_id: str
    probabilities: dict[str, float]
    prediction: str
    members: tuple[dict[str, float], ...] = field(default=())
    input: str = ""  # the scan it came from (absolute channel paths joined by ';')


def check_ensemble(models: Sequence[LoadedModel]) -> list[str]:
    """The shared class list of ``models`` (ConfigError when they differ)."""
    if not models:
        raise ConfigError("no model given")
    classes = list(models[0].classes)
    for model in models[1:]:
        if list(model.classes) != classes:
            raise ConfigError(
                f"ensemble members disagree on classes: {classes} vs {list(model.classes)}", path=model.path
            )
    return classes


def model_probabilities(model: LoadedModel, volumes: Sequence[Sequence[Volume]]) -> np.ndarray:
    """Softmax probabilities (N, classes) of one model for N scans (each a list of channel volumes)."""
    return network_probabilities(model, [prepared_input(model, channels) for channels in volumes])


def prepared_input(model: LoadedModel, channels: Sequence[Volume]) -> torch.Tensor:
    """One scan's channels on the model's grid and intensity scale, ``(C, X, Y, Z)``."""
    return model.preprocessor.prepare(channels).tensor.as_tensor()


def network_probabilities(model: LoadedModel, prepared: Sequence[torch.Tensor]) -> np.ndarray:
    """Softmax probabilities (N, classes) of one model for N prepared inputs. A patch-trained model sees each
    whole scan (of its own size) by sliding windows, one scan per pass; its scan score is the aggregation of
    :mod:`medxai.models.sliding`."""
    batches = [[item] for item in prepared] if model.sliding_window is not None else [list(prepared)]
    with torch.inference_mode():
        logits = torch.cat([model.network(torch.stack(batch).to(model.device, torch.float32)).float() for batch in batches])
    return torch.softmax(logits, dim=1).cpu().numpy()


@dataclass
class PredictionBatch:
    """The predictions of a batch, and ``(case_id, one-line reason)`` for each scan that could not be used."""

    predictions: list[Prediction]
    failed: list[tuple[str, str]]


def predict(
    models: Sequence[LoadedModel], scans: Sequence[Scan], *, batch_size: int = 4, progress: Progress | None = None,
) -> list[Prediction]:
    """Predict every scan with every model; the ensemble probability is the mean of the members' (soft voting).
    A scan that cannot be read or prepared raises."""
    return _predict(models, scans, batch_size=batch_size, progress=progress, skip_bad=False).predictions


def predict_scans(
    models: Sequence[LoadedModel], scans: Sequence[Scan], *, batch_size: int = 4, progress: Progress | None = None,
) -> PredictionBatch:
    """:func:`predict` with the batch rule every command follows: with one scan its error propagates (the CLI's
    exit 4); with several, a scan that cannot be used is recorded in ``failed`` and the others go on (exit 3)."""
    return _predict(models, scans, batch_size=batch_size, progress=progress, skip_bad=len(scans) > 1)


def _predict(models: Sequence[LoadedModel], scans: Sequence[Scan], *, batch_size: int, progress: Progress | None,
             skip_bad: bool) -> PredictionBatch:
    from medxai.io.readers import read_volume

    classes = check_ensemble(models)
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    case_ids = scan_case_ids(scans)
    sources = {case_id: scan_source(scan) for case_id, scan in zip(case_ids, scans)}
    predictions: list[Prediction] = []
    failed: list[tuple[str, str]] = []
    for start in range(0, len(scans), batch_size):
        ready: list[tuple[str, list[torch.Tensor]]] = []  # (case id, its input prepared for each model)
        for scan, case_id in zip(scans[start:start + batch_size], case_ids[start:start + batch_size]):
            try:
                channels = [read_volume(path) for path in scan_channels(scan)]
                ready.append((case_id, [prepared_input(model, channels) for model in models]))
            except InvalidInputError as error:  # a bad scan; a wrong option fails every scan and is raised
                if not skip_bad:
                    raise
                failed.append((case_id, one_line(error)))
        if ready:
            members = np.stack([network_probabilities(model, [inputs[index] for _, inputs in ready])
                                for index, model in enumerate(models)])  # (models, N, classes)
            mean = members.mean(axis=0)
            for row, (case_id, _) in enumerate(ready):
                predictions.append(Prediction(
                    case_id=case_id,
                    probabilities={name: float(p) for name, p in zip(classes, mean[row])},
                    prediction=classes[int(np.argmax(mean[row]))],
                    members=tuple({name: float(p) for name, p in zip(classes, member[row])} for member in members),
                    input=sources[case_id],
                ))
        if progress is not None:
            progress("Predicting", min(start + batch_size, len(scans)), len(scans))
    return PredictionBatch(predictions, failed)


def predictions_csv(predictions: Sequence[Prediction], classes: Sequence[str]) -> str:
    """``case_id,prediction,p_<class>...,input`` with the probability columns in the model's class order; the
    input path comes last, so the contract's columns keep their places."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case_id", "prediction", *(f"p_{name}" for name in classes), "input"])
    for item in predictions:
        writer.writerow([item.case_id, item.prediction, *(f"{item.probabilities[name]:.6f}" for name in classes),
                         item.input])
    return buffer.getvalue()


def write_predictions(predictions: Sequence[Prediction], classes: Sequence[str], path: str | Path) -> Path:
    """Write ``preds.csv`` atomically."""
    write_text_atomic(path, predictions_csv(predictions, classes))
    return Path(path)
