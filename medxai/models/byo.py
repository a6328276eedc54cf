"""Bring-your-own models: TorchScript files and MONAI bundle directories (``configs/`` + ``models/``).

Nothing stored with the model runs unless ``trust`` (the CLI's ``--trust-model``) is given. A TorchScript
file is a program (PyTorch's SECURITY.md: treat it like executable code from its provider), so it is loaded
only with ``trust``. A bundle's config is read as data and its ``network_def`` built by
:mod:`medxai.models.bundle_config` (checked torch.nn/monai.networks classes, no expressions); its weights are
``models/model.pt`` read with ``torch.load(weights_only=True)`` (tensors and plain containers, never a
Python pickle of arbitrary objects). With ``trust``, MONAI's own ``ConfigParser`` builds the network
(expressions evaluated) and a bundle holding only ``models/model.ts`` loads. Preprocessing is mapped from the
bundle's ``preprocessing`` transforms and ``metadata.json`` where it can be; options state what it does not.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from medxai.errors import ConfigError, InvalidInputError, one_line
from medxai.io.data_files import read_data_file
from medxai.models.bundle_config import TRUST_HINT, BundleConfig
from medxai.models.loaded import MAX_CHANNELS, SPACING_MM, LoadedModel, check_spatial_size, sha256_file
from medxai.models.preprocessing import ChannelIntensity, PreprocessingConfig, Preprocessor, parse_intensity

_IGNORED_TRANSFORMS = {
    "LoadImaged", "LoadImage", "EnsureChannelFirstd", "EnsureChannelFirst", "EnsureTyped", "EnsureType",
    "ToTensord", "ToTensor", "CastToTyped", "CastToType", "Compose", "AsChannelFirstd", "AddChanneld",
}


def _probe(network: nn.Module, *, in_channels: int, spatial_size: tuple[int, int, int], device: torch.device, path: Path) -> int:
    """Run one zero input through the network; return its number of outputs (classes)."""
    try:
        with torch.inference_mode():
            output = network(torch.zeros((1, in_channels, *spatial_size), device=device))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidInputError(
            f"model does not run on a {in_channels}-channel {spatial_size} input ({first}); check --spatial-size/--intensity",
            path=path,
        ) from None
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[1] < 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InvalidInputError(f"model output {shape} is not class logits (N, classes >= 2)", path=path)
    return int(output.shape[1])


def _classes(count: int, given: Sequence[str] | None, path: Path) -> list[str]:
    if given is None:
        return [f"class_{index}" for index in range(count)]
    if len(given) != count:
        raise ConfigError(f"{len(given)} classes given but the model has {count} outputs", path=path)
    return [str(name) for name in given]


def _intensity(text: str | None, default: tuple[ChannelIntensity, ...]) -> tuple[ChannelIntensity, ...]:
    return parse_intensity(text) if text is not None else default


def _untrusted_torchscript(path: Path) -> InvalidInputError:
    return InvalidInputError(
        "is TorchScript, a program whose code runs when it is loaded and called (PyTorch's security policy: "
        f"treat it like an executable from its provider); refused: {TRUST_HINT}", path=path,
    )


def _jit_load(path: Path, device: torch.device) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location=device)
    except RuntimeError as error:
        raise InvalidInputError(f"not a loadable TorchScript file ({one_line(error)[:160]})", path=path) from None


def load_torchscript(
    path: Path, *, device: torch.device, classes: Sequence[str] | None, spatial_size: Sequence[int] | None,
    spacing: Sequence[float] | None, intensity: str | None, trust: bool = False,
) -> LoadedModel:
    """A TorchScript classifier (only with ``trust``); ``spatial_size`` is required, one ``intensity`` per channel."""
    if not trust:
        raise _untrusted_torchscript(path)
    if spatial_size is None:
        raise ConfigError("a TorchScript model needs its input size stated (--spatial-size)", path=path)
    size = check_spatial_size(tuple(spatial_size), path=path, what="--spatial-size")
    network = _jit_load(path, device)
    settings = _intensity(intensity, (ChannelIntensity(),))
    config = PreprocessingConfig(
        spatial_size=size, spacing=None if spacing is None else tuple(spacing),  # type: ignore[arg-type]
        channels=tuple(f"channel_{i}" for i in range(len(settings))), intensity=settings,
    )
    network.eval()
    count = _probe(network, in_channels=config.in_channels, spatial_size=config.spatial_size, device=device, path=path)
    info = {"format": "torchscript", "file": path.name, "preprocessing": config.to_dict()}
    return LoadedModel(
        network=network, arch="torchscript", classes=_classes(count, classes, path), task="classification",
        preprocessor=Preprocessor(config), sha256=sha256_file(path), path=path, info=info,
    )


def _read_bundle_config(bundle: Path) -> BundleConfig:
    """``configs/inference.json|yaml`` and ``configs/metadata.json`` (as ``_meta_``), parsed as plain data."""
    configs = bundle / "configs"
    found = [configs / name for name in ("inference.json", "inference.yaml", "inference.yml") if (configs / name).is_file()]
    if not found:
        raise InvalidInputError("MONAI bundle has no configs/inference.json (or .yaml)", path=bundle)
    data = read_data_file(found[0], what="bundle config")
    if not isinstance(data, dict):
        raise InvalidInputError("bundle config is not a mapping of ids to values", path=found[0])
    metadata = configs / "metadata.json"
    meta = read_data_file(metadata, what="bundle metadata") if metadata.is_file() else {}
    return BundleConfig({**data, "_meta_": meta if isinstance(meta, dict) else {}}, found[0])


def _mapped_preprocessing(config: BundleConfig) -> tuple[dict[str, Any], list[str]]:
    """Settings read off the bundle's ``preprocessing`` transforms, and the transforms that could not be mapped.

    Only plain values are read (``@`` references followed); a transform using expressions stays unmapped."""
    transforms = config.plain(config.get("preprocessing::transforms", []))
    found: dict[str, Any] = {}
    unmapped: list[str] = []
    for item in transforms if isinstance(transforms, list) else []:
        item = config.plain(item)
        name = str(item.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(item, dict) else ""
        try:
            mapped = _map_transform(name, lambda key, default=None: config.plain(item.get(key, default)))
        except (TypeError, ValueError, ConfigError) as error:
            raise InvalidInputError(f"preprocessing transform {name[:40]!r}: unusable value ({one_line(error)[:80]})",
                                    path=config.source) from None
        if mapped is not None:
            found.update(mapped)
        elif name not in _IGNORED_TRANSFORMS:
            unmapped.append(name[:60] or repr(item)[:40])
    if isinstance(found.get("spatial_size"), int):
        found["spatial_size"] = (found["spatial_size"],) * 3
    return found, unmapped


def _map_transform(name: str, get: Any) -> dict[str, Any] | None:
    """What one MONAI transform says about the preprocessing; None when it maps to nothing medxai knows."""
    if name in ("Orientationd", "Orientation") and get("axcodes"):
        return {"orientation": str(get("axcodes"))}
    if name in ("Spacingd", "Spacing") and get("pixdim") is not None:
        pixdim = get("pixdim")
        spacing = (float(pixdim),) * 3 if isinstance(pixdim, (int, float)) else tuple(float(v) for v in pixdim)
        if len(spacing) != 3 or not all(SPACING_MM[0] <= v <= SPACING_MM[1] for v in spacing):
            raise ValueError(f"pixdim must be three sizes of {SPACING_MM[0]}..{SPACING_MM[1]} mm")
        return {"spacing": spacing}
    if name in ("Resized", "Resize") and get("spatial_size") is not None:
        return {"spatial_size": get("spatial_size"), "fit": "resize"}
    if name in ("ResizeWithPadOrCropd", "CenterSpatialCropd", "SpatialPadd") and get("spatial_size") is not None:
        return {"spatial_size": get("spatial_size"), "fit": "pad_crop"}
    if name == "ScaleIntensityRanged" and get("b_min", 0.0) == 0.0 and get("b_max", 1.0) == 1.0 and get("clip", False):
        return {"intensity": (ChannelIntensity("window", (float(get("a_min")), float(get("a_max")))),)}
    if name == "NormalizeIntensityd" and not get("nonzero", False) and get("subtrahend") is None:
        return {"intensity": (ChannelIntensity("zscore"),)}
    return None


def _trusted_network(config: BundleConfig) -> nn.Module:
    """``network_def`` built by MONAI's own ConfigParser, expressions evaluated: only with ``--trust-model``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config.source))
    try:
        return parser.get_parsed_content("network_def", instantiate=True)
    except (RuntimeError, KeyError, ValueError, TypeError, ImportError) as error:
        raise InvalidInputError(f"network_def cannot be built ({one_line(error)[:160]})", path=config.source) from None


def _load_weights(network: nn.Module, weights: Path) -> None:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise InvalidInputError(f"weights are not a plain state dict ({one_line(error)[:160]})", path=weights) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise InvalidInputError(f"weights do not fit network_def ({str(error).strip().splitlines()[0]})", path=weights) from None


def _bundle_network(bundle: Path, config: BundleConfig, device: torch.device, trust: bool) -> tuple[nn.Module, Path]:
    """``network_def`` + ``models/model.pt`` when the bundle has them, else ``models/model.ts`` (needs ``trust``)."""
    weights, script = bundle / "models" / "model.pt", bundle / "models" / "model.ts"
    if weights.is_file():
        if config.get("network_def") is None:
            raise InvalidInputError("bundle config has no network_def for models/model.pt", path=config.source)
        network = _trusted_network(config) if trust else config.build_network("network_def")
        if not isinstance(network, nn.Module):
            raise InvalidInputError("network_def does not build a torch module", path=config.source)
        _load_weights(network, weights)
        return network.to(device), weights
    if script.is_file():
        if not trust:
            raise _untrusted_torchscript(script)
        return _jit_load(script, device), script
    raise InvalidInputError("MONAI bundle has neither models/model.pt nor models/model.ts", path=bundle)


def _in_channels(image_format: dict[str, Any], path: Path) -> int:
    count = image_format.get("num_channels", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_CHANNELS:
        raise InvalidInputError(f"num_channels {str(count)[:20]} is not a whole number of 1..{MAX_CHANNELS}", path=path)
    return count


def _channel_names(channel_def: Any, path: Path) -> list[str] | None:
    """The output names of ``metadata.json``'s ``channel_def`` ({"0": "normal", ...}) in channel order."""
    if not isinstance(channel_def, dict) or not channel_def:
        return None
    if not all(isinstance(key, str) and key.isdigit() for key in channel_def):
        raise InvalidInputError("channel_def keys must be channel numbers", path=path)
    return [str(channel_def[key]) for key in sorted(channel_def, key=int)]


def load_bundle(
    bundle: Path, *, device: torch.device, classes: Sequence[str] | None, spatial_size: Sequence[int] | None,
    spacing: Sequence[float] | None, intensity: str | None, trust: bool = False,
) -> LoadedModel:
    """A MONAI bundle classifier; options override what is read from its configs."""
    config = _read_bundle_config(bundle)
    found, unmapped = _mapped_preprocessing(config)
    image_format = config.plain(config.get("_meta_::network_data_format::inputs::image"))
    image_format = image_format if isinstance(image_format, dict) else {}
    size = spatial_size or found.get("spatial_size") or image_format.get("spatial_shape")
    if size is None or not isinstance(size, (list, tuple)) or len(size) != 3 or not all(isinstance(s, int) for s in size):
        raise ConfigError("the bundle does not state a 3D input size; give --spatial-size", path=bundle)
    size = check_spatial_size(tuple(size), path=config.source, what="input size")
    in_channels = _in_channels(image_format, bundle / "configs" / "metadata.json")
    settings = _intensity(intensity, found.get("intensity", (ChannelIntensity("none"),)))
    if len(settings) == 1 and in_channels > 1:
        settings = settings * in_channels
    try:
        preprocessing = PreprocessingConfig(
            spatial_size=size, spacing=tuple(spacing) if spacing is not None else found.get("spacing"),  # type: ignore[arg-type]
            orientation=found.get("orientation", "RAS"), fit=found.get("fit", "resize"),
            channels=tuple(f"channel_{i}" for i in range(in_channels)), intensity=settings,
        )
    except ConfigError as error:
        raise InvalidInputError(f"bundle preprocessing: {error.problem}", path=config.source) from None
    channel_names = _channel_names(config.get("_meta_::network_data_format::outputs::pred::channel_def"),
                                   bundle / "configs" / "metadata.json")
    network, weights = _bundle_network(bundle, config, device, trust)
    network.eval()
    count = _probe(network, in_channels=in_channels, spatial_size=preprocessing.spatial_size, device=device, path=bundle)
    name = config.get("_meta_::name", bundle.name)
    info = {
        "format": "monai-bundle", "name": name if isinstance(name, str) else bundle.name, "weights": weights.name,
        "preprocessing": preprocessing.to_dict(), "unmapped_transforms": unmapped, "trusted": trust,
    }
    return LoadedModel(
        network=network, arch=f"monai-bundle:{type(network).__name__}",
        classes=_classes(count, classes if classes is not None else channel_names, bundle),
        task="classification", preprocessor=Preprocessor(preprocessing), sha256=sha256_file(weights), path=bundle, info=info,
    )
