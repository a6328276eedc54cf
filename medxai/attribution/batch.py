"""Explain several scans with one loaded model: one output folder per case, bad cases reported, not fatal."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TYPE_CHECKING

import torch

from medxai.attribution.engine import explain_case, parse_target
from medxai.attribution.defaults import DEFAULT_METHOD
from medxai.attribution.registry import check_method_names
from medxai.attribution.writer import write_case
from medxai.errors import ConfigError, MedxaiError, one_line
from medxai.io.atomic import output_folder
from medxai.io.naming import check_case_folder, input_label

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class BatchResult:
    """Case ids written, and ``(case_id, one-line reason)`` for each case that failed in whole or in part."""

    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def parse_indices(text: str | None, *, count: int, name: str) -> tuple[int, ...] | None:
    """``"1,2,3"`` as ``count`` non-negative integers (``--box``, ``--voxel``), or None for None."""
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or min(values) < 0:
        raise ConfigError(f"--{name} needs {count} comma-separated non-negative voxel indices, got {text!r}")
    return values


def parse_batch_size(text: str) -> int | str:
    """``auto`` or a positive integer."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--batch-size must be 'auto' or a positive integer, got {text!r}")
    return int(text)


def check_target(model: LoadedModel, case_options: Mapping[str, Any]) -> None:
    """An unknown ``target`` (or a contrast with a region) is an option error: ConfigError before any case."""
    region = any(case_options.get(key) is not None for key in ("mask", "box", "voxel"))
    parse_target(str(case_options.get("target", "predicted")), model.classes, region=torch.zeros(0) if region else None)


def explain_scans(
    model: LoadedModel,
    scans: Sequence[Sequence[Path]],
    case_ids: Sequence[str],
    out_dir: Path,
    *,
    methods: Sequence[str] = (DEFAULT_METHOD,),
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressCallback | None = None,
    **case_options: Any,
) -> BatchResult:
    """Explain and write each scan (its channel paths) under ``out_dir/<case_id>``.

    With one scan, its error propagates (the CLI's exit 4). With several, a bad scan is recorded and the
    batch goes on; the CLI reports the failed cases and exits 3.
    ``case_options`` are :func:`explain_case`'s keyword options (target, mask, box, voxel, seed, ...).
    """
    check_method_names(list(methods))
    check_target(model, case_options)
    sources = [input_label(paths) for paths in scans]
    for case_id, source in zip(case_ids, sources):  # before any work: never replace another input's folder
        check_case_folder(Path(out_dir) / case_id, source)
    result = BatchResult()
    with output_folder(out_dir):  # writable, checked before the work; removed again if left empty
        for number, (paths, case_id, source) in enumerate(zip(scans, case_ids, sources)):
            if progress is not None:
                progress("cases", number, len(scans))
            try:
                explanation = explain_case(model, paths, methods=methods, method_options=method_options, case_id=case_id,
                                           progress=progress, **case_options)
            except MedxaiError as error:
                if len(scans) == 1:
                    raise
                result.failed.append((case_id, one_line(error)))
                continue
            write_case(explanation, out_dir, source=source)
            result.written.append(case_id)
            if explanation.failed:
                reasons = "; ".join(f"{name}: {reason}" for name, reason in explanation.failed.items())
                result.failed.append((case_id, f"methods failed ({reasons})"))
        if progress is not None:
            progress("cases", len(scans), len(scans))
    return result
