"""DICOM Parametric Map of each attribution heatmap of an ``explain`` case folder (highdicom).

One series per method: the float32 heatmap on the source series' frames (32-bit float pixel data, identity
real-world value mapping, no unit), with the method, the explained target and the sign convention in the
series description and the real-world value mapping's explanation.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import highdicom as hd
import numpy as np
from pydicom.sr.coding import Code

from medxai.dicom_export.identity import (DEVICE_SERIAL_NUMBER, MANUFACTURER, MODEL_NAME, SOFTWARE_VERSION,
                                          derived_uid, digest)
from medxai.dicom_export.source import SourceSeries, on_source_grid
from medxai.errors import InvalidInputError

FIRST_SERIES_NUMBER = 910
EXPLANATIONS = "explanations.json"
NO_UNITS = Code("1", "UCUM", "no units")
LO_LENGTH = 64  # Long String (series description, LUT explanation)


@dataclass(frozen=True)
class Heatmap:
    """One method's heatmap on the source grid (float32, (i, j, k)) and what it means."""

    method: str
    target: str
    sign: str
    path: Path
    data: np.ndarray

    @property
    def description(self) -> str:
        return f"medxai {self.method} target {self.target} sign {self.sign}"[:LO_LENGTH]


def read_explanations(case_dir: Path) -> dict[str, Any] | None:
    """``explanations.json`` of the case folder, or None when the folder has none."""
    path = case_dir / EXPLANATIONS
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"unreadable JSON ({error})", path=path) from None
    if not isinstance(record, dict) or not isinstance(record.get("methods", {}), dict):
        raise InvalidInputError("expected an object with a 'methods' mapping", path=path)
    return record


def target_name(record: Mapping[str, Any]) -> str:
    """The explained class in words: the resolved class name, else what was requested."""
    target = record.get("target")
    if not isinstance(target, dict):
        return str(target or "unknown")
    resolved = target.get("resolved")
    if isinstance(resolved, dict) and resolved.get("class"):
        return str(resolved["class"])
    return str(target.get("requested") or "unknown")


def read_heatmaps(case_dir: Path, record: Mapping[str, Any], source: SourceSeries) -> list[Heatmap]:
    """Every heatmap ``explanations.json`` lists, on the source grid (an error names a missing file or another grid)."""
    heatmaps = []
    for method, entry in sorted(record.get("methods", {}).items()):
        entry = entry if isinstance(entry, dict) else {}
        path = case_dir / Path(str(entry.get("file") or f"{method}.nii.gz")).name
        if not path.is_file():
            raise InvalidInputError(f"heatmap of method {method} is missing", path=path)
        data = on_source_grid(path, source).astype(np.float32)
        heatmaps.append(Heatmap(method=str(method), target=target_name(record), sign=str(entry.get("sign", "unknown")),
                                path=path, data=data))
    return heatmaps


def _content_label(method: str) -> str:
    """A Code String label (upper case, digits, underscore, at most 16 characters)."""
    return (re.sub(r"[^A-Z0-9_]", "_", method.upper()) or "HEATMAP")[:16]


def build_parametric_map(heatmap: Heatmap, source: SourceSeries, *, series_number: int) -> hd.pm.ParametricMap:
    """One Parametric Map instance holding ``heatmap`` on the source images' frames."""
    frames = source.frames_of(heatmap.data).astype(np.float32)
    low, high = float(frames.min()), float(frames.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=_content_label(heatmap.method),
        lut_explanation=f"{heatmap.method} attribution ({heatmap.sign})"[:LO_LENGTH],
        unit=NO_UNITS,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
    )
    content = digest(frames.tobytes(), heatmap.description.encode())
    series_uid = derived_uid(source.first.SeriesInstanceUID, "pm-series", heatmap.method, content)
    centre, width = (low + high) / 2, max(high - low, np.finfo(np.float32).tiny)
    parametric_map = hd.pm.ParametricMap(
        source_images=list(source.datasets),
        pixel_array=frames,
        pixel_measures=source.pixel_measures,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=derived_uid(series_uid, "pm", 1),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=centre, window_width=width, voi_lut_function="LINEAR_EXACT")],
        content_label=_content_label(heatmap.method),
        content_description=heatmap.description,
        series_description=heatmap.description,
    )
    # General Series Laterality is Type 2C when no Frame Laterality is sent (dciodvfy asks for it): present, empty.
    parametric_map.Laterality = source.first.get("Laterality", "")
    return parametric_map
