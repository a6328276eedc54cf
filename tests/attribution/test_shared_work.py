"""Work shared across the methods of a case and the cases of a cohort: one target resolution per case,
network copies for hook-based methods built once per model while its weights are unchanged."""
from __future__ import annotations

import torch
from torch import nn

from medxai.attribution.cam import without_inplace
from medxai.attribution.engine import explain_case
from medxai.attribution.model_surgery import make_explainable
from medxai.attribution.registry import create_method
from medxai.attribution.targets import ClassTarget, PredictedClass, ResolvedTarget
from medxai.testing.attribution_nets import SmallClassifier



class _ForwardCounter:
    """Counts forward calls of a module (and the samples they carried)."""

    def __init__(self, module: nn.Module) -> None:
        self.calls, self.samples = 0, 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, args: tuple, _output: object) -> None:
        self.calls += 1
        self.samples += int(args[0].shape[0])


def test_a_resolved_target_binds_without_a_forward_pass_and_asks_the_same_question(classifier, image_2ch):
    counter = _ForwardCounter(classifier)
    try:
        resolved = PredictedClass().resolve(classifier, image_2ch)
        assert counter.calls == 1
        with torch.no_grad():
            output = classifier(image_2ch)
        counter.calls = 0
        from_output = ClassTarget(2).resolve(classifier, image_2ch, output=output)
        bound = resolved.bind(classifier, image_2ch)
        assert counter.calls == 0  # neither resolving from a given output nor binding ran the network
        assert isinstance(resolved, ResolvedTarget) and from_output.description["class_index"] == 2
        with torch.no_grad():
            assert torch.equal(bound(image_2ch), output[:, [int(output.argmax())]])
            assert torch.equal(from_output.bind(classifier, image_2ch)(image_2ch), output[:, [2]])
    finally:
        counter.handle.remove()


def test_explain_case_runs_one_clean_pass_for_all_methods(model, oblique_scan):
    path, _, _ = oblique_scan
    counter = _ForwardCounter(model.network)
    try:
        explain_case(model, path, methods=["saliency", "input_x_gradient"], batch_size=1)
    finally:
        counter.handle.remove()
    # the prediction's clean pass (which also resolves the target), the memory probe of the pre-flight check
    # (one sample, whatever the batch size) + one gradient pass per method
    assert counter.calls == 4 and counter.samples == 4


def test_surgery_copies_are_reused_until_the_weights_change(image_2ch):
    torch.manual_seed(1)
    network = SmallClassifier().eval()
    first = make_explainable(network)
    assert make_explainable(network) is first and without_inplace(network) is without_inplace(network)
    with torch.no_grad():  # an in-place change (a training step, a re-initialisation) moves the version counter
        next(network.parameters()).mul_(-2.0)
    second = make_explainable(network)
    assert second is not first
    with torch.no_grad():
        assert torch.allclose(second(image_2ch), network(image_2ch), atol=1e-5)
        assert not torch.allclose(first(image_2ch), network(image_2ch), atol=1e-3)
    fresh = SmallClassifier().eval()
    fresh.load_state_dict(network.state_dict())
    assert make_explainable(fresh) is not second  # another network object never shares a copy


def test_lrp_on_a_changed_network_explains_the_new_weights(image_2ch):
    torch.manual_seed(2)
    network = SmallClassifier().eval()
    target = ClassTarget(0)
    before = create_method("lrp", network).attribute(image_2ch, target)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(1.5)
    after = create_method("lrp", network).attribute(image_2ch, target)
    reference = create_method("lrp", _copy_of(network)).attribute(image_2ch, target)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, reference, rtol=1e-4, atol=1e-7)


def _copy_of(network: nn.Module) -> nn.Module:
    fresh = SmallClassifier().eval()
    fresh.load_state_dict(network.state_dict())
    return fresh


def test_lrp_graphs_for_other_input_shapes_replace_each_other(image_2ch):
    """Scans of different sizes in one cohort: each gets a correct LRP graph, and only the latest is kept."""
    from medxai.attribution import derived

    torch.manual_seed(3)
    network = SmallClassifier().eval()
    small = image_2ch[..., :24]
    first = create_method("lrp", network).attribute(image_2ch, ClassTarget(1))
    other = create_method("lrp", network).attribute(small, ClassTarget(1))
    again = create_method("lrp", network).attribute(image_2ch, ClassTarget(1))
    assert other.shape[2:] == small.shape[2:] and torch.allclose(first, again)
    assert torch.allclose(other, create_method("lrp", _copy_of(network)).attribute(small, ClassTarget(1)), rtol=1e-4, atol=1e-7)
    entries = derived._CACHE[make_explainable(network)]
    assert list(entries) == ["lrp"] and entries["lrp"][0][0] == tuple(image_2ch.shape)


def test_deeplift_runs_one_batched_pass_and_no_extra_one_for_its_gap(classifier, image_2ch):
    """Input and baseline go through the network once, together; the completeness gap reuses that pass."""
    explainable = make_explainable(classifier)  # the cached copy DeepLIFT will run on
    target = ClassTarget(1).resolve(classifier, image_2ch)  # as explain_case does, once per case
    counter = _ForwardCounter(explainable)
    try:
        method = create_method("deeplift", classifier)
        method.attribute(image_2ch, target)
    finally:
        counter.handle.remove()
    assert (counter.calls, counter.samples) == (1, 2)
    assert method.diagnostics["convergence_delta"] > 0
