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
from typing import Any, Callable, ClassVar, Iterator, Literal

import torch
from torch import nn

from medxai.attribution.memory import auto_batch_size
from medxai.attribution.model_surgery import make_explainable, surgery_applied
from medxai.attribution.targets import BoundTarget, Target
from medxai.attribution.timing import Passes
from medxai.errors import ConfigError

Sign = Literal["signed", "positive"]
MethodProgress = Callable[[int, int], None]  # (units done, units planned): windows, samples, steps


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


def input_key(inputs: torch.Tensor) -> tuple[Any, ...]:
    """A key of ``inputs``' storage, shape, device, version and content (its sum), for what a method works out once
    per input (its plan, occlusion's windows, the supervoxels): a freed tensor's address can come back holding
    another input (max-sensitivity's perturbed copies), so the address alone is not enough."""
    return (inputs.data_ptr(), tuple(inputs.shape), str(inputs.device), inputs._version,
            float(inputs.detach().double().sum()))


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
        self._plan: tuple[tuple[Any, ...], Passes] | None = None

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

    def pass_batch(self, count: int) -> int:
        """Samples per pass for ``count`` units of work: the execution's batch for batching methods, else 1."""
        if not self.batches or self.execution.batch_size == "auto":
            return 1
        return max(1, min(int(self.execution.batch_size), count))

    def planned_passes(self, inputs: torch.Tensor) -> Passes:
        """The passes :meth:`attribute` will run on ``inputs`` ``(1, C, X, Y, Z)``, for the time pre-flight and the
        progress; methods that run more than one pass say how many (windows, samples, steps)."""
        return Passes(count=1, unit="pass", forward=0 if self.needs_gradients else 1, backward=int(self.needs_gradients))

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The half precision this method first tries (CUDA with ``precision="auto"``), None for float32."""
        return _autocast_dtype(self.device) if self.execution.precision == "auto" else None

    def attribute(self, inputs: torch.Tensor, target: Target, *, progress: MethodProgress | None = None) -> torch.Tensor:
        """The heatmap of ``target`` for ``inputs`` ``(1, C, X, Y, Z)`` on the model grid, float32.

        ``progress(done, planned)`` is called as the method's units of work (``planned_passes``) go through
        the network: each forward call of the network is counted by a forward hook, so Captum's loops report too."""
        if inputs.ndim != 5 or inputs.shape[0] != 1:
            raise ConfigError(f"attribution expects one volume shaped (1, C, X, Y, Z), got {tuple(inputs.shape)}")
        if hasattr(inputs, "as_tensor"):  # a MONAI MetaTensor: attribute plain tensors
            inputs = inputs.as_tensor()
        inputs = inputs.detach().to(self.device, torch.float32)
        bound = target.bind(self.network, inputs)
        self.diagnostics = {"target": dict(bound.description), "model_surgery": surgery_applied(self.network)}
        with self._counting(bound, inputs, progress):
            return self._attribute_with_fallback(bound, inputs)

    def plan(self, inputs: torch.Tensor) -> Passes:
        """:meth:`planned_passes` of ``inputs``, worked out once per input tensor."""
        key = input_key(inputs)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, self.planned_passes(inputs))
        return self._plan[1]

    @contextlib.contextmanager
    def _counting(self, model: nn.Module, inputs: torch.Tensor, progress: MethodProgress | None) -> Iterator[None]:
        """Report ``progress`` from a forward hook on ``model``: samples seen, less the clean passes that come
        before the units (``Passes.samples - Passes.count``), capped at the units planned."""
        if progress is None:
            yield
            return
        plan = self.plan(inputs)
        overhead, seen = plan.samples - plan.count, 0

        def count(_module: nn.Module, args: tuple[Any, ...], _output: object) -> None:
            nonlocal seen
            if args and isinstance(args[0], torch.Tensor):
                seen += int(args[0].shape[0])
                progress(min(plan.count, max(0, seen - overhead)), plan.count)

        progress(0, plan.count)
        handle = model.register_forward_hook(count)
        try:
            yield
        finally:
            handle.remove()
        progress(plan.count, plan.count)

    def _attribute_with_fallback(self, bound: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        dtype = self.autocast_dtype
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
