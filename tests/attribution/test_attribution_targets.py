"""Targets reduce any network to one scalar per sample; parsing of --target strings."""
from __future__ import annotations

import pytest
import torch

from medxai.attribution.engine import parse_target
from medxai.attribution.registry import create_method
from medxai.attribution.targets import ClassTarget, ContrastTarget, PredictedClass
from medxai.errors import ConfigError


def test_classification_targets_pick_the_right_logit(classifier, image_2ch):
    with torch.no_grad():
        logits = classifier(image_2ch)
    assert torch.equal(PredictedClass().bind(classifier, image_2ch)(image_2ch), logits[:, [int(logits.argmax())]])
    assert torch.equal(ClassTarget(2).bind(classifier, image_2ch)(image_2ch), logits[:, [2]])
    contrast = ContrastTarget(1, 0).bind(classifier, image_2ch)(image_2ch)
    assert torch.allclose(contrast, (logits[:, 1] - logits[:, 0])[:, None])


def test_predicted_class_is_fixed_on_the_clean_input(classifier, image_2ch):
    bound = PredictedClass().bind(classifier, image_2ch)
    other = torch.randn_like(image_2ch) * 5
    with torch.no_grad():
        assert torch.equal(bound(other), classifier(other)[:, [bound.description["class_index"]]])


def test_segmentation_region_sums_the_class_logit(segmenter, image_1ch):
    region = torch.zeros(image_1ch.shape[2:], dtype=torch.bool)
    region[4:9, 5:7, 20:30] = True
    bound = ClassTarget(1, region=region).bind(segmenter, image_1ch)
    with torch.no_grad():
        expected = segmenter(image_1ch)[0, 1][region].sum()
        assert float(bound(image_1ch)) == pytest.approx(float(expected), rel=1e-5)


def test_voxel_target_gradient_is_that_voxels_gradient(segmenter, image_1ch):
    region = torch.zeros(image_1ch.shape[2:], dtype=torch.bool)
    region[10, 11, 12] = True
    heatmap = create_method("input_x_gradient", segmenter).attribute(image_1ch, ClassTarget(0, region=region))
    x = image_1ch.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(segmenter(x)[0, 0, 10, 11, 12], x)
    assert torch.allclose(heatmap, gradient * image_1ch, atol=1e-6)


def test_contrast_is_the_difference_of_class_attributions(classifier, image_2ch):
    method = create_method("input_x_gradient", classifier)
    contrast = method.attribute(image_2ch, ContrastTarget(1, 2))
    difference = method.attribute(image_2ch, ClassTarget(1)) - method.attribute(image_2ch, ClassTarget(2))
    assert torch.allclose(contrast, difference, atol=1e-6)


def test_empty_predicted_mask_falls_back_to_the_whole_grid(segmenter, image_1ch):
    bound = ClassTarget(1).bind(torch.nn.Sequential(segmenter, _Shift(-1e3)), image_1ch)
    assert bound.description["region"].startswith("whole grid")
    assert bound.description["region_voxels"] == image_1ch[0, 0].numel()


class _Shift(torch.nn.Module):
    """Makes class 1 lose everywhere, so its predicted mask is empty."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        return torch.cat([output[:, :1], output[:, 1:] + self.offset], dim=1)


def test_invalid_targets_are_config_errors(classifier, segmenter, image_2ch, image_1ch):
    with pytest.raises(ConfigError, match="out of range"):
        ClassTarget(7).bind(classifier, image_2ch)
    with pytest.raises(ConfigError, match="classification"):
        ContrastTarget(0, 1).bind(segmenter, image_1ch)
    with pytest.raises(ConfigError, match="empty"):
        ClassTarget(1, region=torch.zeros(image_1ch.shape[2:], dtype=torch.bool)).bind(segmenter, image_1ch)


@pytest.mark.parametrize("spec,expected", [
    ("predicted", PredictedClass()), ("lesion", ClassTarget(1)), ("non-lesion", ClassTarget(2)),
    ("lesion-normal", ContrastTarget(1, 0)), ("non-lesion-lesion", ContrastTarget(2, 1)), ("0", ClassTarget(0)),
])
def test_parse_target(spec, expected):
    assert parse_target(spec, ["normal", "lesion", "non-lesion"]) == expected


def test_parse_target_names_the_classes_when_unknown():
    with pytest.raises(ConfigError, match="normal, lesion"):
        parse_target("tumour", ["normal", "lesion"])
