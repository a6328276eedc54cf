"""Radiomics over many cases: manifest in, one CSV out (PyRadiomics batch layout + region columns).

Cases run in worker processes (``concurrent.futures.ProcessPoolExecutor``); each finished case is written
atomically as a part CSV in a work folder, named with a fingerprint of the case and the settings, so a
rerun with the same settings skips finished cases and a rerun with other settings (or another medxai or
PyRadiomics version, or a changed input file) recomputes them. A failing case is reported and the others
go on (the summary lists it with its reason; the CLI exits 3). An interrupted batch (Ctrl-C) starts no
further case; the cases in flight end (finished, or interrupted themselves when the signal reached the
workers too) and a rerun resumes from the finished parts.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from medxai.errors import MedxaiError
from medxai.io.atomic import OutputError, atomic_path
from medxai.io.naming import check_case_folder
from medxai.radiomics.cases import CaseSpec, ExtractionOptions, case_regions, lesion_columns, saved_masks_complete
from medxai.radiomics.extract import LEADING_COLUMNS, SOURCE_COLUMNS, extract_features
from medxai.radiomics.params import load_extractor, params_path
from medxai.radiomics.segmenters import PRIOR_BETA

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class ExtractionSummary:
    """What a run did: cases computed now, cases reused from the work folder, failures (id -> reason)."""

    output: Path
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0


def _file_stamp(path: Path | None) -> list[int] | None:
    """Size and modification time, so a replaced input file is not mistaken for a finished case."""
    if path is None or not path.exists():
        return None
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """The software that computed a part: another medxai or PyRadiomics version recomputes the case."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("medxai", "pyradiomics"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def _fingerprint(case: CaseSpec, options: ExtractionOptions) -> str:
    settings = asdict(replace(options, save_masks=None))
    settings["params_text"] = params_path(options.params).read_text(encoding="utf-8")
    settings["box_prior_beta"] = PRIOR_BETA  # the box segmenters' prior (parts made without it are not reused)
    files = {name: _file_stamp(getattr(case, name)) for name in ("image", "mask", "tissue_mask")}
    payload = json.dumps({"case": asdict(case), "files": files, "options": settings, "versions": _versions()},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _write_rows(rows: Sequence[dict[str, object]], path: Path, columns: Sequence[str] | None = None) -> None:
    """Write rows atomically; cells a row lacks (features of an empty region) are written as NaN."""
    if columns is None:
        found: dict[str, None] = dict.fromkeys((*LEADING_COLUMNS, *SOURCE_COLUMNS))
        for row in rows:
            found.update(dict.fromkeys(row))
        columns = list(found)
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), restval="nan")
            writer.writeheader()
            writer.writerows(rows)


def process_case(case: CaseSpec, options: ExtractionOptions) -> list[dict[str, object]]:
    """Read one case, build its regions (saving them when asked) and extract their features."""
    image, regions, lesion = case_regions(case, options)
    rows = extract_features(image, regions, case_id=case.case_id, params=options.params, diagnostics=options.diagnostics,
                            modality=options.modality)
    source = {"image": case.source, "mask": case.mask_source, **lesion_columns(lesion)}
    return [{**row, **source} for row in rows]


def _run_case(case: CaseSpec, options: ExtractionOptions, part: Path) -> str | None:
    """Worker entry point: the part CSV on success, the error line on an expected failure."""
    try:
        rows = process_case(case, options)
    except OutputError:  # --save-masks cannot be written: every case would fail so; the batch stops
        raise
    except MedxaiError as error:
        return " ".join(str(error).split())
    _write_rows(rows, part)
    return None


def _merge(parts: Sequence[Path], output: Path) -> int:
    rows: list[dict[str, str]] = []
    columns: dict[str, None] = dict.fromkeys((*LEADING_COLUMNS, *SOURCE_COLUMNS))
    for part in parts:
        with open(part, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns.update(dict.fromkeys(reader.fieldnames or []))
            rows.extend(reader)
    # PyRadiomics' batch layout: the leading columns, then diagnostics_*, then the features.
    ordered = [*LEADING_COLUMNS, *SOURCE_COLUMNS] + [c for c in columns if c.startswith("diagnostics_")]
    ordered += [c for c in columns if c not in ordered]
    _write_rows(rows, output, ordered)
    return len(rows)


def run_extraction(
    cases: Sequence[CaseSpec],
    output: str | Path,
    *,
    options: ExtractionOptions,
    workers: int = 1,
    work_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> ExtractionSummary:
    """Extract features for every case into ``output`` (CSV), resumable through ``work_dir``.

    A single case runs in this process and its errors propagate as they are; in a batch, failed cases
    are left out of the CSV and listed in ``summary.failed`` (case id -> one-line reason) for the caller to
    report (the CLI's exit 3).
    """
    output = Path(output)
    load_extractor(options.params)  # a bad parameter file fails here, before any case runs
    if options.save_masks is not None:  # and a --save-masks folder of another input too
        for case in cases:
            check_case_folder(Path(options.save_masks) / case.case_id, case.source)
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".parts")
    parts = {case.case_id: work / f"{case.case_id}.{_fingerprint(case, options)}.csv" for case in cases}
    summary = ExtractionSummary(output=output)
    # A finished part is reused unless masks are asked for and some are missing (e.g. a first run without them).
    reusable = {case.case_id for case in cases
                if parts[case.case_id].is_file() and saved_masks_complete(case.case_id, options)}
    pending = [case for case in cases if case.case_id not in reusable]
    summary.reused = [case.case_id for case in cases if case.case_id in reusable]
    done = len(summary.reused)
    if progress:
        progress("radiomics", done, len(cases))
    if len(cases) == 1 and pending:
        _write_rows(process_case(pending[0], options), parts[pending[0].case_id])
        summary.computed.append(pending[0].case_id)
    elif pending:
        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
        pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(pending))), mp_context=context)
        finished_all = False
        try:
            futures = {pool.submit(_run_case, case, options, parts[case.case_id]): case.case_id for case in pending}
            for future in as_completed(futures):
                case_id = futures[future]
                problem = future.result()
                if problem is None:
                    summary.computed.append(case_id)
                else:
                    summary.failed[case_id] = problem
                done += 1
                if progress:
                    progress("radiomics", done, len(cases))
            finished_all = True
        finally:
            # Interrupted (Ctrl-C) or an unexpected error: cancel the cases not started; finished parts
            # stay in the work folder, so a rerun resumes from there.
            pool.shutdown(wait=True, cancel_futures=not finished_all)
    finished = [parts[case.case_id] for case in cases if case.case_id not in summary.failed]
    summary.rows = _merge(finished, output)
    return summary
