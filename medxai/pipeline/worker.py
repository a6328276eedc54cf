"""What runs inside a worker process (local pool or Dask): load the model once, process one case.

Each case is isolated: its stages write into ``OUT/.work/<case_id>.tmp/<case_id>/`` (first ``input.json``,
the input the case folder belongs to); the runner renames that folder into ``OUT/<case_id>/`` only when
every stage succeeded, so no half-written case folder exists.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medxai.errors import MedxaiError, one_line as message_line
from medxai.io.atomic import OutputError
from medxai.io.naming import record_case_input
from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext, resolve

# The failures one case's data can provoke in the readers, numpy, torch, SimpleITK or PyRadiomics: recorded
# as that case's failure. Anything else (NameError, AttributeError...) is a bug and stops the run loudly.
CASE_ERRORS = (MedxaiError, OSError, EOFError, ValueError, RuntimeError, ArithmeticError, LookupError, TypeError,
               MemoryError)
WORK_FOLDER = ".work"


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs before its first case: the model (path + content hash) and its threads."""

    model_path: str | None
    model_hash: str | None
    device: str
    torch_threads: int | None
    trust: bool = False  # model.trust: TorchScript / code in bundle configs allowed


@dataclass(frozen=True)
class CaseJob:
    case: Case
    pipeline: Pipeline
    stages: tuple[str, ...]
    out_dir: Path
    setup: WorkerSetup


@dataclass(frozen=True)
class CaseResult:
    """A case's outcome; ``files`` are relative to the case folder; ``worker``/``model_loads`` for diagnostics."""

    case_id: str
    status: str
    started: str
    finished: str
    seconds: float
    error: str
    files: tuple[str, ...]
    worker: str
    model_loads: int


_MODELS: dict[tuple[str, str, str], Any] = {}
_LOADS = 0


def prepare_worker(setup: WorkerSetup) -> Any:
    """Load ``setup``'s model once per process (cached by path, content hash and device) and return it.

    Used as the local pool's initializer (so the model loads before the first case) and called again by
    every case, where it is a cache hit; on Dask workers the first case loads it.
    """
    global _LOADS
    if setup.model_path is None:
        return None
    key = (setup.model_path, setup.model_hash or "", setup.device)
    if key not in _MODELS:
        import torch

        from medxai.models.model_dir import load_model

        if setup.torch_threads is not None:
            torch.set_num_threads(setup.torch_threads)
        device = setup.device if setup.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        _MODELS[key] = load_model(setup.model_path, device=device, trust=setup.trust)
        _LOADS += 1
    return _MODELS[key]


def init_worker(setup: WorkerSetup) -> None:
    """Process-pool initializer: die with the runner, then load the model before the first case. A load
    failure is not raised here (it would break the pool); every case meets it again and reports it."""
    _die_with_parent()
    signal.signal(signal.SIGINT, _exit_quietly)  # Ctrl-C reaches the whole process group: the runner reports it
    try:
        prepare_worker(setup)
    except CASE_ERRORS:
        return


def _exit_quietly(signum: int, frame: object) -> None:
    """A worker's Ctrl-C: end at once without a traceback (the runner prints the one line and cleans .work)."""
    os._exit(128 + signum)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the runner dies (even by ``kill -9``), so no orphan keeps
    writing into OUT/.work while a ``--resume`` run cleans it. Elsewhere a no-op (no such call)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import multiprocessing

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the runner died before the call: do not linger
        os._exit(1)


def staging_dir(out_dir: Path, case_id: str) -> Path:
    return out_dir / WORK_FOLDER / f"{case_id}.tmp"


def process_case(job: CaseJob) -> CaseResult:
    """Run every stage of one case into its staging folder; a case error becomes a ``failed`` result."""
    started, clock = _now(), time.monotonic()
    staging = staging_dir(job.out_dir, job.case.case_id)
    shutil.rmtree(staging, ignore_errors=True)
    case_dir = staging / job.case.case_id
    case_dir.mkdir(parents=True)
    error = ""
    try:
        record_case_input(case_dir, job.case.case_id, job.case.source)
        model = prepare_worker(job.setup)
        context = CaseContext(case=job.case, pipeline=job.pipeline, case_dir=case_dir, model=model)
        for target in job.stages:
            resolve(target)(context)
    except OutputError:  # OUT cannot be written (full disk...): every case would fail so; the run stops
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except CASE_ERRORS as failure:
        error = one_line(failure, job.case)
        shutil.rmtree(staging, ignore_errors=True)
    files = () if error else tuple(sorted(str(p.relative_to(case_dir)) for p in case_dir.rglob("*") if p.is_file()))
    return CaseResult(
        case_id=job.case.case_id, status="failed" if error else "done", started=started, finished=_now(),
        seconds=round(time.monotonic() - clock, 3), error=error, files=files,
        worker=f"{socket.gethostname()}:{os.getpid()}", model_loads=_LOADS,
    )


def one_line(error: BaseException, case: Case, *, limit: int = 300) -> str:
    """The error as one line with the case's input paths replaced by their role (no identifiers in logs)."""
    text = message_line(error)
    if not isinstance(error, MedxaiError):
        text = f"{type(error).__name__}: {text}"
    roles = [(case.image, "image"), *((p, "image") for p in case.extra_channels), *(((case.mask, "mask"),) if case.mask else ())]
    # string forms only: resolve() raises on a symlink loop, and this runs while reporting that very error
    variants = sorted(((v, role) for path, role in roles
                       for v in {str(path), os.path.abspath(path), os.path.realpath(path)}),
                      key=lambda item: -len(item[0]))
    for value, role in variants:
        text = text.replace(value, role)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
