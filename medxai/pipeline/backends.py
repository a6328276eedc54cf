"""Where cases run: a local pool of worker processes, or a Dask distributed cluster.

Both hand every :class:`CaseResult` to ``on_result`` in the parent as cases finish. A worker process that
dies (segfault, out-of-memory kill) fails only the cases it was running: locally each of those is retried
once in a fresh pool (an innocent case that shared the pool then completes), on Dask the scheduler's own
retry policy applies and a ``KilledWorker`` becomes that case's failure.
"""
from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from medxai.errors import ConfigError
from medxai.pipeline.worker import CaseJob, CaseResult, init_worker, process_case

ResultHandler = Callable[[CaseResult], None]


def crashed(job: CaseJob, reason: str) -> CaseResult:
    return CaseResult(case_id=job.case.case_id, status="failed", started="", finished="", seconds=0.0,
                      error=reason, files=(), worker="", model_loads=0)


def run_local(jobs: list[CaseJob], on_result: ResultHandler, *, workers: int) -> None:
    """Run ``jobs`` on ``workers`` spawned processes (spawn: safe with torch's threads), at most one case
    in flight per worker so that a crash can be traced to the cases it interrupted."""
    if not jobs:
        return
    pending = deque(jobs)
    retried: set[str] = set()
    context = multiprocessing.get_context("spawn")
    while pending:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                                 initargs=(jobs[0].setup,)) as pool:
            in_flight: dict = {}
            casualties: list[CaseJob] = []
            while (pending or in_flight) and not casualties:
                while pending and len(in_flight) < workers:
                    job = pending.popleft()
                    in_flight[pool.submit(process_case, job)] = job
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = in_flight.pop(future)
                    try:
                        on_result(future.result())
                    except BrokenProcessPool:
                        casualties.append(job)
            casualties.extend(in_flight.values())
        for job in reversed(casualties):
            if job.case.case_id in retried:
                on_result(crashed(job, "worker process died while processing this case (crash or out of memory)"))
            else:
                retried.add(job.case.case_id)
                pending.appendleft(job)


def run_dask(jobs: list[CaseJob], on_result: ResultHandler, *, scheduler: str | None, local_workers: int | None) -> None:
    """Run ``jobs`` on the Dask cluster at ``scheduler`` or on a new ``LocalCluster`` of ``local_workers``
    single-threaded processes. Workers must see the inputs and OUT at the same paths (shared storage)."""
    import logging

    import uuid

    from distributed import Client, KilledWorker, LocalCluster, as_completed
    from distributed.client import FutureCancelledError

    if not jobs:
        return
    cluster = None
    try:
        if scheduler is None:
            cluster = LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster if cluster is not None else scheduler, timeout="20s")
    except (OSError, TimeoutError) as error:
        if cluster is not None:
            cluster.close()
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler or 'a local cluster'} ({error})") from None
    try:
        run = uuid.uuid4().hex[:8]  # keys unique per run: a shared scheduler must not reuse an old result
        futures = {client.submit(process_case, job, key=f"medxai-{run}-{job.case.case_id}", pure=False): job
                   for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                on_result(future.result())
            except (KilledWorker, FutureCancelledError):
                on_result(crashed(job, "Dask worker died while processing this case (crash or out of memory)"))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
