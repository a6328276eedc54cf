"""Which training epoch to keep: the best validation AUC, near-ties broken by the lower validation loss.

On a validation set of tens of cases AUC moves by a few hundredths from epoch to epoch, and the epoch with
the single highest AUC can be one whose probabilities are badly shifted (measured on the phantom cohort:
best AUC 0.957 at a validation loss of 0.99 and accuracy 0.53, while a later epoch had AUC 0.954 at loss
0.27). AUC differences smaller than ``AUC_TIE`` are within noise, so among the epochs that close to the best
AUC the one with the lowest loss (best-calibrated) is kept. Hand-written: a few lines, no library has it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

AUC_TIE = 0.005


@dataclass
class Candidate:
    epoch: int
    auc: float
    loss: float
    state: dict[str, Any]
    probabilities: np.ndarray


class CheckpointSelector:
    """Keeps the weights of every epoch within ``tie`` of the best validation AUC so far (few at a time)."""

    def __init__(self, tie: float = AUC_TIE) -> None:
        self.tie = tie
        self.best_auc = -math.inf
        self.best_auc_epoch = 0  # the epoch that first reached the best AUC: early stopping counts from it
        self.candidates: list[Candidate] = []

    def offer(self, epoch: int, auc: float, loss: float, state: Callable[[], dict[str, Any]],
              probabilities: np.ndarray) -> None:
        """Record an epoch (``auc`` -inf when undefined); ``state`` copies the weights, called only if kept."""
        if not math.isfinite(loss):
            return
        if auc > self.best_auc or self.best_auc_epoch == 0:
            self.best_auc, self.best_auc_epoch = auc, epoch
            self.candidates = [c for c in self.candidates if c.auc >= auc - self.tie]
        if auc >= self.best_auc - self.tie:
            self.candidates.append(Candidate(epoch, auc, loss, state(), probabilities))

    def chosen(self) -> Candidate | None:
        """The kept epoch with the lowest validation loss (None if no epoch had a finite loss)."""
        return min(self.candidates, key=lambda c: (c.loss, -c.auc), default=None)
