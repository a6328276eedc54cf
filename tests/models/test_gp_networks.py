"""GP networks: logits are the global maxima of their own class heatmaps, at the input's resolution."""
from __future__ import annotations

import pytest
import torch

from medxai.models.registry import architecture_names, build_network, get_architecture

GP_ARCHS = ("gp-unet", "gp-shuffleunet", "gp-reconresnet")


def test_gp_architectures_are_registered_for_weakseg() -> None:
    assert set(GP_ARCHS) <= set(architecture_names(task="weakseg"))
    assert not set(GP_ARCHS) & set(architecture_names(task="classification"))


@pytest.mark.parametrize("arch", GP_ARCHS)
@pytest.mark.parametrize("size", [(32, 32, 32), (17, 24, 33)])
def test_logits_are_the_max_of_full_resolution_heatmaps(arch: str, size: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    network = build_network(arch, in_channels=2, num_classes=3, spatial_size=(32, 32, 32)).eval()
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        maps = network.heatmaps(x)
        logits = network(x)
    assert maps.shape == (2, 3, *size)
    assert logits.shape == (2, 3)
    assert torch.equal(logits, maps.amax(dim=(2, 3, 4)))
    layer = get_architecture(arch).target_layer
    assert layer in dict(network.named_modules())
