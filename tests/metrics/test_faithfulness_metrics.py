"""Infidelity and max-sensitivity: equal to plain Captum for the same seed, batched equal to unbatched,
exact on linear models, perturbations of the right physical size."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max
from torch import nn

from medxai.attribution.memory import max_batch
from medxai.metrics.faithfulness import bounded_batch_size, infidelity, max_sensitivity
from medxai.metrics.perturbations import BlockPerturbation, GaussianNoise, UniformNoise, sample_generator

SHAPE = (1, 10, 12, 8)


def _conv_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, padding=1), nn.Softplus(),
        nn.AdaptiveAvgPool3d(2), nn.Flatten(), nn.Linear(32, 3),
    ).eval()


def _linear_net(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 2)).to(dtype).eval()


def _inputs(batch: int = 2, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return (torch.rand((batch, *SHAPE), generator=generator) * 300.0 + 20.0).to(dtype)


def _range(example: torch.Tensor) -> float:
    low, high = np.percentile(example.double().numpy().ravel(), [0.5, 99.5])
    return float(high - low)


def _saliency(net: nn.Module):
    saliency = Saliency(net)
    return lambda inputs, target: saliency.attribute(inputs, target=target, abs=False)


def test_infidelity_equals_plain_captum_for_the_same_seed():
    net, x = _conv_net(), _inputs()
    attributions = _saliency(net)(x.clone().requires_grad_(), 1).detach()
    drawn = [0]

    def plain_perturb(inputs):  # Captum's convention: return (I, inputs - I); here the noise is added, so I = -noise
        per_example = inputs.shape[0] // x.shape[0]
        noise = torch.stack([
            0.1 * _range(inputs[row]) * torch.randn(SHAPE, generator=sample_generator(7, row // per_example, drawn[0] + row % per_example))
            for row in range(inputs.shape[0])
        ])
        drawn[0] += per_example
        return -noise, inputs + noise

    expected = captum_infidelity(net, plain_perturb, x, attributions, target=1, n_perturb_samples=6, normalize=True)
    ours = infidelity(net, x, attributions, target=1, perturbation=GaussianNoise(0.1), n_perturb_samples=6, seed=7)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=0.0)
    assert ours.shape == (2,) and torch.all(ours > 0)


def test_max_sensitivity_equals_plain_captum_for_the_same_seed():
    net, x = _conv_net(), _inputs()
    drawn = [0]

    def plain_perturb(inputs):
        per_example = inputs.shape[0] // x.shape[0]
        rows = []
        for row in range(inputs.shape[0]):
            generator = sample_generator(4, row // per_example, drawn[0] + row % per_example)
            rows.append(inputs[row] + 0.05 * _range(inputs[row]) * (torch.rand(SHAPE, generator=generator) * 2 - 1))
        drawn[0] += per_example
        return torch.stack(rows)

    saliency = Saliency(net)
    expected = sensitivity_max(saliency.attribute, x, perturb_func=plain_perturb, n_perturb_samples=5, target=2, abs=False)
    ours = max_sensitivity(_saliency(net), x, target=2, perturbation=UniformNoise(0.05), n_perturb_samples=5, seed=4)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=0.0)
    assert torch.all(ours > 0)


@pytest.mark.parametrize("perturbation", [GaussianNoise(0.2), BlockPerturbation((1.0, 2.0, 3.0), block_mm=6.0, n_blocks=2)])
def test_batched_infidelity_equals_unbatched(perturbation):
    net, x = _conv_net(), _inputs(3)
    attributions = _saliency(net)(x.clone().requires_grad_(), 0).detach()
    kwargs = dict(target=0, perturbation=perturbation, n_perturb_samples=7, seed=1)
    whole = infidelity(net, x, attributions, **kwargs)
    for limit in (3, 6, 12, 21):
        torch.testing.assert_close(infidelity(net, x, attributions, max_examples_per_batch=limit, **kwargs), whole)
    one_by_one = torch.cat([infidelity(net, x[i : i + 1], attributions[i : i + 1], **kwargs) for i in range(3)])
    # the same (example, sample) draws whatever the batch size: only example 0 keeps its index when alone
    assert float(one_by_one[0]) == pytest.approx(float(whole[0]), rel=1e-4)  # float32 convolutions per batch size


def test_infidelity_runs_the_clean_input_once_however_it_is_batched():
    """Captum's infidelity repeats the clean forward pass for every batch of perturbations; ours does not."""
    net, x = _conv_net(), _inputs(1)
    attributions = _saliency(net)(x.clone().requires_grad_(), 0).detach()
    samples: list[int] = []
    hook = net[0].register_forward_hook(lambda _module, args, _output: samples.append(args[0].shape[0]))
    infidelity(net, x, attributions, target=0, n_perturb_samples=8, max_examples_per_batch=2)
    hook.remove()
    assert samples.count(1) == 1 and sum(samples) == 8 + 1  # four batches of two perturbed copies, one clean pass


def test_batched_max_sensitivity_equals_unbatched():
    net, x = _conv_net(), _inputs(2)
    explain = _saliency(net)
    whole = max_sensitivity(explain, x, target=1, n_perturb_samples=6, seed=2)
    for limit in (2, 4, 10):
        torch.testing.assert_close(max_sensitivity(explain, x, target=1, n_perturb_samples=6, seed=2, max_examples_per_batch=limit), whole)
    assert not torch.equal(max_sensitivity(explain, x, target=1, n_perturb_samples=6, seed=3), whole)


@pytest.mark.parametrize("perturbation", [GaussianNoise(0.1), BlockPerturbation((2.0, 1.0, 1.5), block_mm=4.0, baseline=0.0)])
def test_exact_attributions_of_a_linear_model_have_zero_infidelity(perturbation):
    net, x = _linear_net(), _inputs(2, torch.float64)
    weights = net[1].weight[1].detach().reshape(SHAPE)
    local = weights.expand_as(x)  # the gradient: I . grad = f(x) - f(x - I) exactly
    assert float(infidelity(net, x, local, target=1, perturbation=perturbation).max()) < 1e-12
    if isinstance(perturbation, BlockPerturbation):  # global attribution (x - b) * w with the binary perturbation
        global_attr = (x - 0.0) * weights
        value = infidelity(net, x, global_attr, target=1, perturbation=perturbation, multiply_by_inputs=True)
        assert float(value.max()) < 1e-12
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(infidelity(net, x, noise, target=1, perturbation=perturbation).min()) > 1e-6


def test_max_sensitivity_of_a_linear_model_is_zero():
    net, x = _linear_net(), _inputs(1, torch.float64)
    assert float(max_sensitivity(_saliency(net), x, target=0, n_perturb_samples=4)[0]) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_noise_scale_is_a_fraction_of_the_robust_range():
    x = _inputs(1)[0]
    perturbed = GaussianNoise(0.1).perturb(x, generator=torch.Generator().manual_seed(0))
    assert float((perturbed - x).std()) == pytest.approx(0.1 * _range(x), rel=0.05)


def test_block_perturbation_cubes_are_sized_in_mm_on_an_anisotropic_grid():
    x = torch.full((1, 20, 20, 20), 5.0)
    block = BlockPerturbation((0.5, 1.0, 2.0), block_mm=4.0, n_blocks=1, baseline=-1.0)
    changed = block.perturb(x, generator=torch.Generator().manual_seed(3)) == -1.0
    where = torch.nonzero(changed[0])
    extent = (where.max(dim=0).values - where.min(dim=0).values + 1).tolist()
    assert extent == [8, 4, 2] and int(changed.sum()) == 64


def test_bounded_batch_size_respects_the_memory_budget():
    net, x = _conv_net(), _inputs(1)
    assert bounded_batch_size(net, x, n_samples=32, backward=True, memory_bytes=1) == 1
    assert bounded_batch_size(net, x, n_samples=32, backward=True, memory_bytes=10**12, max_batch=64) == 32
    assert bounded_batch_size(net, x, n_samples=32, backward=True, memory_bytes=10**12) == max_batch(x.device)
    forward_only = bounded_batch_size(net, x, n_samples=10**6, backward=False, memory_bytes=10**9, max_batch=10**6)
    with_backward = bounded_batch_size(net, x, n_samples=10**6, backward=True, memory_bytes=10**9, max_batch=10**6)
    assert forward_only > with_backward > 1


def test_forward_only_metrics_batch_by_the_backward_inclusive_size_on_cpu(monkeypatch):
    """The CPU batch limit (``memory.max_batch``) was measured against backward-inclusive per-sample sizes; a
    forward-only metric must be capped by that size too, not by its own smaller memory estimate."""
    from medxai.metrics import faithfulness

    sizes = {True: 2**30, False: 10 * 2**20}  # ResNet18-like at 64^3: 1 GiB with the backward pass
    monkeypatch.setattr(faithfulness, "per_sample_bytes", lambda net, x, backward=True: sizes[backward])
    net, x = _conv_net(), _inputs(1)
    assert bounded_batch_size(net, x, n_samples=100, backward=False, memory_bytes=10**15) == max_batch(x.device, 2**30) == 2
    assert bounded_batch_size(net, x, n_samples=100, backward=False, memory_bytes=40 * 2**20, memory_fraction=1.0) == 2
    assert bounded_batch_size(net, x, n_samples=100, backward=False, memory_bytes=25 * 2**20, memory_fraction=1.0) == 2
    assert bounded_batch_size(net, x, n_samples=100, backward=False, memory_bytes=15 * 2**20, memory_fraction=1.0) == 1


def test_the_stream_computes_each_examples_intensity_range_once(monkeypatch):
    """Captum hands the stream copies of the same examples; the percentile runs once per example, and
    the perturbed rows are those of a per-row computation."""
    from medxai.metrics import perturbations

    x = _inputs(2)
    rows = x.repeat_interleave(3, dim=0)
    expected = torch.stack([GaussianNoise(0.1).perturb(rows[r], generator=sample_generator(4, *divmod(r, 3)))
                            for r in range(rows.shape[0])])  # each row on its own, range computed per row
    calls = []
    real = perturbations.robust_range
    monkeypatch.setattr(perturbations, "robust_range", lambda volume, **kw: calls.append(1) or real(volume, **kw))
    stream = perturbations.as_captum_perturb_func(GaussianNoise(0.1), batch_size=2, seed=4)
    first = stream(rows)
    stream(rows)  # a second slice of samples: the ranges are known already
    assert len(calls) == 2 and torch.equal(first, expected)
