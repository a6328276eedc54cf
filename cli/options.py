"""The option vocabulary the commands share: one spelling, one default and one help text per option, and
the one way a command turns the model options into loaded models."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import typer

DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N."
TRUST_HELP = ("Load TorchScript files and MONAI bundles whose configs contain code; never needed for medxai model "
              "directories.")


def out_option(help: str, *, required: bool = True, default: Path | None = None) -> Any:
    """``-o/--out`` (``--output`` is a hidden alias, see :data:`cli.main.HIDDEN_ALIASES`)."""
    return typer.Option(... if required else default, "-o", "--out", help=help)


def device_option() -> Any:
    return typer.Option("auto", "--device", help=DEVICE_HELP)


def trust_option() -> Any:
    return typer.Option(False, "--trust-model", help=TRUST_HELP)


def classes_option() -> Any:
    return typer.Option(None, "--classes", help="Class names, comma-separated (TorchScript files and bundles).")


def spatial_size_option() -> Any:
    return typer.Option(None, "--spatial-size", help="Model input size N or X,Y,Z voxels (TorchScript files and bundles).")


def spacing_option() -> Any:
    return typer.Option(None, "--spacing", help="Resample to X,Y,Z mm before the model (TorchScript files and bundles).")


def intensity_option() -> Any:
    return typer.Option(None, "--intensity", help="zscore, none or window:LOW,HIGH (TorchScript files and bundles).")


def overlap_option() -> Any:
    return typer.Option(None, "--overlap", min=0.0, max=0.95,
                        help="Patch-trained models: overlap of the sliding windows (default: the model's record, 0.25).")


def blend_option() -> Any:
    return typer.Option(None, "--blend", help="Patch-trained models: gaussian or constant blending of the windows "
                        "(default: the model's record).")


def sw_batch_size_option() -> Any:
    return typer.Option(None, "--sw-batch-size", min=1, help="Patch-trained models: windows per forward pass (memory).")


def parse_spatial_size(text: str) -> tuple[int, int, int]:
    """``64`` or ``64,64,32`` -> three sizes."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected N or X,Y,Z voxel counts, got {text!r}") from None
    if len(sizes) not in (1, 3) or min(sizes) < 1:
        raise typer.BadParameter(f"expected N or X,Y,Z voxel counts, got {text!r}")
    return sizes * 3 if len(sizes) == 1 else sizes  # type: ignore[return-value]


def parse_spacing(text: Optional[str]) -> Optional[tuple[float, float, float]]:
    """``1.5`` or ``1,1,2.5`` (mm) -> three spacings; None keeps the native spacing."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected S or X,Y,Z in mm, got {text!r}") from None
    if len(values) not in (1, 3) or min(values) <= 0:
        raise typer.BadParameter(f"expected S or X,Y,Z in mm, got {text!r}")
    return values * 3 if len(values) == 1 else values  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelOptions:
    """What every model-loading command takes besides the model path (the shared options above)."""

    device: str = "auto"
    trust: bool = False
    classes: Optional[str] = None
    spatial_size: Optional[str] = None
    spacing: Optional[str] = None
    intensity: Optional[str] = None
    overlap: Optional[float] = None
    blend: Optional[str] = None
    sw_batch_size: Optional[int] = None

    def load(self, paths: Sequence[Path]) -> list[Any]:
        """Load model directories, TorchScript files or MONAI bundles (each a ``LoadedModel``)."""
        from medxai.models.loaded import resolve_device, with_window_options
        from medxai.models.model_dir import load_model

        classes = None if self.classes is None else [name.strip() for name in self.classes.split(",") if name.strip()]
        size = None if self.spatial_size is None else parse_spatial_size(self.spatial_size)
        return [with_window_options(load_model(path, device=resolve_device(self.device), classes=classes,
                                               spatial_size=size, spacing=parse_spacing(self.spacing),
                                               intensity=self.intensity, trust=self.trust),
                                    overlap=self.overlap, blend=self.blend, sw_batch_size=self.sw_batch_size)
                for path in paths]


# The options of :class:`ModelOptions` as each command declares them: (annotation, Typer option).
_MODEL_OPTIONS: dict[str, tuple[Any, Callable[[], Any]]] = {
    "device": (str, device_option), "trust": (bool, trust_option), "classes": (Optional[str], classes_option),
    "spatial_size": (Optional[str], spatial_size_option), "spacing": (Optional[str], spacing_option),
    "intensity": (Optional[str], intensity_option), "overlap": (Optional[float], overlap_option),
    "blend": (Optional[str], blend_option), "sw_batch_size": (Optional[int], sw_batch_size_option),
}


def with_model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` (taking ``model_options: ModelOptions``) as a Typer command with the shared model options
    added to its signature: one declaration for every command that loads a model (Typer reads the options
    from the signature, so they are declared there rather than repeated in each command)."""
    signature = inspect.signature(command, eval_str=True)
    kept = [parameter for name, parameter in signature.parameters.items() if name != "model_options"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option(), annotation=annotation)
             for name, (annotation, option) in _MODEL_OPTIONS.items()]

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        chosen = ModelOptions(**{name: values.pop(name) for name in _MODEL_OPTIONS})
        return command(**values, model_options=chosen)

    run.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
    run.__annotations__ = {**{p.name: p.annotation for p in kept}, **{n: a for n, (a, _) in _MODEL_OPTIONS.items()}}
    return run
