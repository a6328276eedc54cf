"""Figures for the report, drawn with matplotlib's object API (Agg canvas, no pyplot global state).

Tri-planar overlays of a thresholded heatmap on the anatomy (rows of :class:`~medxai.report.views.PlaneView`),
orientation letters on every edge, a colour bar, lesion/mask outlines; box plots for the cohort summary.
Every function returns PNG bytes for the PDF.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from medxai.report.views import PlaneView

DPI = 150
OUTLINE_COLOUR = "#39ff14"


@dataclass(frozen=True)
class Colouring:
    """How the overlay is coloured: a diverging map with symmetric limits for signed maps, else sequential."""

    cmap: str
    vmin: float
    vmax: float
    label: str

    @classmethod
    def for_map(cls, heatmap: np.ndarray, *, signed: bool, label: str) -> "Colouring":
        values = np.abs(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)))
        top = float(values.max()) if values.size else 1.0
        top = top if top > 0 else 1.0
        if signed and bool(np.any(np.asarray(heatmap) < 0)):
            return cls("RdBu_r", -top, top, label)
        return cls("inferno", 0.0, top, label)


def _window(anatomy: np.ndarray) -> tuple[float, float]:
    finite = np.asarray(anatomy, dtype=np.float64)
    low, high = np.percentile(finite, [1.0, 99.0]) if finite.size else (0.0, 1.0)
    return float(low), float(high if high > low else low + 1.0)


def _letters(axes: Axes, letters: tuple[str, str, str, str]) -> None:
    left, right, top, bottom = letters
    style = {"color": "white", "fontsize": 8, "fontweight": "bold", "transform": axes.transAxes,
             "bbox": {"boxstyle": "round,pad=0.1", "facecolor": "black", "alpha": 0.55, "linewidth": 0}}
    axes.text(0.02, 0.5, left, ha="left", va="center", **style)
    axes.text(0.98, 0.5, right, ha="right", va="center", **style)
    axes.text(0.5, 0.98, top, ha="center", va="top", **style)
    axes.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def _draw(axes: Axes, view: PlaneView, colouring: Colouring | None, window: tuple[float, float]) -> AxesImage | None:
    axes.imshow(view.anatomy, cmap="gray", vmin=window[0], vmax=window[1], aspect=view.aspect,
                interpolation="nearest")
    image = None
    if view.overlay is not None and colouring is not None:
        image = axes.imshow(view.overlay, cmap=colouring.cmap, vmin=colouring.vmin, vmax=colouring.vmax,
                            aspect=view.aspect, alpha=0.75, interpolation="nearest")
    if view.mask is not None and view.mask.any() and not view.mask.all():
        axes.contour(view.mask.astype(np.float32), levels=[0.5], colors=OUTLINE_COLOUR, linewidths=0.9)
    _letters(axes, view.letters)
    axes.set_title(view.caption, fontsize=7)
    axes.set_xticks([])
    axes.set_yticks([])
    return image


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def view_grid(
    rows: Sequence[tuple[str, Sequence[PlaneView]]], *, colouring: Colouring | None, title: str | None = None,
    window_from: np.ndarray | None = None,
) -> bytes:
    """A grid of views (one labelled row per entry, three planes each) with one colour bar; PNG bytes.

    ``window_from`` sets the grey window (1st-99th percentile; default: the first view's anatomy)."""
    width = 7.2
    figure = Figure(figsize=(width, 2.35 * len(rows) + (0.35 if title else 0.1)))
    grid = figure.add_gridspec(len(rows), 4, width_ratios=[1, 1, 1, 0.06], wspace=0.08, hspace=0.28)
    window = _window(window_from if window_from is not None else rows[0][1][0].anatomy)
    mappable = None
    for row_number, (label, views) in enumerate(rows):
        for column, view in enumerate(views):
            axes = figure.add_subplot(grid[row_number, column])
            image = _draw(axes, view, colouring, window)
            mappable = mappable or image
            if column == 0:
                axes.set_ylabel(label, fontsize=8)
    if mappable is not None and colouring is not None:
        bar = figure.colorbar(mappable, cax=figure.add_subplot(grid[:, 3]))
        bar.set_label(colouring.label, fontsize=7)
        bar.ax.tick_params(labelsize=6)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.subplots_adjust(left=0.05, right=0.9, top=0.93 if title else 0.97, bottom=0.02)
    return _png(figure)


def box_plots(values: Mapping[str, Mapping[str, Sequence[float]]], *, metrics: Sequence[str]) -> bytes:
    """One panel per metric: a box per method (``values[metric][method]`` lists the per-case scores)."""
    shown = [m for m in metrics if any(len(v) for v in values.get(m, {}).values())]
    columns = max(1, min(3, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure = Figure(figsize=(7.2, 2.1 * rows))
    for number, metric in enumerate(shown):
        axes = figure.add_subplot(rows, columns, number + 1)
        methods = [name for name, data in values[metric].items() if len(data)]
        axes.boxplot([np.asarray(values[metric][name], dtype=float) for name in methods], showfliers=True)
        axes.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=6)
        axes.set_title(metric, fontsize=8)
        axes.tick_params(axis="y", labelsize=6)
    if not shown:
        axes = figure.add_subplot(1, 1, 1)
        axes.text(0.5, 0.5, "no explanation scores in this run", ha="center", va="center", fontsize=9)
        axes.set_axis_off()
    figure.tight_layout()
    return _png(figure)


def bar_counts(counts: Mapping[str, int], *, title: str) -> bytes:
    """A small horizontal bar chart (e.g. cases per predicted class)."""
    figure = Figure(figsize=(3.4, 0.35 * max(2, len(counts)) + 0.6))
    axes = figure.add_subplot(1, 1, 1)
    names = list(counts)
    axes.barh(range(len(names)), [counts[n] for n in names], color="#4c72b0")
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.invert_yaxis()
    axes.set_title(title, fontsize=8)
    axes.tick_params(axis="x", labelsize=6)
    figure.tight_layout()
    return _png(figure)
