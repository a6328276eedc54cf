"""Predict stage: the model's class probabilities for the case (``model.predict: true``).

Uses :func:`medxai.models.predict.model_probabilities` on the channels the scan stage read (so DICOM
series chosen by UID and multi-channel cases work as everywhere else). Writes
``OUT/<case_id>/prediction.json`` (read by the reports) and, at the end, ``OUT/preds.csv`` in the
``medxai predict`` layout (``case_id,prediction,p_<class>...,input``, classes in the model's order).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from medxai.io.atomic import write_text_atomic
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext

PREDICTION = "prediction.json"
PREDICTIONS = "preds.csv"


def run(context: CaseContext) -> None:
    from medxai.models.predict import model_probabilities

    model = context.model
    (probabilities,) = model_probabilities(model, [context.channels])
    record = {
        "case_id": context.case.case_id,
        "input": context.case.source,
        "prediction": model.classes[int(probabilities.argmax())],
        "probabilities": {name: float(p) for name, p in zip(model.classes, probabilities)},
        "classes": list(model.classes),
        "model_sha256": model.sha256,
    }
    context.results["prediction"] = record
    write_text_atomic(context.case_dir / PREDICTION, json.dumps(record, indent=2) + "\n")


def finish(pipeline: Pipeline, out_dir: Path, done: Sequence[str]) -> None:
    from medxai.models.predict import Prediction, predictions_csv

    records = [json.loads((out_dir / case_id / PREDICTION).read_text(encoding="utf-8"))
               for case_id in done if (out_dir / case_id / PREDICTION).is_file()]
    if not records:
        return
    predictions = [Prediction(case_id=r["case_id"], probabilities=r["probabilities"], prediction=r["prediction"],
                              input=r.get("input", "")) for r in records]
    write_text_atomic(out_dir / PREDICTIONS, predictions_csv(predictions, records[0]["classes"]))
