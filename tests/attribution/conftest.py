"""Fixtures of the attribution tests: tiny networks and inputs (fixed seeds), a tiny saved model and an
oblique phantom scan."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from medxai.io.nifti import write_nifti
from medxai.models.loaded import LoadedModel
from medxai.models.model_dir import load_model, save_model_dir
from medxai.models.preprocessing import PreprocessingConfig
from medxai.models.registry import build_network
from medxai.synthetic import default_grid, make_spec, render
from medxai.testing.attribution_nets import SmallClassifier, randomise_batch_norm

SIZE = 32
CLASSES = ["normal", "lesion"]


@pytest.fixture(scope="session")
def classifier() -> nn.Module:
    """2 input channels, 3 classes."""
    torch.manual_seed(0)
    return randomise_batch_norm(SmallClassifier(), 1)


@pytest.fixture(scope="session")
def segmenter() -> nn.Module:
    """MONAI UNet (residual units, PReLU, instance norm, skip concatenation), 2 output classes."""
    torch.manual_seed(0)
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=1).eval()


@pytest.fixture(scope="session")
def image_2ch() -> torch.Tensor:
    return torch.randn(1, 2, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="session")
def image_1ch() -> torch.Tensor:
    return torch.randn(1, 1, SIZE, SIZE, SIZE, generator=torch.Generator().manual_seed(6))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> LoadedModel:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(32, 32, 32))
    save_model_dir(folder, network=network, arch="tiny", classes=CLASSES, task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(32, 32, 32)), training={}, metrics={})
    return load_model(folder)


@pytest.fixture(scope="module")
def oblique_scan(tmp_path_factory) -> tuple[Path, np.ndarray, tuple[int, int, int]]:
    spec = make_spec(seed=4, task="presence", label="lesion", size=32)
    affine, shape = default_grid(spec, size=32, kind="oblique")
    path = tmp_path_factory.mktemp("scan") / "oblique case.nii.gz"
    write_nifti(render(spec, affine=affine, shape=shape).image, path)
    return path, affine, shape
