"""Classification metrics from class probabilities (scikit-learn): AUC, macro F1, accuracy, confusion matrix."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def classification_metrics(probabilities: np.ndarray, targets: Sequence[int], *, classes: Sequence[str]) -> dict[str, Any]:
    """``probabilities`` (N, K) rows summing to 1, integer ``targets``. Binary AUC scores the second class;
    with more classes it is the macro one-vs-rest AUC. AUC is NaN when only one class is present."""
    from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=int)
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(classes)))
    auc = math.nan
    if len(np.unique(targets)) == len(classes):
        if len(classes) == 2:
            auc = float(roc_auc_score(targets, probabilities[:, 1]))
        else:
            auc = float(roc_auc_score(targets, probabilities, multi_class="ovr", average="macro", labels=labels))
    return {
        "auc": auc,
        "f1_macro": float(f1_score(targets, predicted, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(np.mean(predicted == targets)) if len(targets) else math.nan,
        "confusion_matrix": confusion_matrix(targets, predicted, labels=labels).tolist(),
        "confusion_matrix_axes": "rows: true class, columns: predicted class, in class order",
        "n": int(len(targets)),
    }
