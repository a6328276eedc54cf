"""Occlusion: the drop of the target when a 3D window of the input is replaced by a baseline value.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014. The window and
stride are given in millimetres and turned into voxels with the model grid's spacing, so the same
options mean the same physical size on anisotropic scans. By default (no ``window_mm``) the window scales
with what the model sees: 16 mm, but at least 1/5 of the model grid along each axis, with a stride of half
the window, so a large field of view on a coarse model grid gives about 9 positions per axis (at most about
729 windows) instead of tens of thousands (a 512x512x48 chest CT resized to 64^3 has 5.6 mm voxels: a fixed
16 mm window and 8 mm stride became 3-voxel windows at 1-voxel strides, 119,164 windows). On a CT-sized
phantom through the demo's model (48^3), windows of 1/8 of the grid (3,375 windows, 2,250 in the body) took
23x and 1/6 (1,331, 1,059 in the body) 18x integrated gradients' default time, against a goal of 20x on a
loaded machine; 1/5 keeps the 16 mm window of the 1 mm phantoms (343 windows at 64^3, as before).

Without a region of interest this is Captum's ``Occlusion``. With one (``roi``: a mask on the model grid, or
``"body"``: the scan's foreground, :func:`medxai.metrics.sanity.foreground`), windows that hold no ROI voxel
are skipped entirely (air costs nothing); Captum has no such option, so that case is a hand-written batched
sliding window over the same window positions as Captum's: inside the ROI the result equals Captum's,
outside it is zero. How many windows ran and why is in the diagnostics.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from captum.attr import Occlusion
from torch import nn

from medxai.attribution.base import AttributionMethod, Execution, input_key
from medxai.attribution.targets import BoundTarget
from medxai.attribution.timing import Passes
from medxai.errors import ConfigError

DEFAULT_WINDOW_MM = 16.0
WINDOWS_PER_AXIS = 5  # a default window spans at least 1/5 of the model grid along each axis
Roi = torch.Tensor | str | None  # a model-grid mask, "body", or None (the whole grid)


def window_voxels(size_mm: float, spacing_mm: tuple[float, float, float], shape: tuple[int, ...]) -> tuple[int, ...]:
    """A length in mm as a voxel count per axis (at least 1, at most the axis length)."""
    return tuple(max(1, min(int(n), round(size_mm / s))) for s, n in zip(spacing_mm, shape))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Captum's window positions along one axis: ceil((length - window) / stride) + 1 starts."""
    return [i * stride for i in range(math.ceil((length - window) / stride) + 1)]


def default_window(spacing_mm: tuple[float, float, float], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The automatic window: 16 mm, but at least 1/``WINDOWS_PER_AXIS`` of each axis of the model grid."""
    return tuple(max(size, min(int(n), math.ceil(n / WINDOWS_PER_AXIS)))
                 for size, n in zip(window_voxels(DEFAULT_WINDOW_MM, spacing_mm, shape), shape))


def region_of_interest(roi: Roi, inputs: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """The ROI of ``roi`` on the model grid of ``inputs`` ``(1, C, X, Y, Z)`` (None: the whole grid) and what it is:
    ``given``, ``body`` (the foreground; the whole grid when the body fills it) or ``none``."""
    if roi is None or (isinstance(roi, str) and roi == "none"):
        return None, "none"
    if isinstance(roi, str):
        if roi != "body":
            raise ConfigError(f"roi must be a mask, 'body' or 'none', got {roi!r}")
        from medxai.metrics.sanity import foreground

        body = torch.from_numpy(foreground(inputs[0])).to(inputs.device)
        return (None, "none (the body fills the model grid)") if bool(body.all()) else (body, "body")
    mask = roi.to(device=inputs.device, dtype=torch.bool)
    if tuple(mask.shape) != tuple(inputs.shape[2:]):
        raise ConfigError(f"ROI shape {tuple(mask.shape)} differs from the model grid {tuple(inputs.shape[2:])}")
    return mask, "given"


@dataclass(frozen=True)
class WindowLayout:
    """The windows occlusion runs on one input: their size and stride (voxels), the ROI and the boxes kept."""

    window: tuple[int, ...]
    stride: tuple[int, ...]
    positions: int  # windows on the whole grid
    boxes: tuple[tuple[slice, ...], ...] | None  # those touching the ROI; None: all (no ROI)
    roi: torch.Tensor | None
    roi_kind: str

    @property
    def count(self) -> int:
        return self.positions if self.boxes is None else len(self.boxes)

    def describe(self, shape: tuple[int, ...], spacing_mm: tuple[float, float, float]) -> str:
        """``729 windows: 13x13x13 voxels (73x73x49 mm), stride 7x7x7, on the 64x64x64 model grid; 512 touch the body and ran``."""
        grid = "x".join(str(n) for n in shape)
        size_mm = "x".join(f"{w * s:.0f}" for w, s in zip(self.window, spacing_mm))
        text = (f"{self.positions:,} windows: {'x'.join(map(str, self.window))} voxels ({size_mm} mm), stride "
                f"{'x'.join(map(str, self.stride))}, on the {grid} model grid")
        if self.boxes is not None:
            text += f"; {self.count:,} touch the {'body' if self.roi_kind == 'body' else 'ROI'} and ran"
        return text


class OcclusionMethod(AttributionMethod):
    """Mean output drop over the windows covering each voxel (signed; positive = evidence for the target)."""

    name = "occlusion"
    sign = "signed"
    needs_gradients = False
    reference = "Zeiler & Fergus 2014, arXiv:1311.2901"
    batches = True
    pass_memory = 2.0  # per occluded copy, of the forward-only estimate: measured 0.9-1.9 (tiny CNN to DenseNet121)

    def __init__(
        self,
        network: nn.Module,
        *,
        execution: Execution | None = None,
        window_mm: float | None = None,
        stride_mm: float | None = None,
        baseline: float = 0.0,
        roi: Roi = None,
    ) -> None:
        super().__init__(network, execution=execution)
        if (window_mm is not None and window_mm <= 0) or (stride_mm is not None and stride_mm <= 0) or (
                window_mm is not None and stride_mm is not None and stride_mm > window_mm):
            raise ConfigError(f"occlusion needs 0 < stride_mm <= window_mm, got window {window_mm}, stride {stride_mm}")
        self.params = {"window_mm": "auto" if window_mm is None else window_mm,
                       "stride_mm": "half the window" if stride_mm is None else stride_mm, "baseline": float(baseline),
                       "roi": roi if isinstance(roi, str) else ("none" if roi is None else "given")}
        self.roi = roi
        self._layout: tuple[tuple[object, ...], WindowLayout] | None = None

    def layout(self, inputs: torch.Tensor) -> WindowLayout:
        """The windows of ``inputs`` ``(1, C, X, Y, Z)``: sizes from the options (or the model grid), kept where they
        touch the ROI; worked out once per input tensor."""
        key = input_key(inputs)
        if self._layout is None or self._layout[0] != key:
            self._layout = (key, self._make_layout(inputs))
        return self._layout[1]

    def _make_layout(self, inputs: torch.Tensor) -> WindowLayout:
        spatial, spacing = tuple(inputs.shape[2:]), self.execution.spacing_mm
        window_mm, stride_mm = self.params["window_mm"], self.params["stride_mm"]
        window = default_window(spacing, spatial) if window_mm == "auto" else window_voxels(window_mm, spacing, spatial)
        if stride_mm == "half the window":
            stride = tuple(max(1, math.ceil(w / 2)) for w in window)
        else:
            stride = tuple(min(w, s) for w, s in zip(window, window_voxels(stride_mm, spacing, spatial)))
        starts = [window_starts(n, w, s) for n, w, s in zip(spatial, window, stride)]
        positions = math.prod(len(axis) for axis in starts)
        roi, kind = region_of_interest(self.roi, inputs)
        if roi is None:
            return WindowLayout(window, stride, positions, None, None, kind)
        boxes = (tuple(slice(a, a + w) for a, w in zip(corner, window)) for corner in itertools.product(*starts))
        kept = tuple(box for box in boxes if bool(roi[box].any()))
        return WindowLayout(window, stride, positions, kept, roi, kind)

    def planned_passes(self, inputs: torch.Tensor) -> Passes:
        """The clean pass, then one forward pass per window."""
        windows = self.layout(inputs).count
        return Passes(count=windows, unit="windows", forward=1 + windows, batch=self.pass_batch(windows))

    def _attribute(self, model: BoundTarget, inputs: torch.Tensor) -> torch.Tensor:
        layout = self.layout(inputs)
        batch = self.batch_size(model, inputs)
        self.diagnostics.update({"window_voxels": layout.window, "stride_voxels": layout.stride, "perturbations_per_eval": batch,
                                 "windows_in_grid": layout.positions, "windows_evaluated": layout.count, "roi": layout.roi_kind,
                                 "windows": layout.describe(tuple(inputs.shape[2:]), self.execution.spacing_mm)})
        if layout.boxes is None:
            channels = inputs.shape[1]
            return Occlusion(model).attribute(
                inputs, sliding_window_shapes=(channels, *layout.window), strides=(channels, *layout.stride),
                baselines=self.params["baseline"], target=0, perturbations_per_eval=batch,
            )
        return self._occlude_roi(model, inputs, layout, batch)

    def _occlude_roi(self, model: BoundTarget, inputs: torch.Tensor, layout: WindowLayout, batch: int) -> torch.Tensor:
        boxes, roi = layout.boxes or (), layout.roi
        total = torch.zeros(inputs.shape[2:], device=inputs.device)
        count = torch.zeros_like(total)
        with torch.no_grad():
            reference = model(inputs)[0, 0]
            for first in range(0, len(boxes), batch):
                chunk = boxes[first : first + batch]
                occluded = inputs.expand(len(chunk), *inputs.shape[1:]).clone()
                for row, box in enumerate(chunk):
                    occluded[(row, slice(None), *box)] = self.params["baseline"]
                drops = reference - model(occluded)[:, 0]
                for drop, box in zip(drops, chunk):
                    total[box] += drop
                    count[box] += 1
        heatmap = torch.where(roi & (count > 0), total / count.clamp(min=1), torch.zeros_like(total))
        return heatmap.expand(inputs.shape[1:]).unsqueeze(0).clone()
