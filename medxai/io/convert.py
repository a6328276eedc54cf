"""Convert every 3D series of a scan to ``<series>.nii.gz`` plus a JSON sidecar without patient identifiers.

``<series>`` comes from SeriesNumber + SeriesDescription (or a hash of the SeriesInstanceUID), made safe
for a file name; never from patient tags. Series that are simply not 3D (localizers, single images,
4D series, projection radiographs) are skipped and reported; a damaged 3D series (missing or duplicate
slice, gantry tilt, truncated file...) fails the whole conversion, and files already written by the
call are removed so that no partial output remains. The sidecar records the input's path, and a conversion
never replaces the files of another input that share its name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from medxai import __version__
from medxai.errors import ConfigError, InvalidInputError, MedxaiError
from medxai.io.atomic import write_text_atomic
from medxai.io.naming import case_id_from_path, input_label, safe_case_id
from medxai.io.nifti import write_nifti
from medxai.io.preflight import check_path
from medxai.io.readers import read_volume
from medxai.io.scan_info import NIFTI_ITK_SUFFIXES, is_image_file, volume_summary
from medxai.volume import Volume

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ConvertedSeries:
    """One written series: its safe name, the NIfTI and sidecar paths, and the grid shape."""

    name: str
    image: Path
    sidecar: Path
    shape: tuple[int, int, int]


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion wrote, and which series it skipped and why (identifier-free labels)."""

    written: tuple[ConvertedSeries, ...]
    skipped: tuple[str, ...]


def series_name(number: int | None, description: str, uid: str) -> str:
    """``<number>_<description>`` made safe for a file name, or ``series_<hash of UID>`` when both are empty."""
    raw = "_".join(part for part in (str(number) if number is not None else "", description.strip()) if part)
    return safe_case_id(raw) if raw else f"series_{hashlib.sha256(uid.encode()).hexdigest()[:10]}"


def sidecar(volume: Volume, source: str) -> dict[str, Any]:
    """The input it came from, acquisition metadata (allow-listed), rescale and geometry of a converted volume."""
    summary = volume_summary(volume)
    summary.pop("intensity")
    return {
        "input": source,
        "source_format": volume.metadata.get("format", "unknown"),
        "modality": volume.metadata.get("modality", "unknown"),
        "acquisition": dict(volume.metadata.get("acquisition", {})),
        "rescale": volume.metadata.get("rescale"),
        "slice_spacing_mm": volume.metadata.get("slice_spacing"),
        "geometry": summary,
        "history": [{"name": step.name, "params": dict(step.params)} for step in volume.history],
        "converter": f"medxai {__version__}",
    }


def _check_free(out_dir: Path, name: str, source: str) -> None:
    """Refuse to replace ``<name>.nii.gz`` when its sidecar records another input (the same input may)."""
    image, side = out_dir / f"{name}.nii.gz", out_dir / f"{name}.json"
    if not image.exists() and not side.exists():
        return
    try:
        held = json.loads(side.read_text(encoding="utf-8")).get("input")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        held = None
    if held != source:
        shown = held if isinstance(held, str) else "an input it does not record"
        raise ConfigError(f"holds the conversion of another input ({shown}); choose another -o folder", path=image)


def _write(volume: Volume, name: str, source: str, out_dir: Path, written: list[ConvertedSeries]) -> None:
    image, side = out_dir / f"{name}.nii.gz", out_dir / f"{name}.json"
    write_nifti(volume, image)
    written.append(ConvertedSeries(name=name, image=image, sidecar=side, shape=volume.shape))
    write_text_atomic(side, json.dumps(sidecar(volume, source), indent=2, default=str) + "\n")


def _unique(name: str, uid: str, taken: set[str]) -> str:
    if name in taken:
        name = f"{name}_{hashlib.sha256(uid.encode()).hexdigest()[:6]}"
    taken.add(name)
    return name


def convert_scan(path: str | Path, out_dir: str | Path, *, resample_tilt: bool = False,
                 progress: ProgressCallback | None = None) -> ConvertReport:
    """Write every 3D series in ``path`` (DICOM folder or file, NIfTI, NRRD/MHA) to ``out_dir``.

    Gantry-tilted series fail the conversion unless ``resample_tilt`` resamples them (linear, recorded).
    """
    from medxai.io.dicom import load_series, require_series

    path, out_dir = Path(path), Path(out_dir)
    check_path(path, folder_ok=not path.name.lower().endswith(NIFTI_ITK_SUFFIXES))  # a folder is a DICOM series
    written: list[ConvertedSeries] = []
    if is_image_file(path):
        name, source = case_id_from_path(path), input_label([path])
        _check_free(out_dir, name, source)
        _write(read_volume(path), name, source, out_dir, written)
        return ConvertReport(written=tuple(written), skipped=())
    series = require_series(path)
    # A truncated file may carry a cut SeriesInstanceUID and leave a gap in its real series: name it first.
    broken = sorted((s for s in series if not s.readable(resample_tilt=resample_tilt) and not s.skippable),
                    key=lambda s: not (s.problem or "").startswith("truncated"))
    if broken:
        raise InvalidInputError(f"series {broken[0].label()}: {broken[0].problem}", path=path)
    volumes = [s for s in series if s.readable(resample_tilt=resample_tilt)]
    skipped = tuple(f"{s.label()}: {s.problem}" for s in series if not s.readable(resample_tilt=resample_tilt))
    if not volumes:
        raise InvalidInputError(f"no 3D series to convert ({'; '.join(skipped)})", path=path)
    taken: set[str] = set()
    names = [_unique(series_name(info.number, info.description, info.uid), info.uid, taken) for info in volumes]
    sources = [input_label([path], info.uid) for info in volumes]
    for name, source in zip(names, sources):  # before writing anything: never replace another input's series
        _check_free(out_dir, name, source)
    created = not out_dir.exists()
    try:
        for done, (info, name, source) in enumerate(zip(volumes, names, sources)):
            if progress:
                progress("converting series", done, len(volumes))
            volume = load_series(info, root=path, resample_tilt=resample_tilt)
            _write(volume, name, source, out_dir, written)
    except (MedxaiError, OSError):
        for item in written:
            for file in (item.image, item.sidecar):
                with contextlib.suppress(FileNotFoundError):
                    file.unlink()
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    if progress:
        progress("converting series", len(volumes), len(volumes))
    return ConvertReport(written=tuple(written), skipped=skipped)
