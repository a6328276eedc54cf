"""``medxai run``: a pipeline over every case of an input, one isolated output folder per case, resumable.

Batch layout after PyRadiomics' batch mode and nnU-Net's prediction folders: manifest in, one folder per
case out, a table of per-case status. ``OUT/run.json`` records what determines the outputs (medxai version,
resolved pipeline, model hash) so ``--resume`` refuses to mix outputs of different configurations.

PACS round trip: an input ``dicomweb://HOST[:PORT]/PATH?StudyInstanceUID=UID`` is first retrieved into
``OUT/.inputs/`` (:mod:`medxai.dicom_export.pacs`); with ``send`` every case whose folder is in place is then
stored in that DICOMweb service (its ``dicom/*.dcm``, :func:`medxai.dicom_export.send.send_dicomweb`, which
skips instances the PACS holds). A failed send fails the case (manifest error ``not sent to the PACS: ...``)
and keeps its folder; ``--resume`` sends such a case again without recomputing it, and sends every ``done``
case again too (nothing is stored twice), so a resumed run leaves every case of the manifest in the PACS.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from medxai import __version__
from medxai.errors import BatchIncompleteError, ConfigError, MedxaiError, one_line
from medxai.io.atomic import output_folder, write_text_atomic
from medxai.io.data_files import read_data_file
from medxai.io.naming import check_case_folder
from medxai.pipeline.backends import check_scheduler_address, dask_executor, local_executor
from medxai.pipeline.inputs import Case, discover_cases
from medxai.pipeline.lock import RunLock
from medxai.pipeline.manifest import MANIFEST_NAME, ManifestRow, read_manifest, write_manifest
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import StageSpec, active_stages, resolve
from medxai.pipeline.worker import WORK_FOLDER, CaseJob, CaseResult, WorkerSetup, staging_dir

log = logging.getLogger("medxai.pipeline")
ProgressCallback = Callable[[str, int, int], None]
RUN_RECORD = "run.json"
PENDING = "not processed yet"
NOT_SENT = "not sent to the PACS: "  # manifest error of a case computed but not stored in the PACS


class RunInterrupted(MedxaiError):
    """Ctrl-C during a run: the cases done so far are kept; ``--resume`` does the rest (exit 130)."""

    exit_code = 130


@dataclass
class RunSummary:
    """What a run did. ``model_loads`` maps each worker (host:pid) to how often it loaded the model."""

    out_dir: Path
    manifest: Path
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_loads: dict[str, int] = field(default_factory=dict)

    def raise_for_failures(self) -> None:
        """BatchIncompleteError (exit 3) when any case failed."""
        if self.failed:
            total = len(self.done) + len(self.failed) + len(self.skipped)
            raise BatchIncompleteError(
                f"{len(self.failed)} of {total} cases failed ({', '.join(self.failed[:10])}"
                f"{', ...' if len(self.failed) > 10 else ''}); see {self.manifest}",
                failed=self.failed,
            )


def run_pipeline(
    pipeline: Pipeline,
    *,
    input_path: str | Path,
    out_dir: str | Path,
    workers: int = 1,
    resume: bool = False,
    dask_scheduler: str | None = None,
    dask_local: int | None = None,
    progress: ProgressCallback | None = None,
    send: str | None = None,
) -> RunSummary:
    """Run ``pipeline`` over every case of ``input_path`` into ``out_dir``; failed cases do not stop it.

    Local worker processes by default (``workers``), or a Dask cluster (``dask_scheduler`` address, or
    ``dask_local`` workers on a new LocalCluster). With ``resume`` cases already ``done`` (outputs present)
    are kept and all others are (re)done; the outputs equal those of an uninterrupted run.

    ``input_path`` may be a DICOMweb study address (a ``str``), retrieved into ``OUT/.inputs/``; ``send``
    (a DICOMweb address) stores each case's ``dicom`` stage outputs there (the stage must be on).
    """
    from medxai.dicom_export.pacs import is_pacs_address, parse_study_address
    from medxai.dicom_export.send import dicomweb_url

    if workers < 1 or (dask_local is not None and dask_local < 1):
        raise ConfigError(f"need at least one worker, got {dask_local if dask_local is not None else workers}")
    out = Path(out_dir).absolute()
    if dask_scheduler is not None:
        check_scheduler_address(dask_scheduler)
    study = parse_study_address(str(input_path)) if is_pacs_address(input_path) else None
    if send is not None:
        dicomweb_url(send)  # a malformed address fails before any work
        if not pipeline.stage_enabled("dicom"):
            raise ConfigError("--send stores the dicom stage's outputs: turn the stage on (dicom.enabled: true)",
                              path=pipeline.source)
    with output_folder(out):  # writable, checked before the work; removed again if the run leaves it empty
        if (out / MANIFEST_NAME).is_file() and not resume:  # before a PACS input is retrieved into OUT
            raise ConfigError("holds a previous run (manifest.csv): pass --resume to continue it, or choose another "
                              "output folder", path=out)
        if study is not None:
            from medxai.dicom_export.pacs import retrieve_study

            input_path = retrieve_study(study, out)
        return _run(pipeline, input_path=Path(input_path), out=out, workers=workers, resume=resume,
                    dask_scheduler=dask_scheduler, dask_local=dask_local, progress=progress, send=send)


def _run(pipeline: Pipeline, *, input_path: Path, out: Path, workers: int, resume: bool, dask_scheduler: str | None,
         dask_local: int | None, progress: ProgressCallback | None, send: str | None) -> RunSummary:
    """:func:`run_pipeline` once its options and output folder are checked (and a PACS input retrieved)."""
    cases = discover_cases(input_path.absolute())  # absolute: workers may run elsewhere (Dask)
    for case in cases:  # before anything is loaded or written: never replace the folder of another input
        check_case_folder(out / case.case_id, case.source)
    stages = active_stages(pipeline)
    setup = _preflight(pipeline, stages, cases, workers=dask_local or workers, remote=dask_scheduler is not None)
    clock = time.monotonic()
    on_dask = dask_scheduler is not None or dask_local is not None
    backend = dask_executor(scheduler=dask_scheduler, local_workers=dask_local) if on_dask else local_executor(workers=workers)
    with backend as execute, RunLock(out):
        summary = RunSummary(out_dir=out, manifest=out / MANIFEST_NAME)
        rows, todo = _plan(out, cases, pipeline, setup, resume=resume, summary=summary, send=send is not None)
        write_manifest(out, list(rows.values()))
        jobs = [CaseJob(case=case, pipeline=pipeline, stages=tuple(s.target for s in stages), out_dir=out, setup=setup)
                for case in todo]
        total, completed = len(rows), len(rows) - len(todo)

        def on_result(result: CaseResult) -> None:
            nonlocal completed
            rows[result.case_id] = _finalize(out, result, rows[result.case_id].input)
            write_manifest(out, list(rows.values()))
            completed += 1
            (summary.done if result.status == "done" else summary.failed).append(result.case_id)
            if result.worker:
                summary.model_loads[result.worker] = max(summary.model_loads.get(result.worker, 0), result.model_loads)
            if result.status == "done":
                log.info("case %s: done in %.1f s", result.case_id, result.seconds)
            else:
                log.warning("case %s: failed: %s", result.case_id, result.error)
            if progress is not None:
                progress("cases", completed, total)

        if progress is not None:
            progress("cases", completed, total)
        try:
            if jobs:
                execute(jobs, on_result)
            if send is not None:
                _send_cases(out, rows, send, summary)
        except KeyboardInterrupt:
            raise RunInterrupted(f"interrupted after {completed} of {total} cases; rerun with --resume") from None
        finally:  # staging folders of unfinished cases: --resume redoes those cases from scratch anyway
            shutil.rmtree(out / WORK_FOLDER, ignore_errors=True)
        done = sorted(case_id for case_id, row in rows.items() if row.status == "done")
        for stage in stages:
            if stage.finish is not None:
                resolve(stage.finish)(pipeline, out, done)
    summary.seconds = round(time.monotonic() - clock, 3)
    return summary


def _preflight(pipeline: Pipeline, stages: list[StageSpec], cases: list[Case], *, workers: int,
               remote: bool) -> WorkerSetup:
    """Check the configuration once, before any case: open the model (on the CPU, then dropped) and run
    each stage's ``check(pipeline, model, cases)``, so a bad model or option is one exit-4 line, not N failures."""
    model_path = pipeline["model"]["path"]
    needs_model = [s.section for s in stages if s.needs_model]
    model = None
    if needs_model:
        if model_path is None:
            raise ConfigError(f"stage(s) {', '.join(needs_model)} need a model: set model.path "
                              f"(e.g. --set model.path=MODEL_DIR)", path=pipeline.source)
        from medxai.models.model_dir import load_model

        model = load_model(model_path, device="cpu", trust=pipeline["model"].get("trust", False))
    for stage in stages:
        if stage.check is not None:
            resolve(stage.check)(pipeline, model, cases)
    return WorkerSetup(
        model_path=str(model_path) if model is not None else None,
        model_hash=model_digest(Path(model_path)) if model is not None else None,
        device=pipeline["model"]["device"],
        trust=pipeline["model"].get("trust", False),
        # one share of the cores per worker; remote Dask workers get 1 (Dask's own OMP_NUM_THREADS default)
        torch_threads=1 if remote else max(1, usable_cores() // workers),
    )


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a container's or a scheduler's cpuset),
    at most OMP_NUM_THREADS when that is set: what torch itself uses by default. ``os.cpu_count()`` counts
    the machine's cores, which oversubscribes a pinned job and made a worker's sums differ in the last digits
    from the same command run in-process (thread count changes the order of floating-point reductions)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(limit)) if limit.isdigit() and int(limit) > 0 else cores)


def model_digest(path: Path) -> str:
    """sha256 over a model file, or a model folder's file names and contents (cache key, run record)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path if path.is_dir() else path.parent)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _plan(out: Path, cases: list[Case], pipeline: Pipeline, setup: WorkerSetup, *, resume: bool,
          summary: RunSummary, send: bool = False) -> tuple[dict[str, ManifestRow], list[Case]]:
    """Manifest rows for every case (kept ``done`` rows on resume, and with ``send`` the rows of cases
    computed but not sent) and the cases left to process."""
    record = json.dumps({"medxai": __version__, "pipeline": pipeline.to_dict(), "model_sha256": setup.model_hash},
                        indent=2, sort_keys=True) + "\n"
    previous_record = (out / RUN_RECORD).read_text(encoding="utf-8") if (out / RUN_RECORD).is_file() else None
    if resume and previous_record is not None and previous_record != record:
        raise ConfigError("was written by a different pipeline, model or medxai version than this run's; "
                          "resume with the same settings, or choose another output folder", path=out)
    write_text_atomic(out / RUN_RECORD, record)
    previous = read_manifest(out) if resume else {}
    rows: dict[str, ManifestRow] = {}
    todo = []
    for case in cases:
        old = previous.get(case.case_id)
        if case.skip_reason is not None:
            rows[case.case_id] = ManifestRow(case.case_id, "skipped", error=case.skip_reason, input=case.source)
            summary.skipped.append(case.case_id)
        elif old is not None and old.status == "done" and old.input == case.source and old.outputs_exist(out):
            rows[case.case_id] = old
            summary.reused.append(case.case_id)
            summary.done.append(case.case_id)
        elif send and old is not None and old.error.startswith(NOT_SENT) and old.input == case.source \
                and old.outputs_exist(out):  # computed, only the send failed: send it again, do not recompute
            rows[case.case_id] = old
            summary.reused.append(case.case_id)
        else:
            rows[case.case_id] = ManifestRow(case.case_id, "skipped", error=PENDING, input=case.source)
            todo.append(case)
    return rows, todo


def _finalize(out: Path, result: CaseResult, source: str) -> ManifestRow:
    """Move a succeeded case's staging folder into ``OUT/<case_id>`` (replacing an older one); for a failed
    case remove any older folder, so a folder in OUT always holds one complete case."""
    final = out / result.case_id
    trash = out / WORK_FOLDER / f"{result.case_id}.old"
    shutil.rmtree(trash, ignore_errors=True)
    if final.exists():
        os.rename(final, trash)
    if result.status == "done":
        os.rename(staging_dir(out, result.case_id) / result.case_id, final)
    shutil.rmtree(staging_dir(out, result.case_id), ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)
    return ManifestRow(
        case_id=result.case_id, input=source, status=result.status, started=result.started, finished=result.finished,
        seconds=f"{result.seconds:.2f}", error=result.error,
        outputs=tuple(f"{result.case_id}/{name}" for name in result.files),
        segmentation=_segmentation_status(final) if result.status == "done" else "",
    )


def _segmentation_status(folder: Path) -> str:
    """``ok`` or ``failed: <reason>`` from the case's ``segmentation.json`` ("" without a segment stage)."""
    record = folder / "segmentation.json"
    if not record.is_file():
        return ""
    data = read_data_file(record, what="segmentation record")
    status = str(data.get("status", "")) if isinstance(data, dict) else ""
    return f"{status}: {data.get('reason', '')}" if status == "failed" else status


def _send_cases(out: Path, rows: dict[str, ManifestRow], target: str, summary: RunSummary) -> None:
    """Store the ``dicom/*.dcm`` outputs of every case done (or computed but not sent) in the DICOMweb
    service ``target``; a failed send fails that case with its reason and keeps its folder."""
    from medxai.dicom_export.send import SendError, send_dicomweb
    from medxai.dicom_export.stage import FOLDER

    for case_id, row in rows.items():
        if row.status != "done" and not row.error.startswith(NOT_SENT):
            continue
        files = [out / name for name in row.outputs if name.startswith(f"{case_id}/{FOLDER}/") and name.endswith(".dcm")]
        try:
            send_dicomweb(files, target)
        except SendError as error:
            rows[case_id] = replace(row, status="failed", error=NOT_SENT + one_line(error))
            log.warning("case %s: %s", case_id, rows[case_id].error)
        else:
            rows[case_id] = replace(row, status="done", error="")
            summary.sent.append(case_id)
        write_manifest(out, list(rows.values()))
    summary.done[:] = [case_id for case_id, row in rows.items() if row.status == "done"]
    summary.failed[:] = [case_id for case_id, row in rows.items() if row.status == "failed"]
