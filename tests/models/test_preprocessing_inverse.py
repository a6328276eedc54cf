"""Preprocessing to the model grid and back, on oblique, anisotropic, flipped grids."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medxai.errors import ConfigError, InvalidInputError
from medxai.models.preprocessing import (
    ChannelIntensity,
    PreprocessingConfig,
    Preprocessor,
    parse_intensity,
)
from medxai.volume import Volume

NATIVE_SHAPE = (40, 36, 14)


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def oblique_affine() -> np.ndarray:
    """Rotated 25 degrees off every axis, 0.9 x 1.2 x 3.0 mm voxels, first and third axes flipped."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation(np.array([1.0, 0.6, 0.3]), 25.0) @ np.diag([-0.9, 1.2, -3.0])
    affine[:3, 3] = [30.0, -12.0, 25.0]
    return affine


def smooth(world: np.ndarray) -> np.ndarray:
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    return np.sin(x / 9.0) + np.cos(y / 11.0) + 0.5 * np.sin(z / 13.0 + 0.4)


def sampled_volume(affine: np.ndarray, shape: tuple[int, int, int]) -> Volume:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    return Volume(data=smooth(world).reshape(shape).astype(np.float32), affine=affine)


CONFIGS = {
    "resize": PreprocessingConfig(spatial_size=(36, 36, 36), intensity=(ChannelIntensity("none"),)),
    "spacing+pad_crop": PreprocessingConfig(
        spatial_size=(56, 52, 48), spacing=(1.0, 1.0, 1.0), fit="pad_crop", intensity=(ChannelIntensity("none"),)
    ),
    "spacing+resize": PreprocessingConfig(
        spatial_size=(32, 40, 36), spacing=(1.5, 1.5, 1.5), intensity=(ChannelIntensity("none"),)
    ),
    "coarse": PreprocessingConfig(
        spatial_size=(24, 24, 24), spacing=(3.5, 3.5, 3.5), fit="pad_crop", intensity=(ChannelIntensity("none"),)
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_tensor_samples_the_same_world_function(name: str) -> None:
    native = sampled_volume(oblique_affine(), NATIVE_SHAPE)
    prepared = Preprocessor(CONFIGS[name]).prepare([native])
    model_affine = prepared.tensor.affine.numpy()
    values = prepared.tensor[0].numpy()
    assert values.shape == CONFIGS[name].spatial_size
    # model-grid voxels well inside the native field of view carry f(world of that voxel)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    world = grid @ model_affine[:3, :3].T + model_affine[:3, 3]
    native_index = native.world_to_index(world)
    inside = np.all((native_index > 2) & (native_index < np.array(NATIVE_SHAPE) - 3), axis=1)
    assert inside.sum() > 500
    error = np.abs(values.reshape(-1)[inside] - smooth(world[inside]))
    assert np.median(error) < 0.05 and np.percentile(error, 95) < 0.15


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_returns_native_grid_within_interpolation_error(name: str) -> None:
    native = sampled_volume(oblique_affine(), NATIVE_SHAPE)
    preprocessor = Preprocessor(CONFIGS[name])
    prepared = preprocessor.prepare([native])
    back = preprocessor.to_native(prepared.tensor[0], prepared)
    assert back.shape == native.shape
    assert np.array_equal(back.affine, native.affine)
    assert back.data.dtype == np.float32
    interior = (slice(3, -3), slice(3, -3), slice(2, -2))
    error = np.abs(back.data[interior] - native.data[interior])
    assert np.median(error) < 0.06 and np.percentile(error, 95) < 0.2


# a one-voxel delta is only a fair probe on a model grid at least as coarse as the native voxels (finer
# deltas can fall between native samples): that is the 'coarse' configuration
@pytest.mark.parametrize(("name", "shape"), [(name, "blob") for name in sorted(CONFIGS)] + [("coarse", "delta")])
def test_point_map_at_world_point_comes_back_at_that_point(name: str, shape: str) -> None:
    native = sampled_volume(oblique_affine(), NATIVE_SHAPE)
    preprocessor = Preprocessor(CONFIGS[name])
    prepared = preprocessor.prepare([native])
    model_affine = prepared.tensor.affine.numpy()
    model_voxel = float(np.max(np.linalg.norm(model_affine[:3, :3], axis=0)))
    assert shape == "blob" or model_voxel >= max(native.spacing)
    size = CONFIGS[name].spatial_size
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1)
    for native_point in ([12.3, 20.6, 6.2], [28.0, 9.4, 4.7], [20.0, 18.0, 9.0]):
        world = native.index_to_world(np.array(native_point))[0]
        model_index = np.linalg.inv(model_affine)[:3] @ np.append(world, 1.0)
        if shape == "delta":
            model_map = np.zeros(size, dtype=np.float32)
            model_map[tuple(np.rint(model_index).astype(int))] = 1.0
            tolerance = max(native.spacing) + 0.5 * model_voxel  # one native voxel plus the rounding above
        else:  # a small Gaussian centred exactly on the point (sigma 1.5 model voxels)
            model_map = np.exp(-np.sum((grid - model_index) ** 2, axis=-1) / (2 * 1.5**2)).astype(np.float32)
            tolerance = max(native.spacing)
        back = preprocessor.to_native(model_map, prepared)
        peak = np.array(np.unravel_index(np.argmax(back.data), back.shape))
        peak_mm = np.linalg.norm(native.index_to_world(peak)[0] - world)
        assert back.data.max() > 0.2
        assert peak_mm <= tolerance, (name, native_point, peak, peak_mm)


def test_nearest_inverse_keeps_label_values() -> None:
    native = sampled_volume(oblique_affine(), NATIVE_SHAPE)
    preprocessor = Preprocessor(CONFIGS["spacing+resize"])
    prepared = preprocessor.prepare([native])
    labels = (prepared.tensor[0] > 0.5).float() * 3.0
    back = preprocessor.to_native(labels[None], prepared, interpolation="nearest")
    assert set(np.unique(back.data)) <= {0.0, 3.0}
    assert 0 < (back.data == 3.0).mean() < 1


def test_intensity_settings_per_channel() -> None:
    affine = oblique_affine()
    first = Volume(np.random.default_rng(0).normal(100, 20, NATIVE_SHAPE).astype(np.float32), affine)
    second = Volume(np.linspace(-200, 600, np.prod(NATIVE_SHAPE)).reshape(NATIVE_SHAPE).astype(np.float32), affine)
    config = PreprocessingConfig(
        spatial_size=NATIVE_SHAPE, channels=("flair", "t1c"), intensity=parse_intensity("zscore;window:0,400")
    )
    prepared = Preprocessor(config).prepare([first, second])
    assert prepared.tensor.shape[0] == 2
    flair = prepared.tensor[0].numpy()
    assert abs(flair.mean()) < 0.05 and abs(flair.std() - 1) < 0.05
    t1c = prepared.tensor[1].numpy()
    assert t1c.min() == 0.0 and t1c.max() == 1.0


def test_config_json_round_trip_and_bad_values() -> None:
    config = CONFIGS["spacing+pad_crop"]
    assert PreprocessingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError):
        ChannelIntensity.parse("window:5")
    with pytest.raises(ConfigError):
        PreprocessingConfig(fit="stretch")
    with pytest.raises(ConfigError):
        PreprocessingConfig(orientation="RRS")


def test_channels_on_different_grids_are_refused() -> None:
    affine = oblique_affine()
    config = PreprocessingConfig(spatial_size=(16, 16, 16), channels=("a", "b"))
    shifted = affine.copy()
    shifted[0, 3] += 5
    volumes = [Volume(np.zeros(NATIVE_SHAPE, np.float32), affine), Volume(np.zeros(NATIVE_SHAPE, np.float32), shifted)]
    with pytest.raises(InvalidInputError, match="share one grid"):
        Preprocessor(config).prepare(volumes)
    with pytest.raises(InvalidInputError, match="expects 2 channel"):
        Preprocessor(config).prepare(volumes[:1])


def test_map_of_wrong_shape_is_refused() -> None:
    native = sampled_volume(oblique_affine(), NATIVE_SHAPE)
    preprocessor = Preprocessor(CONFIGS["resize"])
    prepared = preprocessor.prepare([native])
    with pytest.raises(ValueError, match="model grid"):
        preprocessor.to_native(torch.zeros(10, 10, 10), prepared)
