"""Batch sizes come from measured per-sample memory and the memory available now."""
from __future__ import annotations

import pytest
import torch

from medxai.attribution import memory
from medxai.attribution.base import Execution
from medxai.attribution.registry import create_method
from medxai.attribution.targets import ClassTarget
from medxai.testing.attribution_nets import SmallClassifier


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return SmallClassifier(in_channels=1, classes=2).eval()


def test_per_sample_cost_scales_with_the_volume(net):
    small = memory.per_sample_bytes(net, torch.zeros(1, 1, 16, 16, 16))
    large = memory.per_sample_bytes(net, torch.zeros(1, 1, 32, 32, 32))
    assert 6.0 < large / small < 8.5  # activations dominate and scale with the voxel count (8x)
    # the first conv's saved input and output alone: (1 + 6) channels x 32^3 float32
    assert large > 7 * 32**3 * 4


def test_forward_only_cost_is_a_few_activations(net):
    inputs = torch.zeros(1, 1, 32, 32, 32)
    forward = memory.per_sample_bytes(net, inputs, backward=False)
    # the first conv's output (6 channels x 32^3 float32) is the largest: 3 of them live, plus the input
    assert forward == 32**3 * 4 * (1 + memory.FORWARD_LIVE * 6)
    assert forward < memory.per_sample_bytes(net, inputs)


def test_auto_batch_fits_the_free_memory(net, monkeypatch):
    inputs = torch.zeros(1, 1, 32, 32, 32)
    cost = memory.per_sample_bytes(net, inputs)
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(10.6 * cost))
    assert memory.auto_batch_size(net, inputs) == 5  # half of 10.6 samples' worth
    monkeypatch.setattr(memory, "available_bytes", lambda device: cost)
    assert memory.auto_batch_size(net, inputs) == 1
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**15)
    assert memory.auto_batch_size(net, inputs) == memory.max_batch(inputs.device) == memory.MAX_BATCH["cpu"]


def test_large_samples_run_one_at_a_time_on_cpu_but_not_on_gpu(net, monkeypatch):
    """A batch of big samples makes CPU gradient passes slower per sample (ResNet18 at 128^3: 4.1 GiB per
    sample, batch 2 12 % slower); samples of a few MiB still batch up to the cap."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert memory.max_batch(cpu, 4 * 2**30) == memory.max_batch(cpu, memory.CPU_BATCH_BYTES) == 1
    assert memory.max_batch(cpu, 700 * 2**20) == 2  # ResNet18 at 64^3: flat over batch 1-8
    assert memory.max_batch(cpu, 58 * 2**20) == memory.MAX_BATCH["cpu"]  # tiny CNN at 64^3
    assert memory.max_batch(gpu, 4 * 2**30) == memory.MAX_BATCH["cuda"] > memory.MAX_BATCH["cpu"] >= 4
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**15)
    monkeypatch.setattr(memory, "per_sample_bytes", lambda model, inputs: 3 * 2**30)
    assert memory.auto_batch_size(net, torch.zeros(1, 1, 16, 16, 16)) == 1


def test_methods_use_the_auto_batch(net, monkeypatch):
    inputs = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    cost = memory.per_sample_bytes(net, inputs)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 6 * cost)
    method = create_method("integrated_gradients", net, execution=Execution(batch_size="auto"), options={"n_steps": 8, "max_steps": 8})
    method.attribute(inputs, ClassTarget(1))
    assert method.diagnostics["internal_batch_size"] == 3


def test_integrated_gradients_adds_steps_until_complete(classifier, image_2ch):
    net, inputs = classifier, image_2ch
    strict = create_method("integrated_gradients", net, options={"n_steps": 2, "max_steps": 16, "tolerance": 1e-9})
    heatmap = strict.attribute(inputs, ClassTarget(1))
    assert strict.diagnostics["n_steps_used"] == 16 and strict.diagnostics["converged"] is False
    with torch.no_grad():
        change = float(net(inputs)[0, 1] - net(torch.zeros_like(inputs))[0, 1])
    assert strict.diagnostics["convergence_delta"] == pytest.approx(abs(float(heatmap.sum()) - change), abs=1e-5)
    lenient = create_method("integrated_gradients", net, options={"n_steps": 2, "max_steps": 16, "tolerance": 10.0})
    lenient.attribute(inputs, ClassTarget(1))
    assert lenient.diagnostics["n_steps_used"] == 2 and lenient.diagnostics["converged"] is True


def test_peak_memory_sampler_sees_an_allocation():
    with memory.PeakMemorySampler(torch.device("cpu"), interval_s=0.005) as sampler:
        before = sampler.result.rss_mib
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB
        block.add_(1)
    assert sampler.result.rss_mib >= before + 32
    assert sampler.result.cuda_mib is None


def test_cpu_runs_in_float32(net):
    method = create_method("saliency", net)
    method.attribute(torch.randn(1, 1, 16, 16, 16), ClassTarget(0))
    assert method.diagnostics["precision"] == "float32"
