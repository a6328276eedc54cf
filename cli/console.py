"""Shared console state for the commands: stderr console, verbosity, progress bars, result output."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

ProgressCallback = Callable[[str, int, int], None]
PLAIN_INTERVAL_S = 60.0  # off a terminal (a log), one progress line per task per minute of progress


@dataclass
class Settings:
    verbose: bool = False
    quiet: bool = False


settings = Settings()
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def info(message: str) -> None:
    """A diagnostic line on stderr (silenced by --quiet)."""
    if not settings.quiet:
        stderr.print(message, markup=False)


def report_failed(failed: Sequence[tuple[str, object]], *, total: int) -> None:
    """A ``failed CASE: reason`` line per failed case of a batch, then BatchIncompleteError (exit 3) if any."""
    from medxai.errors import BatchIncompleteError

    for case_id, reason in failed:
        info(f"failed {case_id}: {reason}")
    if failed:
        raise BatchIncompleteError(f"{len(failed)} of {total} case(s) failed", failed=[case_id for case_id, _ in failed])


def print_json(payload: Any) -> None:
    """Machine-readable results on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def plain_progress(write: Callable[[str], None], *, interval_s: float = PLAIN_INTERVAL_S,
                   clock: Callable[[], float] = time.monotonic) -> ProgressCallback:
    """The progress callback for a log: per task, one line (``occlusion (case_1): 1,200/3,375, 5 min elapsed,
    about 9 min left``) once ``interval_s`` has passed since the task's last line (or its start), not per step."""
    started: dict[str, float] = {}
    printed: dict[str, float] = {}

    def update(description: str, completed: int, total: int) -> None:
        now = clock()
        started.setdefault(description, now)
        if now - printed.setdefault(description, now) < interval_s:
            return
        printed[description] = now
        elapsed = now - started[description]
        left = f", about {_duration(elapsed * (total - completed) / completed)} left" if 0 < completed < total else ""
        write(f"{description}: {completed:,}/{total:,}, {_duration(elapsed)} elapsed{left}")

    return update


@contextlib.contextmanager
def progress() -> Iterator[ProgressCallback]:
    """A rich progress display on stderr with the time left; when stderr is not a terminal, one plain line per
    task per minute (:func:`plain_progress`); nothing with --quiet.

    Yields the callback the library takes: ``callback(description, completed, total)``.
    """
    if not stderr.is_terminal:
        yield plain_progress(info)
        return
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=stderr, disable=settings.quiet, transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(description: str, completed: int, total: int) -> None:
        if description not in tasks:
            tasks[description] = bar.add_task(description, total=total)
        bar.update(tasks[description], completed=completed, total=total)

    with bar:
        yield update
