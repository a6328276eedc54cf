"""Cost of the faithfulness metrics (infidelity, max-sensitivity) as a ratio to their pass floor.

Infidelity needs one forward pass of the clean input and one per perturbation; max-sensitivity (here of
Saliency explanations) one explanation (forward+backward) of the clean input and one per perturbation.
Both run with medxai's memory-bounded batch size; plain Captum with its default (all at once) is the peer.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmarks.common import measure, measure_pair, record
from benchmarks.floor import PassFloor


def metric_records(network: nn.Module, inputs: torch.Tensor, floor: PassFloor, *, arch: str, device: str,
                   repeats: int, n_infidelity: int = 16, n_sensitivity: int = 8) -> list[dict[str, Any]]:
    from captum.attr import Saliency
    from captum.metrics import infidelity as captum_infidelity
    from captum.metrics import infidelity_perturb_func_decorator

    from medxai.metrics.faithfulness import bounded_batch_size, infidelity, max_sensitivity
    from medxai.metrics.perturbations import GaussianNoise, as_captum_perturb_func

    with torch.no_grad():
        index = int(network(inputs)[0].argmax())
    attributions = Saliency(network).attribute(inputs, target=index, abs=True).detach()
    size = "x".join(str(n) for n in inputs.shape[2:])
    forward_batch = bounded_batch_size(network, inputs, n_samples=n_infidelity, backward=False)
    backward_batch = bounded_batch_size(network, inputs, n_samples=n_sensitivity, backward=True)

    def ours_infidelity() -> Any:
        return infidelity(network, inputs, attributions, target=index, n_perturb_samples=n_infidelity,
                          max_examples_per_batch=forward_batch)

    def peer_infidelity() -> Any:  # Captum's default batching: every perturbed copy in one batch
        stream = as_captum_perturb_func(GaussianNoise(), batch_size=1, seed=0)
        perturb = infidelity_perturb_func_decorator(False)(lambda perturbed, baselines=None: stream(perturbed))
        return captum_infidelity(network, perturb, inputs, attributions, target=index, n_perturb_samples=n_infidelity)

    def explain(batch: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return Saliency(network).attribute(batch, abs=True, **kwargs)

    def ours_sensitivity() -> Any:
        return max_sensitivity(explain, inputs, target=index, n_perturb_samples=n_sensitivity,
                               max_examples_per_batch=backward_batch)

    mine, theirs = measure_pair(ours_infidelity, peer_infidelity, repeats=repeats, device=device)
    rows = [record("metric/infidelity", "infidelity", size, device, mine, model=arch, n_perturb_samples=n_infidelity,
                   passes={"forward": n_infidelity + 1, "backward": 0}, floor_s=floor.cost(forward=n_infidelity + 1),
                   batch_size=forward_batch, peer="captum infidelity, max_examples_per_batch=None",
                   peer_median_s=theirs["median_s"], peer_spread_s=theirs["spread_s"])]
    mine = measure(ours_sensitivity, repeats=repeats, device=device)
    rows.append(record("metric/max_sensitivity", "max-sensitivity (of saliency)", size, device, mine, model=arch,
                       n_perturb_samples=n_sensitivity, passes={"forward": 0, "backward": n_sensitivity + 1},
                       floor_s=floor.cost(backward=n_sensitivity + 1), batch_size=backward_batch))
    return rows
