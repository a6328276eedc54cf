"""A GP model trained with ``--negative-class``: that class has one learnt level, not a map, so it cannot be
segmented; asked for by name it is refused, predicted it gives an empty mask whatever segment's own
``--negative-class`` says."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medxai.errors import ConfigError
from medxai.models.model_dir import load_model, save_model_dir
from medxai.models.preprocessing import PreprocessingConfig
from medxai.models.registry import build_network
from medxai.segmentation.heatmaps import class_map
from medxai.volume import Volume


def _model(folder: Path, level: float):
    torch.manual_seed(0)
    network = build_network("gp-unet", in_channels=1, num_classes=2, spatial_size=(16, 16, 16))
    network.set_negative_class(1)
    with torch.no_grad():
        network.negative_level.fill_(level)
    save_model_dir(folder, network=network, arch="gp-unet", classes=["lesion", "normal"], task="weakseg",
                   preprocessing=PreprocessingConfig(spatial_size=(16, 16, 16)), training={"epochs": 0}, metrics={})
    return load_model(folder)


def _scan() -> Volume:
    affine = np.array([[0.0, -1.2, 0.0, 40.0], [0.9, 0.0, 0.3, -20.0], [0.0, 0.0, 2.5, 10.0], [0, 0, 0, 1.0]])
    return Volume(np.random.default_rng(1).normal(size=(20, 18, 12)).astype(np.float32), affine)


def test_the_flat_class_is_refused_by_name(tmp_path: Path) -> None:
    model = _model(tmp_path / "m", 0.0)
    with pytest.raises(ConfigError, match="'normal' has no map of its own"):
        class_map(model, [_scan()], target="normal")
    lesion = class_map(model, [_scan()], target="lesion")
    assert lesion.heatmap.shape == (20, 18, 12) and np.ptp(lesion.model_map) > 0


def test_a_predicted_flat_class_gives_an_empty_mask_whatever_the_negative_class_option(tmp_path: Path) -> None:
    model = _model(tmp_path / "m", 1e3)  # the flat level outbids every lesion-map value: predicted 'normal'
    mapped = class_map(model, [_scan()], target="predicted", negative_class=None)
    assert mapped.predicted == "normal"
    assert mapped.empty_reason and "flat class" in mapped.empty_reason
    not_flat = class_map(_model(tmp_path / "m2", -1e3), [_scan()], target="predicted", negative_class=None)
    assert not_flat.predicted == "lesion" and not_flat.empty_reason is None


def test_segment_command_on_a_flat_normal_model(cli, tmp_path: Path) -> None:
    """Through ``medxai segment``: ``--target normal`` exits 4 with one line and writes no case folder; a scan
    predicted as the flat class gets an empty mask on the scan's own (oblique, anisotropic) grid."""
    import nibabel as nib

    from medxai.io.nifti import write_nifti

    scan = tmp_path / "scan.nii.gz"
    write_nifti(_scan(), scan)
    _model(tmp_path / "normal_wins", 1e3)
    refused = cli("segment", tmp_path / "normal_wins", scan, "-o", tmp_path / "refused", "--target", "normal")
    assert refused.exit_code == 4 and len(refused.stderr.strip().splitlines()) == 1
    assert "no map of its own" in refused.stderr
    assert not (tmp_path / "refused" / "scan").exists()
    done = cli("segment", tmp_path / "normal_wins", scan, "-o", tmp_path / "out", "--negative-class", "other")
    assert done.exit_code == 0, done.stderr
    mask = nib.load(str(tmp_path / "out" / "scan" / "mask.nii.gz"))
    assert mask.shape == (20, 18, 12) and np.allclose(mask.affine, _scan().affine, atol=1e-5)
    assert not np.asarray(mask.dataobj).any()
