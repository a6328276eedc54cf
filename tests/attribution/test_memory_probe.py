"""The memory probe behind automatic batching and explain's pre-flight check: large samples are probed at
half size and scaled, which must give what a full-size probe gives on real networks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medxai.attribution import memory
from medxai.models.registry import build_network


class _InputSizeCounter:
    def __init__(self, network: nn.Module) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.handle = network.register_forward_pre_hook(lambda _m, args: self.shapes.append(tuple(args[0].shape[2:])))


@pytest.mark.parametrize("arch", ["densenet121", "resnet18", "tiny"])
def test_half_size_probe_matches_a_full_size_probe(arch):
    """Activations scale with the voxels, the weights autograd saves do not: scaling both read DenseNet121 2.9x
    and ResNet18 3.4x too high at 64^3."""
    torch.manual_seed(0)
    network = build_network(arch, in_channels=1, num_classes=2, spatial_size=(64, 64, 64)).eval()
    inputs = torch.rand(1, 1, 64, 64, 96)
    counter = _InputSizeCounter(network)
    try:
        for backward in (True, False):
            full = memory.per_sample_bytes(network, inputs, backward=backward, probe_voxels=10**9)
            half = memory.per_sample_bytes(network, inputs, backward=backward, probe_voxels=64**3)
            assert half == pytest.approx(full, rel=0.02), (backward, full, half)
    finally:
        counter.handle.remove()
    assert counter.shapes == [(64, 64, 96), (32, 32, 48)] * 2  # the half-size probe ran, no fallback


class _FixedSizeNet(nn.Module):
    """Accepts only 32^3 inputs, as a transformer with a fixed patch grid does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 32**3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != (32, 32, 32):
            raise ValueError(f"input size {tuple(x.shape[2:])} is not the model's (32, 32, 32)")
        return self.head(torch.relu(self.conv(x)).flatten(1))


def test_a_network_refusing_the_half_size_is_probed_at_full_size():
    network, inputs = _FixedSizeNet().eval(), torch.rand(1, 1, 32, 32, 32)
    full = memory.per_sample_bytes(network, inputs, probe_voxels=10**9)
    assert memory.per_sample_bytes(network, inputs, probe_voxels=1) == full
    assert full > 4 * 32**3 * 4  # the conv output at least


def test_check_fits_names_the_need_and_the_free_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 3 * 2**30)
    memory.check_fits("saliency", 3 * 2**30, torch.device("cpu"))
    with pytest.raises(MemoryError, match=r"deeplift needs about 14\.0 GiB .* 3\.0 GiB is free on cpu"):
        memory.check_fits("deeplift", 14 * 2**30, torch.device("cpu"))
