"""One conformance table: every method x target x (classification, segmentation) model on the model grid.

Checks shape, finiteness, dtype, the stated sign convention and determinism under the seed.
The native-grid half (shape and affine equal the scan's) is in test_explain_case.py.
"""
from __future__ import annotations

import pytest
import torch

from medxai.attribution.base import Execution
from medxai.attribution.registry import METHODS, create_method
from medxai.attribution.targets import ClassTarget, ContrastTarget, PredictedClass
from medxai.testing.attribution_nets import FAST_OPTIONS

SIZE = 32

_BOX = torch.zeros(SIZE, SIZE, SIZE, dtype=torch.bool)
_BOX[8:20, 10:22, 12:24] = True
_VOXEL = torch.zeros(SIZE, SIZE, SIZE, dtype=torch.bool)
_VOXEL[15, 16, 17] = True

TARGETS = {
    ("classification", "predicted"): PredictedClass(),
    ("classification", "class"): ClassTarget(2),
    ("classification", "contrast"): ContrastTarget(1, 0),
    ("segmentation", "predicted mask"): PredictedClass(),
    ("segmentation", "box"): ClassTarget(1, region=_BOX),
    ("segmentation", "voxel"): ClassTarget(1, region=_VOXEL),
}


@pytest.mark.parametrize("target_key", list(TARGETS), ids=lambda key: f"{key[0]}-{key[1]}")
@pytest.mark.parametrize("name", list(METHODS))
def test_method_conformance(name, target_key, classifier, segmenter, image_2ch, image_1ch):
    kind, _ = target_key
    network, inputs = (classifier, image_2ch) if kind == "classification" else (segmenter, image_1ch)
    execution = Execution(batch_size=4, seed=11, spacing_mm=(1.0, 1.0, 2.0))
    method = create_method(name, network, execution=execution, options=FAST_OPTIONS.get(name))
    first = method.attribute(inputs, TARGETS[target_key])
    second = method.attribute(inputs, TARGETS[target_key])

    assert first.dtype == torch.float32
    assert first.shape[0] == 1 and first.shape[2:] == inputs.shape[2:]
    assert first.shape[1] in (1, inputs.shape[1])
    assert bool(torch.isfinite(first).all())
    assert torch.equal(first, second), "same seed must give the same heatmap"
    if method.sign == "positive":
        assert float(first.min()) >= 0.0
    assert method.diagnostics["target"]["kind"] in ("predicted", "class", "contrast", "segmentation")


@pytest.mark.parametrize("name,extra", [("smoothgrad", {}), ("smooth_gradcampp", {"layer": "conv2"})])
def test_seed_changes_the_noise(name, extra, classifier, image_2ch):
    # (at the last layer before global pooling + linear the gradient does not depend on the input, so
    # Smooth Grad-CAM++ is tested at an earlier layer)
    maps = [
        create_method(name, classifier, execution=Execution(batch_size=4, seed=seed), options={**FAST_OPTIONS[name], **extra})
        .attribute(image_2ch, ClassTarget(1))
        for seed in (1, 2)
    ]
    assert not torch.equal(maps[0], maps[1])


def test_segmentation_region_target_resolution(segmenter, image_1ch):
    method = create_method("saliency", segmenter)
    method.attribute(image_1ch, ClassTarget(1, region=_BOX))
    assert method.diagnostics["target"] == {"kind": "segmentation", "class_index": 1, "region": "given region",
                                            "region_voxels": int(_BOX.sum())}
    method.attribute(image_1ch, PredictedClass())
    resolved = method.diagnostics["target"]
    predicted = (segmenter(image_1ch).argmax(1) == resolved["class_index"]).sum()
    assert resolved["region"] == "predicted mask" and resolved["region_voxels"] == int(predicted)
