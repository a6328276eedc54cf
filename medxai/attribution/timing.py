"""The pre-flight time check, beside the memory one: how long a method will take on this case, before it runs.

A method says how many passes it needs for an input (:meth:`AttributionMethod.planned_passes`: windows,
samples, steps, and how many samples each pass holds); this module measures what one pass of the model costs
on this device (one timed forward, or forward+backward, pass at the method's batch shape, under the autocast
the methods use) and multiplies. Pass times are cached in this process per model (its SHA-256), device,
batch shape, pass kind and precision, so a batch of cases on one model grid pays for the measurement once;
nothing is cached on disk (a pass time belongs to this machine and its load now).

A method of one pass (saliency, Grad-CAM, ...) is not timed: timing its pass would cost as much as running it.
Its pass time is one already measured in this process for that kind and batch shape, else the case's own clean
forward pass (which the engine runs anyway for the prediction), times ``FORWARD_BACKWARD_RATIO`` for a gradient pass.

A method estimated to exceed the caller's budget is refused before it runs (:class:`TimeBudgetExceeded`),
as a method whose pass would not fit in memory is.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Hashable

import torch
from torch import nn

LONG_WORK_S = 30.0  # estimates above this are announced before the method runs
# The first pass of a batch shape may pay one-off set-up (autograd, allocator, oneDNN primitive creation). A first
# pass faster than WARM_PASS_S (where that set-up would weigh) is taken as the warm-up and
# the pass is timed again, up to MAX_TIMED_PASSES times or until TIMING_WINDOW_S is spent, keeping the median
# (not the fastest: the method's own passes run under the same load as these, on a shared machine too).
WARM_PASS_S = 2.0
MAX_TIMED_PASSES = 5
TIMING_WINDOW_S = 0.5

# A forward+backward (input gradient) pass over a forward pass, per sample, from the pass floors of
# docs/performance.md: tiny CNN 3.75 / 2.7, ResNet18 3.5 / 3.9, DenseNet121 2.9 / 3.4 at 64^3 / 128^3.
FORWARD_BACKWARD_RATIO = 3.4

_PASS_SECONDS: dict[Hashable, float] = {}


@dataclass(frozen=True)
class Passes:
    """The work of one method on one input: ``count`` units (``unit``: windows, samples, steps, ...) that the
    progress counts, ``forward`` forward-only and ``backward`` forward+backward samples through the network in
    all (the units plus any clean passes before them), run ``batch`` samples per pass."""

    count: int
    unit: str
    forward: int = 0
    backward: int = 0
    batch: int = 1

    @property
    def samples(self) -> int:
        """Samples through the network in all."""
        return self.forward + self.backward

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimeEstimate:
    """Estimated seconds of a method's passes, from its :class:`Passes` and the measured per-sample times."""

    method: str
    passes: Passes
    forward_s: float  # per sample, at the method's batch shape (0 when it needs no such pass)
    backward_s: float
    seconds: float
    source: str = "timed"  # or "clean forward pass": a single-pass method's times, derived from the case's clean pass

    def summary(self, label: str) -> str:
        """``occlusion (case_0007): 4,356 windows, about 17 min`` for ``label`` ``occlusion (case_0007)``."""
        return f"{label}: {self.passes.count:,} {self.passes.unit}, about {duration(self.seconds)}"

    def refusal(self, budget_s: float) -> str:
        """The one-line reason a method over budget is refused (the caller prefixes the method's name)."""
        per_unit = self.seconds / max(self.passes.count, 1)
        return (f"estimated {duration(self.seconds)} ({self.passes.count:,} {self.passes.unit} x {per_unit:.2g} s) "
                f"exceeds --time-budget {budget_s:g} s")

    def to_record(self) -> dict[str, Any]:
        return {"estimated_seconds": round(self.seconds, 3), "passes": self.passes.to_record(),
                "pass_seconds": {"forward": round(self.forward_s, 5), "forward+backward": round(self.backward_s, 5),
                                 "source": self.source}}


class TimeBudgetExceeded(Exception):
    """A method refused before it runs: its estimated time exceeds the caller's budget (the one-line reason,
    and the estimate)."""

    def __init__(self, message: str, estimate: TimeEstimate) -> None:
        super().__init__(message)
        self.estimate = estimate


def duration(seconds: float) -> str:
    """``45 s``, ``17 min``, ``2.3 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.2g} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def pass_seconds(network: nn.Module, inputs: torch.Tensor, *, model_key: Hashable, batch: int, backward: bool,
                 dtype: torch.dtype | None) -> float:
    """Seconds per sample of one pass of ``batch`` copies of ``inputs`` ``(1, C, X, Y, Z)`` through ``network``
    (forward only, or forward and the input gradient as every gradient method takes it), under autocast to
    ``dtype`` when given; measured once per ``model_key``, device, batch shape, kind and precision."""
    key = _key(inputs, model_key=model_key, batch=batch, backward=backward, dtype=dtype)
    if key not in _PASS_SECONDS:
        sample = inputs.detach().expand(batch, *inputs.shape[1:]).contiguous()
        timings = [_timed_pass(network, sample, backward=backward, dtype=dtype)]
        if timings[0] < WARM_PASS_S:
            timings = []
            while len(timings) < MAX_TIMED_PASSES and sum(timings) < TIMING_WINDOW_S:
                timings.append(_timed_pass(network, sample, backward=backward, dtype=dtype))
        _PASS_SECONDS[key] = statistics.median(timings) / batch
    return _PASS_SECONDS[key]


def _key(inputs: torch.Tensor, *, model_key: Hashable, batch: int, backward: bool, dtype: torch.dtype | None) -> Hashable:
    return model_key, str(inputs.device), (batch, *inputs.shape[1:]), backward, str(dtype)


def _timed_pass(network: nn.Module, batch: torch.Tensor, *, backward: bool, dtype: torch.dtype | None) -> float:
    autocast = torch.autocast(batch.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    synchronize(batch.device)
    started = time.perf_counter()
    with autocast:
        if backward:
            leaf = batch.detach().requires_grad_(True)
            torch.autograd.grad(network(leaf).float().sum(), leaf)
        else:
            with torch.no_grad():
                network(batch)
    synchronize(batch.device)
    return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def estimate(method: str, passes: Passes, network: nn.Module, inputs: torch.Tensor, *, model_key: Hashable,
             dtype: torch.dtype | None, clean_forward_s: float | None = None) -> TimeEstimate:
    """The estimated seconds of ``passes`` of ``network`` on ``inputs``, timing only the pass kinds needed; a
    single-pass method (``passes.count == 1``) with ``clean_forward_s`` (the case's clean forward pass, batch 1)
    is not timed unless its pass time is cached already (module docstring)."""
    kinds = [(kind, count) for kind, count in (("forward", passes.forward), ("backward", passes.backward)) if count]
    derived = passes.count == 1 and clean_forward_s is not None and any(
        _key(inputs, model_key=model_key, batch=passes.batch, backward=kind == "backward", dtype=dtype) not in _PASS_SECONDS
        for kind, _ in kinds)
    times = {"forward": 0.0, "backward": 0.0}
    for kind, _ in kinds:
        if derived:
            times[kind] = float(clean_forward_s) * (FORWARD_BACKWARD_RATIO if kind == "backward" else 1.0)
        else:
            times[kind] = pass_seconds(network, inputs, model_key=model_key, batch=passes.batch,
                                       backward=kind == "backward", dtype=dtype)
    seconds = passes.forward * times["forward"] + passes.backward * times["backward"]
    return TimeEstimate(method=method, passes=passes, forward_s=times["forward"], backward_s=times["backward"],
                        seconds=seconds, source="clean forward pass" if derived else "timed")


def check_budget(estimated: TimeEstimate, budget_s: float | None) -> None:
    """TimeBudgetExceeded with the one-line reason when the estimate exceeds ``budget_s`` (None: no budget)."""
    if budget_s is not None and estimated.seconds > budget_s:
        raise TimeBudgetExceeded(estimated.refusal(budget_s), estimated)
