"""Figures for the report, drawn with matplotlib's object API (Agg canvas, no pyplot global state).

Tri-planar overlays of a thresholded heatmap on the anatomy (rows of :class:`~medxai.report.views.PlaneView`),
orientation letters on every edge, the grey window and a scale bar in mm on every panel, a colour bar that
says what the colours mean, lesion/mask outlines; box plots and bar charts for the cohort summary. The
overlay is blended into the grey pixels by hand (:func:`panel_rgb`) so that pixels below the display
threshold stay exactly the scan's. Figures are PNG bytes for the PDF.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from medxai.report.views import PlaneView
from medxai.report.windows import Window, percentile_window

DPI = 150
OUTLINE_COLOUR = "#39ff14"
OVERLAY_ALPHA = 0.8
SCALE_BAR_MM = (1, 2, 5, 10, 20, 50, 100, 200)


def _diverging() -> Colormap:
    """RdBu_r without its white middle: the faintest colour drawn is a clear pink or light blue, never the
    white that reads as fog on a grey scan."""
    base = colormaps["RdBu_r"]
    return ListedColormap(np.vstack([base(np.linspace(0.0, 0.3, 128)), base(np.linspace(0.7, 1.0, 128))]),
                          name="RdBu_r_no_white")


def _sequential() -> Colormap:
    """inferno from purple up: its black end would vanish on a dark scan."""
    return ListedColormap(colormaps["inferno"](np.linspace(0.3, 1.0, 256)), name="inferno_from_purple")


@dataclass(frozen=True)
class Colouring:
    """How the overlay is coloured and what its colour bar says.

    Signed maps: a diverging map symmetric around zero (red for the class, blue against it); other maps: a
    sequential map of the magnitude. ``threshold``: |values| below it are not drawn (the scan shows
    through), as the colour bar marks."""

    cmap: Colormap
    vmin: float
    vmax: float
    label: str
    threshold: float = 0.0
    signed: bool = False
    meaning: str = ""

    @classmethod
    def for_map(cls, heatmap: np.ndarray, *, signed: bool, label: str, threshold: float = 0.0,
                meaning: str = "") -> "Colouring":
        values = np.abs(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)))
        top = float(values.max()) if values.size else 1.0
        top = top if top > 0 else 1.0
        if signed and bool(np.any(np.asarray(heatmap) < 0)):
            return cls(_diverging(), -top, top, label, threshold, True, meaning)
        low = threshold if 0 < threshold < top else 0.0
        return cls(_sequential(), low, top, label, threshold, False, meaning)

    def rgba(self, values: np.ndarray) -> np.ndarray:
        return self.cmap(Normalize(self.vmin, self.vmax, clip=True)(values))


def grey_rgb(anatomy: np.ndarray, window: Window) -> np.ndarray:
    """The anatomy in grey, ``window.low`` black and ``window.high`` white, as an RGB array in [0, 1]."""
    grey = np.clip((np.asarray(anatomy, dtype=np.float64) - window.low) / (window.high - window.low), 0.0, 1.0)
    return np.repeat(grey[..., None], 3, axis=-1)


def panel_rgb(view: PlaneView, window: Window, colouring: Colouring | None) -> np.ndarray:
    """The panel's pixels: the windowed anatomy, with the overlay blended in where it is drawn (finite and
    not below the threshold); every other pixel is the anatomy's grey, unchanged."""
    rgb = grey_rgb(view.anatomy, window)
    if view.overlay is None or colouring is None:
        return rgb
    values = np.asarray(view.overlay, dtype=np.float64)
    drawn = np.isfinite(values) & (np.abs(np.nan_to_num(values)) >= colouring.threshold)
    colours = colouring.rgba(np.where(drawn, values, 0.0))[..., :3]
    rgb[drawn] = (1 - OVERLAY_ALPHA) * rgb[drawn] + OVERLAY_ALPHA * colours[drawn]
    return rgb


def scale_bar_mm(width_mm: float) -> float:
    """A round bar length (1, 2, 5, 10, 20, 50, 100 or 200 mm) of at most a quarter of the field width."""
    fitting = [length for length in SCALE_BAR_MM if length <= width_mm / 4]
    return float(fitting[-1] if fitting else SCALE_BAR_MM[0])


def _scale_bar(axes: Axes, view: PlaneView) -> float:
    """Draw a horizontal bar in the lower left; its length in pixels comes from the column spacing."""
    length = scale_bar_mm(view.width_mm)
    bar = AnchoredSizeBar(axes.transData, length / view.pixel_mm[1], f"{length:g} mm", "lower left", pad=0.3,
                          color="white", frameon=False, size_vertical=max(0.5, 0.012 * view.anatomy.shape[0]),
                          fontproperties={"size": 6})
    axes.add_artist(bar)
    return length


def _letters(axes: Axes, letters: tuple[str, str, str, str]) -> None:
    left, right, top, bottom = letters
    style = {"color": "white", "fontsize": 8, "fontweight": "bold", "transform": axes.transAxes,
             "bbox": {"boxstyle": "round,pad=0.1", "facecolor": "black", "alpha": 0.55, "linewidth": 0}}
    axes.text(0.02, 0.5, left, ha="left", va="center", **style)
    axes.text(0.98, 0.5, right, ha="right", va="center", **style)
    axes.text(0.5, 0.98, top, ha="center", va="top", **style)
    axes.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def _draw(axes: Axes, view: PlaneView, colouring: Colouring | None, window: Window) -> float:
    """One panel: pixels, lesion outline, orientation letters, scale bar, and its slice and window as title;
    returns the scale bar's length in mm."""
    axes.imshow(panel_rgb(view, window, colouring), aspect=view.aspect, interpolation="nearest")
    if view.mask is not None and view.mask.any() and not view.mask.all():
        axes.contour(view.mask.astype(np.float32), levels=[0.5], colors=OUTLINE_COLOUR, linewidths=0.9)
    _letters(axes, view.letters)
    length = _scale_bar(axes, view)
    axes.set_title(f"{view.caption}\n{window.panel_label}", fontsize=6.5)
    axes.set_xticks([])
    axes.set_yticks([])
    return length


def _colour_bar(figure: Figure, axes: Axes, colouring: Colouring) -> None:
    """The colour bar, labelled with what the colours mean; the band of |values| not drawn is hatched."""
    mappable = ScalarMappable(Normalize(colouring.vmin, colouring.vmax), colouring.cmap)
    bar = figure.colorbar(mappable, cax=axes)
    low = -colouring.threshold if colouring.signed else colouring.vmin
    if colouring.threshold > 0:
        axes.axhspan(max(low, colouring.vmin), min(colouring.threshold, colouring.vmax), facecolor="#bbbbbb",
                     hatch="///", edgecolor="#777777", linewidth=0)
    bar.set_label(colouring.label, fontsize=6.5)
    bar.ax.tick_params(labelsize=6)


@dataclass(frozen=True)
class Grid:
    """A rendered grid of panels: PNG bytes and the scale bar lengths (mm) drawn on them."""

    png: bytes
    scale_bars_mm: tuple[float, ...]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def view_grid(
    rows: Sequence[tuple[str, Sequence[PlaneView]]], *, colouring: Colouring | None, title: str | None = None,
    window: Window | None = None,
) -> Grid:
    """A grid of views (one labelled row per entry, three planes each) with one colour bar.

    ``window``: the grey window stated on every panel (default: 1st-99th percentile of the first view)."""
    width, height = 7.2, 2.5 * len(rows) + (0.75 if title else 0.4)
    figure = Figure(figsize=(width, height))
    grid = figure.add_gridspec(len(rows), 4, width_ratios=[1, 1, 1, 0.06], wspace=0.08, hspace=0.38)
    window = window or percentile_window(rows[0][1][0].anatomy, None, modality=None)
    bars = []
    for row_number, (label, views) in enumerate(rows):
        for column, view in enumerate(views):
            axes = figure.add_subplot(grid[row_number, column])
            bars.append(_draw(axes, view, colouring, window))
            if column == 0:
                axes.set_ylabel(label, fontsize=8)
    if colouring is not None and any(view.overlay is not None for _, views in rows for view in views):
        _colour_bar(figure, figure.add_subplot(grid[:, 3]), colouring)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.subplots_adjust(left=0.05, right=0.84, top=1 - (0.7 if title else 0.35) / height, bottom=0.02)
    return Grid(_png(figure), tuple(bars))


def shown_metrics(values: Mapping[str, Mapping[str, Sequence[float]]], metrics: Sequence[str]) -> list[str]:
    """The metrics of ``metrics`` that hold at least one value (the panels :func:`box_plots` draws)."""
    return [m for m in metrics if any(len(v) for v in values.get(m, {}).values())]


def box_plots(values: Mapping[str, Mapping[str, Sequence[float]]], *, metrics: Sequence[str],
              titles: Mapping[str, str] | None = None) -> bytes:
    """One panel per metric holding values: a box per method (``values[metric][method]`` lists the per-case
    scores), titled ``titles[metric]`` (default: the metric's name)."""
    shown = shown_metrics(values, metrics)
    columns = max(1, min(3, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure = Figure(figsize=(7.2, 2.1 * rows))
    for number, metric in enumerate(shown):
        axes = figure.add_subplot(rows, columns, number + 1)
        methods = [name for name, data in values[metric].items() if len(data)]
        axes.boxplot([np.asarray(values[metric][name], dtype=float) for name in methods], showfliers=True)
        axes.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=6)
        axes.set_title((titles or {}).get(metric, metric), fontsize=8)
        axes.tick_params(axis="y", labelsize=6)
    if not shown:
        axes = figure.add_subplot(1, 1, 1)
        axes.text(0.5, 0.5, "no explanation scores in this run", ha="center", va="center", fontsize=9)
        axes.set_axis_off()
    figure.tight_layout()
    return _png(figure)


def bar_counts(counts: Mapping[str, int], *, title: str) -> bytes:
    """A small horizontal bar chart (e.g. cases per predicted class), PNG bytes."""
    return _png(bar_figure(counts, title=title))


def bar_figure(counts: Mapping[str, int], *, title: str) -> Figure:
    """The figure of :func:`bar_counts`: whole numbers only on the count axis."""
    figure = Figure(figsize=(3.4, 0.35 * max(2, len(counts)) + 0.6))
    axes = figure.add_subplot(1, 1, 1)
    names = list(counts)
    axes.barh(range(len(names)), [counts[n] for n in names], color="#4c72b0")
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.invert_yaxis()
    axes.set_title(title, fontsize=8)
    axes.tick_params(axis="x", labelsize=6)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: whole cases only
    axes.set_xlabel("cases", fontsize=7)
    figure.tight_layout()
    return figure
