"""The one interface every attribution method implements: ``attribute(inputs, target) -> heatmap``.

A method works on the *model grid*: ``inputs`` is the preprocessed tensor ``(1, C, X, Y, Z)`` and the
heatmap has shape ``(1, C, X, Y, Z)`` (input-space methods) or ``(1, 1, X, Y, Z)`` (CAM methods),
float32, raw values (no normalisation). Mapping to the scan's own grid is the engine's job.
"""
from __future__ import annotations

import contextlib
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Literal

import torch
from torch import nn

from medxai.attribution.memory import auto_batch_size
from medxai.attribution.model_surgery import make_explainable, surgery_applied
from medxai.attribution.targets import BoundTarget, Target
from medxai.errors import ConfigError

Sign = Literal["signed", "positive"]


@dataclass(frozen=True)
class Execution:
    """Where and how a method runs.

    ``batch_size``: samples per internal forward pass (IG steps, SmoothGrad samples, occlusion windows),
    or ``"auto"`` to fit the memory available now. ``spacing_mm``: the model grid's voxel size, which
    turns the millimetre options of occlusion and supervoxels into voxels. ``precision="auto"`` uses
    bfloat16/float16 autocast on CUDA and falls back to float32 when that fails or is not finite.
    """

    device: str = "cpu"
    batch_size: int | Literal["auto"] = "auto"
    seed: int = 0
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    precision: Literal["auto", "float32"] = "auto"


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generators for the duration of one call without disturbing the caller's state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # Only the generators this call uses: torch.manual_seed also queues lazy seeding of every
        # uninitialised accelerator backend, recording a stack trace each time (0.5 ms a call on CPU).
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class AttributionMethod(ABC):
    """Base of every method: one small subclass per method, one verb :meth:`attribute`.

    Subclasses set ``name``, ``sign`` (``"signed"`` or ``"positive"``), ``needs_gradients`` and
    ``reference`` (the paper), keep their options in ``self.params`` (recorded for provenance) and
    implement :meth:`_attribute`. Run-time facts (batch size used, convergence delta, precision) land
    in ``self.diagnostics`` after each call.
    """

    name: ClassVar[str]
    sign: ClassVar[Sign]
    needs_gradients: ClassVar[bool] = True
    hooks_every_module: ClassVar[bool] = False  # True: run on make_explainable's copy (DeepLIFT, LRP, ...)
    reference: ClassVar[str]
    # Memory of one sample's pass in units of memory.per_sample_bytes (backward, or forward-only for methods
    # without gradients), measured as the peak RSS a method adds (benchmarks/memory.py) on the tiny CNN at
    # 256^3 and ResNet18 and DenseNet121 at 64^3: 0.9-1.1 for a plain gradient pass; overridden where larger.
    pass_memory: ClassVar[float] = 1.0
    batches: ClassVar[bool] = False  # True: runs Execution.batch_size samples per pass (IG, SmoothGrad, occlusion)

    def __init__(self, network: nn.Module, *, execution: Execution | None = None) -> None:
        self.execution = execution or Execution()
        self.device = torch.device(self.execution.device)
        network = make_explainable(network) if self.hooks_every_module else network
        self.network = network.to(self.device).eval()
        self.params: dict[str, Any] = {}
        self.diagnostics: dict[str, Any] = {}

    @classmethod
    def memory_needed(cls, *, backward_bytes: int, forward_bytes: int, batch_size: int) -> int:
        """Estimated bytes of the method's largest pass, from the per-sample costs of the model's passes."""
        per_sample = backward_bytes if cls.needs_gradients else forward_bytes
        return int(cls.pass_memory * per_sample * (batch_size if cls.batches else 1))

    def batch_size(self, model: nn.Module, inputs: torch.Tensor) -> int:
        """The internal batch size: the fixed one, or one measured to fit free memory."""
        if self.execution.batch_size == "auto":
            return auto_batch_size(model, inputs)
        if int(self.execution.batch_size) < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.execution.batch_size}")
        return int(self.execution.batch_size)

    def attribute(self, inputs: torch.Tensor, target: Target) -> torch.Tensor:
        """The heatmap of ``target`` for ``inputs`` ``(1, C, X, Y, Z)`` on the model grid, float32."""
        if inputs.ndim != 5 or inputs.shape[0] != 1:
            raise ConfigError(f"attribution expects one volume shaped (1, C, X, Y, Z), got {tuple(inputs.shape)}")
        if hasattr(inputs, "as_tensor"):  # a MONAI MetaTensor: attribute plain tensors
            inputs = inputs.as_tensor()
        inputs = inputs.detach().to(self.device, torch.float32)
        bound = target.bind(self.network, inputs)
        self.diagnostics = {"target": dict(bound.description), "model_surgery": surgery_applied(self.network)}
        dtype = _autocast_dtype(self.device) if self.execution.precision == "auto" else None
        result = None
        if dtype is not None:
            try:
                result = self._run(bound, inputs, dtype)
            except RuntimeError as error:  # an operation without a half-precision kernel
                self.diagnostics["autocast_error"] = str(error).splitlines()[0]
            if result is not None and not bool(torch.isfinite(result).all()):
                self.diagnostics["autocast_error"] = "non-finite values in half precision"
                result = None
        if result is None:
            dtype = None
            result = self._run(bound, inputs, None)
        self.diagnostics["precision"] = str(dtype).replace("torch.", "") if dtype else "float32"
        return result

    def _run(self, bound: BoundTarget, inputs: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with _seeded(self.execution.seed, self.device), autocast, warnings.catch_warnings():
            # Captum warns on every call that it sets requires_grad and registers hooks; expected here.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\..*")
            heatmap = self._attribute(bound, inputs)
        return heatmap.detach().to(torch.float32)

    @abstractmethod
    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        """The raw heatmap of ``model`` (output ``(N, 1)``, use Captum ``target=0``) for ``inputs``."""
