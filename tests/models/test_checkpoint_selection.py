"""Checkpoint selection: best validation AUC, near-ties to the lower validation loss."""
from __future__ import annotations

import math

import numpy as np

from medxai.models.selection import CheckpointSelector


def _run(history: list[tuple[float, float]], tie: float = 0.005) -> CheckpointSelector:
    selector = CheckpointSelector(tie=tie)
    for epoch, (auc, loss) in enumerate(history, start=1):
        selector.offer(epoch, auc, loss, lambda epoch=epoch: {"epoch": epoch}, np.array([epoch]))
    return selector


def test_a_near_tie_in_auc_goes_to_the_better_calibrated_epoch() -> None:
    # the phantom run that motivated the rule: 0.957 at loss 0.99 vs 0.954 at loss 0.27
    selector = _run([(0.90, 0.5), (0.957, 0.99), (0.93, 0.4), (0.954, 0.27)])
    chosen = selector.chosen()
    assert chosen is not None and chosen.epoch == 4 and chosen.state == {"epoch": 4}
    assert selector.best_auc_epoch == 2  # early stopping still counts from the best AUC


def test_a_clearly_better_auc_wins_over_a_lower_loss() -> None:
    chosen = _run([(0.95, 0.2), (0.99, 0.6), (0.90, 0.1)]).chosen()
    assert chosen is not None and chosen.epoch == 2


def test_epochs_left_behind_by_a_new_best_are_dropped() -> None:
    selector = _run([(0.80, 0.1), (0.802, 0.3), (0.95, 0.5)])
    assert [c.epoch for c in selector.candidates] == [3]


def test_undefined_auc_falls_back_to_the_loss_and_diverged_epochs_are_never_kept() -> None:
    selector = _run([(-math.inf, 0.7), (-math.inf, 0.4), (-math.inf, math.nan)])
    chosen = selector.chosen()
    assert chosen is not None and chosen.epoch == 2 and selector.best_auc_epoch == 1
    assert _run([(0.9, math.inf), (0.95, math.nan)]).chosen() is None
