"""Shared console state for the commands: stderr console, verbosity, progress bars, result output."""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ProgressCallback = Callable[[str, int, int], None]


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


@contextlib.contextmanager
def progress() -> Iterator[ProgressCallback]:
    """A rich progress display on stderr, off when stderr is not a terminal or with --quiet.

    Yields the callback the library takes: ``callback(description, completed, total)``.
    """
    enabled = stderr.is_terminal and not settings.quiet
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=stderr, disable=not enabled, transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(description: str, completed: int, total: int) -> None:
        if description not in tasks:
            tasks[description] = bar.add_task(description, total=total)
        bar.update(tasks[description], completed=completed, total=total)

    with bar:
        yield update
