"""The floor: one forward and one forward+backward pass of each model, batch 1 and larger batches.

The best per-sample time over the batch sizes tried is the floor every method is divided by. A method
that runs one sample per pass (saliency, Grad-CAM, LRP, ...) cannot batch, so its record also carries the
batch-1 floor, the fastest such a method can be.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.common import measure, record

FLOOR_MEMORY_FRACTION = 0.7  # of the memory available now that one floor batch may take (estimated)


@dataclass(frozen=True)
class PassFloor:
    """Best per-sample seconds of a forward (``forward_s``) and a forward+backward (``backward_s``) pass,
    and the same at batch 1."""

    forward_s: float
    backward_s: float
    forward_b1_s: float
    backward_b1_s: float

    def cost(self, *, forward: int = 0, backward: int = 0) -> float:
        """The floor of a method that needs ``forward`` + ``backward`` passes."""
        return forward * self.forward_s + backward * self.backward_s

    def cost_at_batch_1(self, *, forward: int = 0, backward: int = 0) -> float:
        """The floor of those passes run one sample at a time."""
        return forward * self.forward_b1_s + backward * self.backward_b1_s


def make_model(arch: str, size: int, *, device: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A seeded, eval-mode network of the registry and one smooth random input ``(1, 1, size^3)``."""
    from medxai.models.registry import build_network

    torch.manual_seed(seed)
    network = build_network(arch, in_channels=1, num_classes=2, spatial_size=(size,) * 3).to(device).eval()
    inputs = torch.rand(1, 1, size, size, size, device=device)
    return network, inputs


def _forward(network: nn.Module, batch: torch.Tensor) -> None:
    with torch.no_grad():
        network(batch)


def _backward(network: nn.Module, batch: torch.Tensor) -> None:
    """Gradient of the target logit with respect to the input only, as every gradient method takes it
    (``torch.autograd.grad``): ``loss.backward()`` would also compute the weight gradients, about a third
    more work, and make every method look faster than its floor."""
    leaf = batch.detach().requires_grad_(True)
    torch.autograd.grad(network(leaf)[:, 0].sum(), leaf)


def floor_records(arch: str, size: int, *, device: str, repeats: int, batch_sizes: tuple[int, ...], warmup: int = 1) -> tuple[list[dict[str, Any]], PassFloor]:
    """Records of forward and forward+backward per-sample time at each batch size, and the best of each."""
    from medxai.attribution.memory import available_bytes, per_sample_bytes

    network, inputs = make_model(arch, size, device=device)
    sample_bytes = per_sample_bytes(network, inputs)
    rows: list[dict[str, Any]] = []
    best = {"forward": float("inf"), "forward+backward": float("inf")}
    batch_1 = {"forward": float("nan"), "forward+backward": float("nan")}
    for batch_size in batch_sizes:
        free = available_bytes(inputs.device)
        if batch_size > 1 and batch_size * sample_bytes > FLOOR_MEMORY_FRACTION * free:
            # Out of host memory the kernel kills the process instead of raising: do not try.
            rows.append({"name": f"floor/{arch}/{size}/b{batch_size}", "method": "pass floor", "size": f"{size}^3",
                         "error": f"skipped: batch {batch_size} needs about {batch_size * sample_bytes / 2**30:.1f} GiB, "
                                  f"{free / 2**30:.1f} GiB available"})
            continue
        batch = inputs.expand(batch_size, *inputs.shape[1:]).contiguous()
        for kind, call in (("forward", _forward), ("forward+backward", _backward)):
            try:
                timing = measure(functools.partial(call, network, batch), repeats=repeats, device=device, warmup=warmup)
            except (RuntimeError, MemoryError) as error:  # out of memory at this batch size
                rows.append({"name": f"floor/{arch}/{size}/{kind}/b{batch_size}", "error": str(error).splitlines()[0]})
                continue
            per_sample = {**timing, "median_s": timing["median_s"] / batch_size, "spread_s": timing["spread_s"] / batch_size,
                          "batch_median_s": timing["median_s"]}
            best[kind] = min(best[kind], per_sample["median_s"])
            if batch_size == 1:
                batch_1[kind] = per_sample["median_s"]
            rows.append(record(f"floor/{arch}/{size}/{kind}/b{batch_size}", f"{kind} pass per sample",
                               f"{size}^3", device, per_sample, model=arch, batch_size=batch_size))
        del batch
    for row in rows:
        if "median_s" in row:
            kind = "forward+backward" if "forward+backward" in row["name"] else "forward"
            row.update(floor_s=best[kind], ratio_to_floor=row["median_s"] / best[kind])
    return rows, PassFloor(forward_s=best["forward"], backward_s=best["forward+backward"],
                           forward_b1_s=batch_1["forward"], backward_b1_s=batch_1["forward+backward"])
