"""The same phantom on two grids (identity; oblique anisotropic) and as a DICOM series read back gives heatmaps
whose peak and positive centre of mass agree in world millimetres.

The model is a fixed convolutional network whose evidence is one compact place: the brightest 7 mm blob
(box smoothing, global max pooling), which on this phantom is the lesion. Being convolutional, it sees the
same physical blob whatever the grid, so any disagreement would come from the geometry of the pipeline.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medxai.attribution.engine import explain_case
from medxai.attribution.registry import METHODS
from medxai.io.nifti import write_nifti
from medxai.models.loaded import LoadedModel
from medxai.models.preprocessing import Preprocessor, PreprocessingConfig
from medxai.synthetic import default_grid, make_spec, render
from medxai.testing.attribution_nets import FAST_OPTIONS
from medxai.testing.dicom_writer import dicom_representable, write_dicom_series
from medxai.volume import Volume


class BrightestBlob(nn.Module):
    """logit(lesion) = 100 x the largest 7x7x7 mean intensity; logit(normal) its negative."""

    def __init__(self) -> None:
        super().__init__()
        self.smooth = nn.Conv3d(1, 1, 7, padding=3)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.smooth.weight.fill_(1 / 343)
            self.smooth.bias.zero_()
            self.head.weight.copy_(torch.tensor([[-100.0], [100.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.act(self.smooth(x))), 1))


def world_peak_and_centre(heatmap: Volume) -> tuple[np.ndarray, np.ndarray]:
    data = heatmap.data.astype(np.float64)
    peak = np.array(np.unravel_index(np.argmax(data), data.shape))
    positive = np.clip(data, 0, None)
    centre = (np.indices(data.shape).reshape(3, -1) * positive.reshape(-1)).sum(1) / positive.sum()
    return heatmap.index_to_world(peak)[0], heatmap.index_to_world(centre)[0]


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("equivariance")
    spec = make_spec(seed=5, task="presence", label="lesion", size=32)
    scans, spacing = {}, {}
    for kind in ("identity", "oblique"):
        affine, shape = default_grid(spec, size=32, kind=kind)
        phantom = render(spec, affine=affine, shape=shape)
        image = dicom_representable(phantom.image, rescale_slope=0.1) if kind == "identity" else phantom.image
        write_nifti(image, folder / f"{kind}.nii.gz")
        scans[kind], spacing[kind] = folder / f"{kind}.nii.gz", max(image.spacing)
        if kind == "identity":
            write_dicom_series(image, folder / "dicom", modality="MR", rescale_slope=0.1)
            scans["dicom"], spacing["dicom"], lesion = folder / "dicom", max(image.spacing), phantom.mask
    assert spacing["oblique"] > 2.0  # thick oblique slices
    model = LoadedModel(network=BrightestBlob().eval(), arch="brightest-blob", classes=["normal", "lesion"],
                        task="classification", sha256="0" * 64, path=Path("fixed"),
                        preprocessor=Preprocessor(PreprocessingConfig(spatial_size=(40, 40, 40), spacing=(1.0, 1.0, 1.0), fit="pad_crop")))
    results = {kind: explain_case(model, path, methods=list(METHODS), method_options=FAST_OPTIONS, target="lesion")
               for kind, path in scans.items()}
    return results, spacing, lesion


@pytest.mark.parametrize("name", list(METHODS))
def test_oblique_anisotropic_grid_agrees_in_world_mm(name, explained):
    results, spacing, _ = explained
    tolerance = 2 * max(spacing["identity"], spacing["oblique"])  # two voxels of the coarser grid
    peak_a, centre_a = world_peak_and_centre(results["identity"].heatmaps[name])
    peak_b, centre_b = world_peak_and_centre(results["oblique"].heatmaps[name])
    assert np.linalg.norm(centre_a - centre_b) <= tolerance
    assert np.linalg.norm(peak_a - peak_b) <= tolerance


@pytest.mark.parametrize("name", list(METHODS))
def test_dicom_series_agrees_with_nifti(name, explained):
    results, _, _ = explained
    peak_a, centre_a = world_peak_and_centre(results["identity"].heatmaps[name])
    peak_b, centre_b = world_peak_and_centre(results["dicom"].heatmaps[name])
    assert np.linalg.norm(centre_a - centre_b) <= 0.1 and np.linalg.norm(peak_a - peak_b) <= 0.1


@pytest.mark.parametrize("name", ["saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "deeplift", "lrp"])
def test_gradient_methods_point_at_the_lesion(name, explained):
    results, spacing, lesion = explained
    lesion_centre = lesion.index_to_world(np.argwhere(lesion.data > 0).mean(0))[0]
    for kind in ("identity", "oblique"):
        _, centre = world_peak_and_centre(results[kind].heatmaps[name])
        assert np.linalg.norm(centre - lesion_centre) <= 2 * spacing["oblique"]
