"""PDF building blocks shared by the case report and the cohort summary (reportlab platypus).

Fonts are DejaVu Sans TrueType files shipped with matplotlib, registered with reportlab so every glyph used
is embedded (subset) in the PDF. The PDF is built into a temporary file and renamed (atomic).
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, letter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate, Table, TableStyle
from xml.sax.saxutils import escape

from medxai import __version__
from medxai.errors import ConfigError
from medxai.io.atomic import atomic_path

PAGE_SIZES = {"a4": A4, "letter": letter}
FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
DISCLAIMER = ("Research tool, not a diagnostic device. The prediction and the heatmaps come from a research "
              "model and must not be used for diagnosis or treatment decisions.")
MARGIN = 14 * mm
# Tables set a cell font even around flowables; without this reportlab references (unembedded) Helvetica.
FONT_COMMAND = ("FONTNAME", (0, 0), (-1, -1), FONT)


def page_size(name: str) -> tuple[float, float]:
    """``A4`` or ``letter`` (any case)."""
    try:
        return PAGE_SIZES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown page size {name!r} (choose A4 or letter)") from None


def register_fonts() -> None:
    """Register DejaVu Sans (regular, bold) from matplotlib's data folder, once."""
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont(FONT, str(folder / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(folder / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


@dataclass(frozen=True)
class Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    warning: ParagraphStyle
    cell: ParagraphStyle

    @classmethod
    def make(cls) -> "Styles":
        register_fonts()
        body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12)
        return cls(
            title=ParagraphStyle("title", parent=body, fontName=FONT_BOLD, fontSize=15, leading=19, spaceAfter=4),
            heading=ParagraphStyle("heading", parent=body, fontName=FONT_BOLD, fontSize=11, leading=14,
                                   spaceBefore=8, spaceAfter=4),
            body=body,
            small=ParagraphStyle("small", parent=body, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#333333")),
            warning=ParagraphStyle("warning", parent=body, fontName=FONT_BOLD, textColor=colors.HexColor("#9b1c1c")),
            cell=ParagraphStyle("cell", parent=body, fontSize=7.5, leading=9.5),
        )


def text(value: Any) -> str:
    """Escape a value for a reportlab Paragraph."""
    return escape(str(value))


def png_image(png: bytes, *, width: float, max_height: float | None = None) -> Image:
    """A PNG scaled to ``width`` (points), keeping its aspect ratio, shrunk to ``max_height`` if given."""
    pixels_w, pixels_h = ImageReader(io.BytesIO(png)).getSize()
    height = width * pixels_h / pixels_w
    if max_height is not None and height > max_height:
        width, height = width * max_height / height, max_height
    return Image(io.BytesIO(png), width=width, height=height)


def grid_table(rows: Sequence[Sequence[Any]], *, widths: Sequence[float] | None = None, header: bool = True,
               styles: Styles) -> Table:
    """A table of Paragraph cells (so long text wraps), grey header row, thin rules."""
    cells = [[cell if isinstance(cell, Flowable) else Paragraph(text(cell), styles.cell) for cell in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    commands: list[tuple[Any, ...]] = [
        FONT_COMMAND, ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#999999")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e6e6")))
    table.setStyle(TableStyle(commands))
    return table


def key_value_table(pairs: Sequence[tuple[str, Any]], *, styles: Styles, width: float) -> Table:
    """Two columns, labels in bold."""
    bold = ParagraphStyle("label", parent=styles.cell, fontName=FONT_BOLD)
    rows = [[Paragraph(text(key), bold), Paragraph(text(value), styles.cell)] for key, value in pairs]
    table = Table(rows, colWidths=[0.28 * width, 0.72 * width], hAlign="LEFT")
    table.setStyle(TableStyle([
        FONT_COMMAND, ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cccccc")),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]))
    return table


def boxed(paragraphs: Sequence[Flowable], *, width: float, border: str, fill: str) -> Table:
    """Paragraphs in a coloured box (the disclaimer, the prediction)."""
    table = Table([[list(paragraphs)]], colWidths=[width], hAlign="LEFT")
    table.setStyle(TableStyle([
        FONT_COMMAND, ("BOX", (0, 0), (-1, -1), 1.0, colors.HexColor(border)),
        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(fill)),
        ("LEFTPADDING", (0, 0), (-1, -1), 6), ("RIGHTPADDING", (0, 0), (-1, -1), 6),
        ("TOPPADDING", (0, 0), (-1, -1), 4), ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
    ]))
    return table


def frame_width(size: tuple[float, float]) -> float:
    return size[0] - 2 * MARGIN


def frame_height(size: tuple[float, float]) -> float:
    return size[1] - 2 * MARGIN - 10 * mm


def build_pdf(story: list[Flowable], path: str | Path, *, size: tuple[float, float], title: str, running: str) -> Path:
    """Lay ``story`` out on pages of ``size`` and write ``path`` atomically; every page carries ``running``
    (top) and the disclaimer with the page number (bottom)."""
    register_fonts()
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def decorate(canvas: Any, document: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(MARGIN, size[1] - MARGIN + 4 * mm, running)
        canvas.drawRightString(size[0] - MARGIN, size[1] - MARGIN + 4 * mm, f"medxai {__version__} · {created}")
        canvas.drawString(MARGIN, MARGIN - 6 * mm, "Research tool, not a diagnostic device.")
        canvas.drawRightString(size[0] - MARGIN, MARGIN - 6 * mm, f"page {document.page}")
        canvas.restoreState()

    path = Path(path)
    with atomic_path(path) as temporary:
        document = SimpleDocTemplate(
            str(temporary), pagesize=size, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN + 2 * mm,
            bottomMargin=MARGIN, title=title, author=f"medxai {__version__}", creator=f"medxai {__version__}",
            subject="research explanation report (not a diagnostic device)", initialFontName=FONT,
        )
        document.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return path
