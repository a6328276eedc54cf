"""Bring-your-own models: TorchScript files and MONAI bundle directories (``configs/`` + ``models/``).

TorchScript is loaded with ``torch.jit.load`` (TorchScript's own restricted format, not Python pickle).
A bundle's network comes from ``network_def`` in ``configs/inference.json|yaml`` through MONAI's
``ConfigParser``, restricted to plain MONAI/torch network classes (no ``$`` expressions, which MONAI
evaluates as Python); its weights are ``models/model.ts`` or ``models/model.pt`` read with
``torch.load(weights_only=True)``. Preprocessing is mapped from the bundle's ``preprocessing`` transforms
and ``metadata.json`` where it can be; options state what the bundle does not.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from medxai.errors import ConfigError, InvalidInputError
from medxai.models.model_dir import LoadedModel, sha256_file
from medxai.models.preprocessing import ChannelIntensity, PreprocessingConfig, Preprocessor, parse_intensity

_ALLOWED_TARGET_PREFIXES = ("monai.networks.", "torch.nn.")
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


def load_torchscript(
    path: Path, *, device: torch.device, classes: Sequence[str] | None, spatial_size: Sequence[int] | None,
    spacing: Sequence[float] | None, intensity: str | None,
) -> LoadedModel:
    """A TorchScript classifier; ``spatial_size`` is required, one ``intensity`` entry per input channel."""
    if spatial_size is None:
        raise ConfigError("a TorchScript model needs its input size stated (--spatial-size)", path=path)
    try:
        network = torch.jit.load(str(path), map_location=device)
    except RuntimeError as error:
        raise InvalidInputError(f"not a loadable TorchScript file ({str(error).strip().splitlines()[0]})", path=path) from None
    settings = _intensity(intensity, (ChannelIntensity(),))
    config = PreprocessingConfig(
        spatial_size=tuple(spatial_size), spacing=None if spacing is None else tuple(spacing),  # type: ignore[arg-type]
        channels=tuple(f"channel_{i}" for i in range(len(settings))), intensity=settings,
    )
    network.eval()
    count = _probe(network, in_channels=config.in_channels, spatial_size=config.spatial_size, device=device, path=path)
    info = {"format": "torchscript", "file": path.name, "preprocessing": config.to_dict()}
    return LoadedModel(
        network=network, arch="torchscript", classes=_classes(count, classes, path), task="classification",
        preprocessor=Preprocessor(config), sha256=sha256_file(path), path=path, info=info,
    )


def _config_files(bundle: Path) -> list[Path]:
    configs = bundle / "configs"
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        if (configs / name).is_file():
            return [configs / name]
    raise InvalidInputError("MONAI bundle has no configs/inference.json (or .yaml)", path=bundle)


def _check_safe(parser: Any, value: Any, where: str, depth: int = 0) -> None:
    """Refuse config content MONAI would execute as code: ``$`` expressions, ``%`` macros, arbitrary targets."""
    if depth > 20:
        raise InvalidInputError(f"{where}: references nest too deeply")
    if isinstance(value, str):
        if value.startswith(("$", "%")):
            raise InvalidInputError(f"{where}: expression {value[:40]!r} would run code; only plain values are accepted")
        if value.startswith("@"):
            _check_safe(parser, parser.get(value[1:]), f"{where} -> {value}", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in ("_requires_", "_mode_", "_disabled_"):
                raise InvalidInputError(f"{where}: key {key!r} is not accepted in a network definition")
            if key == "_target_":
                _check_target(str(item), where)
            else:
                _check_safe(parser, item, f"{where}::{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_safe(parser, item, f"{where}::{index}", depth + 1)


def _check_target(target: str, where: str) -> None:
    if target.startswith(_ALLOWED_TARGET_PREFIXES):
        return
    if "." not in target:
        import monai.networks.nets as nets

        if hasattr(nets, target):
            return
    raise InvalidInputError(f"{where}: network class {target!r} is not a MONAI or torch.nn network")


def _resolved(parser: Any, value: Any) -> Any:
    """A plain value, following ``@`` references; None for anything else (expressions)."""
    for _ in range(20):
        if isinstance(value, str) and value.startswith("@"):
            value = parser.get(value[1:])
        else:
            break
    return None if isinstance(value, str) and value.startswith(("$", "%", "@")) else value


def _mapped_preprocessing(parser: Any) -> tuple[dict[str, Any], list[str]]:
    """Settings read off the bundle's ``preprocessing`` transforms, and the transforms that could not be mapped."""
    transforms = _resolved(parser, parser.get("preprocessing::transforms", []))
    found: dict[str, Any] = {}
    unmapped: list[str] = []
    for item in transforms if isinstance(transforms, list) else []:
        item = _resolved(parser, item)
        name = str(item.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(item, dict) else ""
        get = (lambda key, default=None: _resolved(parser, item.get(key, default))) if isinstance(item, dict) else None
        if name in ("Orientationd", "Orientation") and get("axcodes"):
            found["orientation"] = str(get("axcodes"))
        elif name in ("Spacingd", "Spacing") and get("pixdim") is not None:
            found["spacing"] = tuple(float(v) for v in get("pixdim"))
        elif name in ("Resized", "Resize") and get("spatial_size") is not None:
            found.update(spatial_size=get("spatial_size"), fit="resize")
        elif name in ("ResizeWithPadOrCropd", "CenterSpatialCropd", "SpatialPadd") and get("spatial_size") is not None:
            found.update(spatial_size=get("spatial_size"), fit="pad_crop")
        elif name == "ScaleIntensityRanged" and get("b_min", 0.0) == 0.0 and get("b_max", 1.0) == 1.0 and get("clip", False):
            found["intensity"] = (ChannelIntensity("window", (float(get("a_min")), float(get("a_max")))),)
        elif name == "NormalizeIntensityd" and not get("nonzero", False) and get("subtrahend") is None:
            found["intensity"] = (ChannelIntensity("zscore"),)
        elif name not in _IGNORED_TRANSFORMS:
            unmapped.append(name or repr(item)[:40])
    if isinstance(found.get("spatial_size"), (int, float)):
        found["spatial_size"] = (int(found["spatial_size"]),) * 3
    return found, unmapped


def _bundle_network(bundle: Path, parser: Any, device: torch.device) -> tuple[nn.Module, Path]:
    models = bundle / "models"
    if (models / "model.ts").is_file():
        try:
            return torch.jit.load(str(models / "model.ts"), map_location=device), models / "model.ts"
        except RuntimeError as error:
            raise InvalidInputError(f"not a loadable TorchScript file ({str(error).splitlines()[0]})", path=models / "model.ts") from None
    weights = models / "model.pt"
    if not weights.is_file():
        raise InvalidInputError("MONAI bundle has neither models/model.ts nor models/model.pt", path=bundle)
    definition = parser.get("network_def")
    if definition is None:
        raise InvalidInputError("MONAI bundle config has no network_def", path=bundle)
    _check_safe(parser, definition, f"{bundle.name}/configs: network_def")
    network = parser.get_parsed_content("network_def", instantiate=True)
    if not isinstance(network, nn.Module):
        raise InvalidInputError("network_def does not build a torch module", path=bundle)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise InvalidInputError(f"weights are not a plain state dict ({str(error).strip().splitlines()[0]})", path=weights) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise InvalidInputError(f"weights do not fit network_def ({str(error).strip().splitlines()[0]})", path=weights) from None
    return network.to(device), weights


def load_bundle(
    bundle: Path, *, device: torch.device, classes: Sequence[str] | None, spatial_size: Sequence[int] | None,
    spacing: Sequence[float] | None, intensity: str | None,
) -> LoadedModel:
    """A MONAI bundle classifier; options override what is read from its configs."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(path) for path in _config_files(bundle)])
    metadata_file = bundle / "configs" / "metadata.json"
    if metadata_file.is_file():
        parser.read_meta(str(metadata_file))
    found, unmapped = _mapped_preprocessing(parser)
    image_format = parser.get("_meta_::network_data_format::inputs::image", {}) or {}
    channel_def = parser.get("_meta_::network_data_format::outputs::pred::channel_def", {}) or {}
    size = spatial_size or found.get("spatial_size") or image_format.get("spatial_shape")
    if size is None or len(size) != 3 or not all(isinstance(s, int) for s in size):
        raise ConfigError("the bundle does not state a 3D input size; give --spatial-size", path=bundle)
    in_channels = int(image_format.get("num_channels", 1))
    settings = _intensity(intensity, found.get("intensity", (ChannelIntensity("none"),)))
    if len(settings) == 1 and in_channels > 1:
        settings = settings * in_channels
    config = PreprocessingConfig(
        spatial_size=tuple(size), spacing=tuple(spacing) if spacing is not None else found.get("spacing"),  # type: ignore[arg-type]
        orientation=found.get("orientation", "RAS"), fit=found.get("fit", "resize"),
        channels=tuple(f"channel_{i}" for i in range(in_channels)), intensity=settings,
    )
    network, weights = _bundle_network(bundle, parser, device)
    network.eval()
    count = _probe(network, in_channels=in_channels, spatial_size=config.spatial_size, device=device, path=bundle)
    if classes is None and channel_def:
        classes = [str(channel_def[key]) for key in sorted(channel_def, key=lambda k: int(k))]
    info = {
        "format": "monai-bundle", "name": parser.get("_meta_::name", bundle.name), "weights": weights.name,
        "preprocessing": config.to_dict(), "unmapped_transforms": unmapped,
    }
    return LoadedModel(
        network=network, arch=f"monai-bundle:{type(network).__name__}", classes=_classes(count, classes, bundle),
        task="classification", preprocessor=Preprocessor(config), sha256=sha256_file(weights), path=bundle, info=info,
    )
