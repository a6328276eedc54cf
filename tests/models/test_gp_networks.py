"""GP networks: logits are the global maxima of their own class heatmaps, at the input's resolution."""
from __future__ import annotations

import math

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
    if network.sharpness is None:  # global max pooling (the paper's)
        assert torch.equal(logits, maps.amax(dim=(2, 3, 4)))
    else:  # log-sum-exp pooling: a smooth maximum of the same map, between its mean and its maximum
        r, flat = network.sharpness, maps.flatten(2)
        torch.testing.assert_close(logits, (torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r)
        assert bool((logits <= flat.amax(dim=2) + 1e-6).all()) and bool((logits >= flat.mean(dim=2) - 1e-6).all())
    layer = get_architecture(arch).target_layer
    assert layer in dict(network.named_modules())


def test_channels_last_backbone_gives_the_same_maps_and_gradients() -> None:
    """The backbone runs in channels-last 3D memory format (faster Conv3d on CPU); contiguous format must
    give the same maps and parameter gradients, and weights loaded into a fresh network keep the format."""
    torch.manual_seed(0)
    network = build_network("gp-unet", in_channels=2, num_classes=2, spatial_size=(24, 24, 24))
    conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 2, 20, 24, 28)

    def maps_and_grads() -> tuple[torch.Tensor, torch.Tensor]:
        network.zero_grad()
        maps = network.heatmaps(x)
        network(x).sum().backward()
        return maps.detach(), torch.cat([p.grad.flatten() for p in network.parameters()])

    state = {k: v.clone() for k, v in network.state_dict().items()}
    fast_maps, fast_grads = maps_and_grads()
    network.load_state_dict(state)  # undo the batch-norm statistics of the pass above
    network.backbone.to(memory_format=torch.contiguous_format)
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    plain_maps, plain_grads = maps_and_grads()
    assert fast_maps.is_contiguous()
    torch.testing.assert_close(fast_maps, plain_maps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast_grads, plain_grads, rtol=1e-3, atol=1e-3 * float(plain_grads.abs().max()))
    fresh = build_network("gp-unet", in_channels=2, num_classes=2, spatial_size=(24, 24, 24))
    fresh.load_state_dict(network.state_dict())
    fresh_conv = next(m for m in fresh.modules() if isinstance(m, torch.nn.Conv3d))
    assert fresh_conv.weight.is_contiguous(memory_format=torch.channels_last_3d)


def test_log_sum_exp_pooling_tends_to_max_pooling_and_spreads_the_gradient() -> None:
    from medxai.models.weakseg.base import GlobalMaxPoolingNetwork

    maps = torch.zeros(1, 1, 8, 8, 8)
    maps[0, 0, 2:4, 2:4, 2:4] = 5.0
    maps[0, 0, 6, 6, 6] = 6.0
    sharp = GlobalMaxPoolingNetwork(torch.nn.Identity(), divisor=1, sharpness=200.0)
    assert float(sharp.pool(maps)) == pytest.approx(6.0, abs=0.05)
    soft = GlobalMaxPoolingNetwork(torch.nn.Identity(), divisor=1, sharpness=1.0)
    plain = GlobalMaxPoolingNetwork(torch.nn.Identity(), divisor=1)
    grads = []
    for network in (soft, plain):
        leaf = maps.clone().requires_grad_(True)
        network.pool(leaf).sum().backward()
        grads.append(leaf.grad[0, 0])
    # max pooling: only the single peak voxel learns; log-sum-exp: the 8-voxel region too, in proportion to exp(m)
    assert int((grads[1] > 0).sum()) == 1
    assert float(grads[0][2:4, 2:4, 2:4].sum()) > float(grads[0][6, 6, 6])
    with pytest.raises(ValueError):
        GlobalMaxPoolingNetwork(torch.nn.Identity(), divisor=1, sharpness=0.0)


@pytest.mark.parametrize("arch", GP_ARCHS)
def test_a_flat_negative_class_map_is_one_learnt_level(arch: str) -> None:
    """The negative class's map is its learnt level everywhere (so its logit is that level under either
    pooling), the other maps are the backbone's own, and the level is a weight that training moves."""
    torch.manual_seed(0)
    network = build_network(arch, in_channels=1, num_classes=3, spatial_size=(16, 16, 16)).eval()
    x = torch.randn(2, 1, 16, 12, 20)
    with torch.no_grad():
        before = network.heatmaps(x)
        network.set_negative_class(1)
        network.negative_level.fill_(-0.7)
        maps, logits = network.heatmaps(x), network(x)
    assert torch.equal(maps[:, [0, 2]], before[:, [0, 2]])
    assert bool((maps[:, 1] == torch.tensor(-0.7)).all())
    torch.testing.assert_close(logits[:, 1], torch.full((2,), -0.7))
    network(x)[:, 1].sum().backward()
    assert float(network.negative_level.grad) == pytest.approx(2.0)  # d(logit)/d(level) = 1 per sample
    network.set_negative_class(None)
    assert "negative_level" not in network.state_dict()
