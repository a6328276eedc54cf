"""Stochastic methods are seeded by ``Execution.seed`` alone: the seed decides the heatmap, and the caller's
own random stream is left where it was."""
from __future__ import annotations

import torch

from medxai.attribution.base import Execution
from medxai.attribution.registry import create_method
from medxai.attribution.targets import PredictedClass
from medxai.testing.attribution_nets import FAST_OPTIONS


def test_the_seed_decides_smoothgrad_and_the_callers_stream_is_untouched(classifier, image_2ch) -> None:
    def smoothgrad(seed: int) -> torch.Tensor:
        method = create_method("smoothgrad", classifier, execution=Execution(batch_size=4, seed=seed),
                               options=FAST_OPTIONS.get("smoothgrad"))
        return method.attribute(image_2ch, PredictedClass())

    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    first = smoothgrad(7)
    assert torch.equal(torch.rand(4), expected_next), "attribution advanced the caller's generator"
    assert torch.equal(smoothgrad(7), first)
    assert not torch.equal(smoothgrad(8), first)
