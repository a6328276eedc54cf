"""Where cases run: a local pool of worker processes, or a Dask distributed cluster.

Both hand every :class:`CaseResult` to ``on_result`` in the parent as cases finish. A worker process that
dies (segfault, out-of-memory kill) fails only the cases it was running: locally each of those is retried
once in a fresh pool (an innocent case that shared the pool then completes), on Dask the scheduler's own
retry policy applies and a ``KilledWorker`` becomes that case's failure.
"""
from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator

from medxai.errors import ConfigError
from medxai.pipeline.worker import CaseJob, CaseResult, init_worker, process_case

ResultHandler = Callable[[CaseResult], None]
Executor = Callable[[list[CaseJob], ResultHandler], None]
DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")
CONNECT_TIMEOUT = "10s"  # a well-formed address where no scheduler answers fails after this


def check_scheduler_address(address: str) -> None:
    """Refuse a malformed ``--dask-scheduler`` address before connecting (Dask would retry it until its
    timeout, or fail deep inside with a traceback): ``[SCHEME://]HOST:PORT`` with a Dask comm scheme."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        scheme, host, port = "", "", 0
    if scheme not in DASK_SCHEMES or not host or not 0 < int(port) < 65536:
        raise ConfigError(f"--dask-scheduler '{address}': not a scheduler address (expected [tcp://]HOST:PORT, "
                          f"e.g. tcp://10.0.0.5:8786)")


def crashed(job: CaseJob, reason: str) -> CaseResult:
    return CaseResult(case_id=job.case.case_id, status="failed", started="", finished="", seconds=0.0,
                      error=reason, files=(), worker="", model_loads=0)


@contextlib.contextmanager
def local_executor(*, workers: int) -> Iterator[Executor]:
    """Yield a function running jobs on ``workers`` local processes (a fresh pool per run)."""
    yield functools.partial(_run_local, workers=workers)


def _run_local(jobs: list[CaseJob], on_result: ResultHandler, *, workers: int) -> None:
    """Run ``jobs`` on ``workers`` spawned processes (spawn: safe with torch's threads), at most one case
    in flight per worker so that a crash can be traced to the cases it interrupted."""
    pending = deque(jobs)
    retried: set[str] = set()
    context = multiprocessing.get_context("spawn")
    while pending:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                                 initargs=(jobs[0].setup,)) as pool:
            in_flight: dict = {}
            casualties: list[CaseJob] = []
            try:
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
            except KeyboardInterrupt:  # stop the workers now, not after their current case
                for child in multiprocessing.active_children():
                    child.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            casualties.extend(in_flight.values())
        for job in reversed(casualties):
            if job.case.case_id in retried:
                on_result(crashed(job, "worker process died while processing this case (crash or out of memory)"))
            else:
                retried.add(job.case.case_id)
                pending.appendleft(job)


@contextlib.contextmanager
def dask_executor(*, scheduler: str | None, local_workers: int | None) -> Iterator[Executor]:
    """Connect to the Dask cluster at ``scheduler``, or start a ``LocalCluster`` of ``local_workers``
    single-threaded processes, and yield a function running jobs there. Workers must see the inputs and
    OUT at the same paths (shared storage)."""
    import logging

    from distributed import Client, LocalCluster

    chatter = logging.getLogger("distributed")
    level = chatter.level
    chatter.setLevel(max(level, logging.WARNING))  # the cluster's start/stop messages are not the user's business
    with contextlib.ExitStack() as stack:
        stack.callback(chatter.setLevel, level)
        try:
            cluster = None if scheduler is not None else stack.enter_context(LocalCluster(
                n_workers=local_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster if cluster is not None else scheduler, timeout=CONNECT_TIMEOUT))
        except (OSError, TimeoutError) as error:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler or 'a local cluster'} ({error})") from None
        yield functools.partial(_run_on_dask, client)


def _run_on_dask(client: Any, jobs: list[CaseJob], on_result: ResultHandler) -> None:
    import uuid

    from distributed import KilledWorker, as_completed
    from distributed.client import FutureCancelledError

    run = uuid.uuid4().hex[:8]  # keys unique per run: a shared scheduler must not reuse an old result
    futures = {client.submit(process_case, job, key=f"medxai-{run}-{job.case.case_id}", pure=False): job for job in jobs}
    for future in as_completed(futures):
        job = futures[future]
        try:
            on_result(future.result())
        except (KilledWorker, FutureCancelledError):
            on_result(crashed(job, "Dask worker died while processing this case (crash or out of memory)"))
