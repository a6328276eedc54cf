"""Predict stage: the model's class probabilities for the case (``model.predict: true``).

Uses :func:`medxai.models.predict.model_probabilities` on the channels the scan stage read (so DICOM
series chosen by UID and multi-channel cases work as everywhere else). Writes ``OUT/<case_id>/preds.csv``
in the ``medxai predict`` layout (``case_id,prediction,p_<class>...``) and, at the end, ``OUT/preds.csv``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from medxai.io.atomic import write_text_atomic
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext
from medxai.pipeline.tables import merge_case_tables

PREDICTIONS = "preds.csv"


def run(context: CaseContext) -> None:
    from medxai.models.predict import Prediction, model_probabilities, predictions_csv

    model = context.model
    (probabilities,) = model_probabilities(model, [context.channels])
    prediction = Prediction(
        case_id=context.case.case_id,
        probabilities={name: float(p) for name, p in zip(model.classes, probabilities)},
        prediction=model.classes[int(probabilities.argmax())],
    )
    context.results["prediction"] = prediction
    write_text_atomic(context.case_dir / PREDICTIONS, predictions_csv([prediction], model.classes))


def finish(pipeline: Pipeline, out_dir: Path, done: Sequence[str]) -> None:
    merge_case_tables(out_dir, done, PREDICTIONS)
