"""The model directory: ``weights.safetensors`` + ``medxai-model.json``, written atomically, checked on load.

No pickle is ever executed: weights are safetensors (a flat tensor format), verified against the SHA-256
recorded in ``medxai-model.json`` before they are parsed, and the description is checked for types and
plausible sizes before any network or tensor is built. :func:`load_model` also opens the models hospitals
already have (TorchScript files, MONAI bundles, see :mod:`medxai.models.byo`) and refuses anything else.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from medxai import __version__
from medxai.errors import ConfigError, InvalidInputError
from medxai.io.data_files import read_data_file
from medxai.models.preprocessing import PreprocessingConfig, Preprocessor
from medxai.models.registry import TASKS, build_network, get_architecture
from medxai.models.loaded import (
    MAX_CHANNELS, MAX_CLASSES, SPACING_MM, LoadedModel, check_spatial_size, is_whole_number, resolve_device,
    sha256_bytes, windowed,
)
from medxai.models.sliding import SlidingWindow
from medxai.models.weakseg.base import GlobalMaxPoolingNetwork

MODEL_JSON = "medxai-model.json"
WEIGHTS = "weights.safetensors"
FORMAT = "medxai-model/1"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")


def versions() -> dict[str, str]:
    import monai
    import safetensors

    return {
        "medxai": __version__, "torch": torch.__version__, "monai": monai.__version__,
        "safetensors": safetensors.__version__, "python": platform.python_version(),
    }


def check_model_destination(path: str | Path) -> Path:
    """``path`` may receive a model directory: absent, empty or a model directory (ConfigError otherwise).
    Called before training, so a wrong ``-o`` costs nothing."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError("exists and is not a folder", path=target)
    if target.is_dir() and any(target.iterdir()) and not (target / MODEL_JSON).is_file():
        raise ConfigError(f"exists, is not empty and holds no {MODEL_JSON}; refusing to overwrite it", path=target)
    return target


@contextlib.contextmanager
def staged_directory(path: str | Path) -> Iterator[Path]:
    """Build a directory in a hidden sibling, then swap it into place; on error nothing is left behind.

    An existing ``path`` is replaced only when it is empty or a model directory (never another folder)."""
    target = check_model_destination(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a model directory gets the usual permissions
    try:
        yield staging
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_model_files(
    folder: Path, *, network: nn.Module, arch: str, classes: Sequence[str], task: str,
    preprocessing: PreprocessingConfig, training: Mapping[str, Any], metrics: Mapping[str, Any],
    sliding_window: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write weights and ``medxai-model.json`` into ``folder`` (no atomicity; see :func:`save_model_dir`).

    ``sliding_window`` (a network trained on patches): ``{"patch_size": [x, y, z] voxels, "spacing_mm":
    [sx, sy, sz], "overlap": 0.25, "blend": "gaussian"}`` (:class:`~medxai.models.sliding.SlidingWindow`);
    whole scans are then run by sliding windows at that spacing. None: a model of whole volumes."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r} (expected {', '.join(TASKS)})")
    window = None if sliding_window is None else SlidingWindow.from_record(sliding_window)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in network.state_dict().items()}
    blob = save_safetensors(state, metadata={"format": FORMAT})  # one key: safetensors orders keys arbitrarily
    (folder / WEIGHTS).write_bytes(blob)
    arch_kwargs: dict[str, Any] = {
        "in_channels": preprocessing.in_channels, "num_classes": len(classes),
        "spatial_size": list(preprocessing.spatial_size),
    }
    if isinstance(network, GlobalMaxPoolingNetwork):
        # the pooling decides the logits from the maps but has no weights: record it, so that a later change
        # of the architecture's default cannot silently change a saved model's predictions
        arch_kwargs["pooling_sharpness"] = network.sharpness
        arch_kwargs["negative_class"] = network.negative_class  # a flat map's index: its level is a weight
    info = {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "classes": list(classes),
        "task": task,
        "preprocessing": preprocessing.to_dict(),
        "training": dict(training),
        "metrics": dict(metrics),
        "versions": versions(),
        "weights": {"file": WEIGHTS, "sha256": sha256_bytes(blob)},
    }
    if window is not None:
        info["sliding_window"] = window.to_record()
    (folder / MODEL_JSON).write_text(json.dumps(info, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return info


def save_model_dir(
    path: str | Path, *, network: nn.Module, arch: str, classes: Sequence[str], task: str,
    preprocessing: PreprocessingConfig, training: Mapping[str, Any], metrics: Mapping[str, Any],
    extra_files: Mapping[str, str] | None = None, sliding_window: Mapping[str, Any] | None = None,
) -> None:
    """Write a complete model directory atomically (``extra_files``: name -> text, e.g. ``metrics.csv``;
    ``sliding_window``: see :func:`write_model_files`)."""
    with staged_directory(path) as staging:
        write_model_files(
            staging, network=network, arch=arch, classes=classes, task=task,
            preprocessing=preprocessing, training=training, metrics=metrics, sliding_window=sliding_window,
        )
        for name, text in (extra_files or {}).items():
            (staging / Path(name).name).write_text(text, encoding="utf-8")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives hold a ``code/`` folder; ``torch.save`` pickles (also zip files) do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in f"/{name}" for name in archive.namelist())


def _refuse_file(path: Path) -> InvalidInputError:
    if path.name.lower().endswith(".safetensors"):
        return InvalidInputError(f"bare weights without their architecture; pass the folder holding {MODEL_JSON}", path=path)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if path.suffix.lower() in PICKLE_SUFFIXES or zipfile.is_zipfile(path) or head[:1] == b"\x80":
        return InvalidInputError(
            "is a pickled PyTorch checkpoint; medxai never unpickles model files (use a medxai model "
            "directory, a MONAI bundle, or a TorchScript file from torch.jit.save with --trust-model)", path=path,
        )
    return InvalidInputError("not a model (expected a medxai model directory, a TorchScript file or a MONAI bundle)", path=path)


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu", classes: Sequence[str] | None = None,
    spatial_size: Sequence[int] | None = None, spacing: Sequence[float] | None = None, intensity: str | None = None,
    trust: bool = False,
) -> LoadedModel:
    """Open a medxai model directory, a TorchScript file or a MONAI bundle directory for inference.

    ``classes``/``spatial_size``/``spacing``/``intensity`` state the preprocessing of TorchScript files and
    bundles where the file does not (they are refused for medxai directories, which record their own).
    ``trust`` allows what runs code stored with the model: TorchScript, and MONAI's own bundle parser."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError("no such model file or folder", path=path)
    overrides = {"classes": classes, "spatial_size": spatial_size, "spacing": spacing, "intensity": intensity}
    given = sorted(name for name, value in overrides.items() if value is not None)
    if path.is_dir() and (path / MODEL_JSON).is_file():
        if given:
            raise ConfigError(f"{', '.join(given)} cannot override a medxai model directory's recorded preprocessing")
        return _load_medxai_dir(path, resolve_device(device))
    from medxai.models import byo

    if path.is_dir():
        if (path / "configs").is_dir():
            return byo.load_bundle(path, device=resolve_device(device), trust=trust, **overrides)
        raise InvalidInputError(f"not a model directory: no {MODEL_JSON} (nor a MONAI bundle configs/ folder)", path=path)
    if is_torchscript_archive(path):
        return byo.load_torchscript(path, device=resolve_device(device), trust=trust, **overrides)
    raise _refuse_file(path)


def _check_description(info: Any, path: Path) -> None:
    """Types and plausible bounds of what sizes the network and its input (InvalidInputError naming ``path``)."""

    def require(ok: bool, problem: str) -> None:
        if not ok:
            raise InvalidInputError(problem, path=path)

    required = ("format", "arch", "arch_kwargs", "classes", "task", "preprocessing", "weights")
    missing = [key for key in required if not isinstance(info, dict) or key not in info]
    require(not missing, f"model description lacks {', '.join(missing)}")
    require(info["format"] == FORMAT, f"unsupported model format {str(info['format'])[:40]!r} (expected {FORMAT})")
    require(isinstance(info["arch"], str), "arch must be an architecture name")
    try:
        get_architecture(info["arch"])
    except ConfigError as error:
        raise InvalidInputError(error.problem, path=path) from None
    require(info["task"] in TASKS, f"task must be one of {', '.join(TASKS)}")
    classes, kwargs, preprocessing = info["classes"], info["arch_kwargs"], info["preprocessing"]
    require(isinstance(classes, list) and 2 <= len(classes) <= MAX_CLASSES and all(isinstance(c, str) for c in classes),
            f"classes must be a list of 2..{MAX_CLASSES} names")
    require(all(isinstance(info[key], dict) for key in ("arch_kwargs", "preprocessing", "weights")),
            "arch_kwargs, preprocessing and weights must be JSON objects")
    require(is_whole_number(kwargs.get("num_classes")) and kwargs["num_classes"] == len(classes),
            f"arch_kwargs.num_classes must be a whole number equal to the {len(classes)} classes listed")
    require(is_whole_number(kwargs.get("in_channels")) and 1 <= kwargs["in_channels"] <= MAX_CHANNELS,
            f"arch_kwargs.in_channels must be a whole number of 1..{MAX_CHANNELS}")
    spacing = preprocessing.get("spacing")
    require(spacing is None or (isinstance(spacing, list) and len(spacing) == 3 and all(
        isinstance(v, (int, float)) and SPACING_MM[0] <= v <= SPACING_MM[1] for v in spacing)),
        f"preprocessing.spacing must be null or three sizes of {SPACING_MM[0]}..{SPACING_MM[1]} mm")
    check_spatial_size(kwargs.get("spatial_size"), path=path, what="arch_kwargs.spatial_size")
    check_spatial_size(preprocessing.get("spatial_size"), path=path, what="preprocessing.spatial_size")
    if info.get("sliding_window") is not None:
        try:
            SlidingWindow.from_record(info["sliding_window"])
        except ConfigError as error:
            raise InvalidInputError(error.problem, path=path) from None


def _read_info(folder: Path) -> dict[str, Any]:
    info = read_data_file(folder / MODEL_JSON, what="model description")
    _check_description(info, folder / MODEL_JSON)
    return info


def _load_medxai_dir(folder: Path, device: torch.device) -> LoadedModel:
    info = _read_info(folder)
    weights_path = folder / WEIGHTS
    if not weights_path.is_file():
        raise InvalidInputError("weights file is missing", path=weights_path)
    blob = weights_path.read_bytes()
    digest = sha256_bytes(blob)
    if digest != info["weights"].get("sha256"):
        raise InvalidInputError(
            f"checksum mismatch: weights were changed after the model was saved (sha256 {digest[:12]}..., "
            f"recorded {str(info['weights'].get('sha256'))[:12]}...)", path=weights_path,
        )
    try:
        spec = get_architecture(info["arch"])
        preprocessing = PreprocessingConfig.from_dict(info["preprocessing"])
        kwargs = info["arch_kwargs"]
        network = build_network(
            info["arch"], in_channels=int(kwargs["in_channels"]), num_classes=int(kwargs["num_classes"]),
            spatial_size=tuple(kwargs["spatial_size"]),
        )
        if isinstance(network, GlobalMaxPoolingNetwork) and "pooling_sharpness" in kwargs:
            network.set_sharpness(kwargs["pooling_sharpness"])
        if isinstance(network, GlobalMaxPoolingNetwork) and kwargs.get("negative_class") is not None:
            index = int(kwargs["negative_class"])
            if not 0 <= index < int(kwargs["num_classes"]):
                raise ValueError(f"negative_class {index} is not one of the {kwargs['num_classes']} classes")
            network.set_negative_class(index)
    except (ConfigError, KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(getattr(error, "problem", str(error)), path=folder / MODEL_JSON) from None
    try:
        network.load_state_dict(load_safetensors(blob), strict=True)
    except (SafetensorError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0]
        raise InvalidInputError(f"weights do not fit architecture {info['arch']!r} ({first})", path=weights_path) from None
    network.to(device).eval()
    model = LoadedModel(
        network=network, arch=info["arch"], classes=[str(c) for c in info["classes"]], task=info["task"],
        preprocessor=Preprocessor(preprocessing), sha256=digest, path=folder, info=info, target_layer=spec.target_layer,
    )
    if info.get("sliding_window") is None:
        return model
    return windowed(model, SlidingWindow.from_record(info["sliding_window"]))
