"""Memory-bounded execution: internal batch sizes from available memory, and peak-memory measurement.

The per-sample cost is measured, not guessed: one forward pass of one sample under
``torch.autograd.graph.saved_tensors_hooks`` adds up the bytes autograd keeps for the backward pass
(the activations, which dominate 3D networks), plus the input-sized buffers the methods hold
(inputs, baselines, perturbed copies and gradients). The batch is the largest that fits in a fraction
of the memory available now (``torch.cuda.mem_get_info`` on CUDA; on the host psutil's figure bounded by
the container's cgroup limit and RLIMIT_AS, :func:`medxai.io.preflight.available_memory`), and a method whose
pass would not fit even so is refused before it runs (:func:`check_fits`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import psutil
import torch
import torch.nn.functional as F
from torch import nn

from medxai.io.preflight import available_memory

MEMORY_FRACTION = 0.5  # of the memory available now; the rest is head-room for the framework and others
INPUT_COPIES = 6  # input, baseline, scaled/perturbed input, its gradient, accumulators
BACKWARD_OVERHEAD = 2.0  # transient buffers of the backward pass, measured ~1.5x on MONAI nets
FORWARD_LIVE = 3  # activations alive at once in a forward pass without autograd (a layer's input, output, skip)
# Largest internal batch per device. On CPU a per-sample pass does not get cheaper past a few samples and
# gets slower as the batch outgrows the caches: ResNet18 at 64^3 (1 thread) forward per sample 1.96/1.83/
# 2.08/2.10 s at batch 1/2/4/8; a tiny net at 32^3 35/35/41 ms per sample at 4/16/64 (README Performance).
# A GPU needs big batches to fill its cores.
MAX_BATCH = {"cuda": 64, "cpu": 8}
# On CPU, also at most this many bytes of activations per batch: small samples gain from batching (tiny CNN
# at 64^3, 58 MiB per sample: batch 4 1.6x faster per sample than batch 1), large ones lose (ResNet18
# forward+backward per sample at batch 1/2/4: 11.7/13.0/12.6 s at 96^3, 1.9 GiB per sample; 28.4/31.7/34.0 s
# at 128^3, 4.1 GiB; benchmarks/results/2026-12-06-vm-floor-resnet18).
CPU_BATCH_BYTES = 2 * 2**30
PROBE_VOXELS = 96**3  # larger samples are probed at half size (per_sample_bytes)


def max_batch(device: torch.device, sample_bytes: int = 0) -> int:
    """The largest internal batch worth running on ``device`` for samples of ``sample_bytes`` each
    (CPU's limits for devices other than CUDA)."""
    if device.type == "cuda":
        return MAX_BATCH["cuda"]
    return max(1, min(MAX_BATCH["cpu"], CPU_BATCH_BYTES // max(int(sample_bytes), 1)))


def available_bytes(device: torch.device) -> int:
    """Memory free for new tensors on ``device`` now."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return available_memory()  # the host's figure bounded by the container's limit and RLIMIT_AS


def per_sample_bytes(model: nn.Module, inputs: torch.Tensor, *, backward: bool = True,
                     probe_voxels: int = PROBE_VOXELS) -> int:
    """Bytes one sample of ``inputs`` costs in a pass through ``model``.

    With ``backward`` (the default: attribution methods and max-sensitivity), what autograd saves for the
    backward pass times ``BACKWARD_OVERHEAD``, plus the methods' ``INPUT_COPIES`` input-sized buffers. Forward
    only (under ``no_grad``: infidelity, deletion curves), a few activations are alive at a time:
    ``FORWARD_LIVE`` times the largest layer output, plus the input.

    A sample of more than ``probe_voxels`` voxels is probed at half its size in each dimension and the
    activations scaled by the voxel ratio (they grow with the voxels in a convolutional network): a
    full-size probe would itself need the memory it measures (33 GiB for ResNet18 at 256^3, where the
    kernel kills the process) and cost a full pass. A network that refuses the smaller size (fixed-size
    transformers, sizes it cannot divide) is probed at full size."""
    sample = inputs[:1].detach().clone()
    input_bytes = sample.numel() * sample.element_size()
    probe, scale = sample, 1.0
    if sample[0, 0].numel() > probe_voxels:
        probe = F.interpolate(sample, size=[max(1, side // 2) for side in sample.shape[2:]], mode="nearest")
        scale = sample.numel() / probe.numel()
    try:
        activations, weights = _measure(model, probe, backward=backward)
    except (RuntimeError, ValueError, AssertionError):  # the network cannot run the halved size
        if probe is sample:
            raise
        (activations, weights), scale = _measure(model, sample, backward=backward), 1.0
    if not backward:
        return input_bytes + int(FORWARD_LIVE * activations * scale)
    return int((activations * scale + weights) * BACKWARD_OVERHEAD) + INPUT_COPIES * input_bytes


def _measure(model: nn.Module, sample: torch.Tensor, *, backward: bool) -> tuple[int, int]:
    """(activation bytes, weight bytes) of a pass of ``sample``: saved for backward, or the largest output."""
    return _saved_bytes(model, sample) if backward else (_largest_output_bytes(model, sample), 0)


def _saved_bytes(model: nn.Module, sample: torch.Tensor) -> tuple[int, int]:
    """Bytes of the tensors autograd saves for the backward pass of one forward pass of ``sample``: those
    that grow with the input (activations), and the model's own parameters and buffers (weights), which do not."""
    weights = {tensor.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]}
    seen: set[tuple[int, int]] = set()
    totals = {"activations": 0, "weights": 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen:
            seen.add(key)
            totals["weights" if storage.data_ptr() in weights else "activations"] += storage.nbytes()
        return tensor

    sample = sample.detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(sample)
    del output
    return totals["activations"], totals["weights"]


def _largest_output_bytes(model: nn.Module, sample: torch.Tensor) -> int:
    """The largest tensor any leaf module of ``model`` outputs for ``sample`` (the input's size if none)."""
    largest = sample.numel() * sample.element_size()

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel() * output.element_size())

    leaves = [module for module in model.modules() if not any(True for _ in module.children())]
    hooks = [module.register_forward_hook(record) for module in leaves]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return largest


def auto_batch_size(model: nn.Module, inputs: torch.Tensor, *, fraction: float = MEMORY_FRACTION,
                    sample_bytes: int | None = None) -> int:
    """The internal batch size (samples per forward pass) that fits in ``fraction`` of free memory
    (``sample_bytes``: :func:`per_sample_bytes` when the caller has it already)."""
    cost = per_sample_bytes(model, inputs) if sample_bytes is None else sample_bytes
    fitting = int(fraction * available_bytes(inputs.device)) // max(cost, 1)
    return max(1, min(max_batch(inputs.device, cost), fitting))


def check_fits(what: str, needed: int, device: torch.device) -> None:
    """MemoryError naming ``what``, the bytes it needs and those free when ``needed`` exceeds the memory
    available on ``device`` now: out of host memory the kernel kills the process instead of raising, which
    would take the other methods and cases of a batch with it."""
    free = available_bytes(device)
    if needed > free:
        raise MemoryError(f"{what} needs about {_readable(needed)} for one pass, {_readable(free)} is free on "
                          f"{device.type}: use a GPU, a coarser model grid or a smaller --batch-size")


def _readable(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


@dataclass
class PeakMemory:
    """Peak resident memory (MiB) of this process, and CUDA's max allocated (MiB) when on a GPU."""

    rss_mib: float = 0.0
    cuda_mib: float | None = None


class PeakMemorySampler:
    """Context manager sampling this process's RSS every ``interval_s`` (psutil) in a daemon thread.

    ``resource.getrusage`` only gives the lifetime peak, which cannot separate one method from the next.
    """

    def __init__(self, device: torch.device, *, interval_s: float = 0.02) -> None:
        self.device = device
        self.interval_s = interval_s
        self.result = PeakMemory()
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.result.rss_mib = max(self.result.rss_mib, self._process.memory_info().rss / 2**20)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> "PeakMemorySampler":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.result.rss_mib = max(self.result.rss_mib, self._process.memory_info().rss / 2**20)
        if self.device.type == "cuda":
            self.result.cuda_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
