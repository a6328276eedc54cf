"""The rows of a benchmark run so far, saved after every measurement group, so that an hours-long run
(``make bench`` on a CPU) survives a failed group and resumes after a crash or a stopped session
(``--resume``) instead of starting over: the batch principle of DESIGN.md applied to the benchmarks.

The partial file ``<out>/<host><suffix>.partial.json`` holds the header of the run, one entry per
session that worked on it (start time, CPU, affinity, threads: a resumed run may land on another
machine, and each row says which session measured it), the labels of the finished groups and their
rows. The final ``<date>-<host><suffix>.json`` replaces it when every group is done.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import load_average

# What a measurement group may raise without taking the rest of the run with it: a method or peer that
# fails on this model, a subprocess (radiomics, memory child, medxai run) that exits non-zero, out of memory.
GROUP_ERRORS = (RuntimeError, MemoryError, OSError, ValueError, subprocess.SubprocessError)


@dataclass
class Checkpoint:
    """The groups done and their rows; ``path`` is rewritten (atomically) after every group."""

    path: Path
    header: dict[str, Any]
    done: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, *, session: dict[str, Any], header: Callable[[], dict[str, Any]], resume: bool) -> "Checkpoint":
        """Resume from ``path`` when asked and it exists (adding this session); else a fresh run."""
        if resume and path.exists():
            saved = json.loads(path.read_text())
            checkpoint = cls(path, saved["header"], list(saved["done"]), list(saved["rows"]))
        else:
            checkpoint = cls(path, {**header(), "sessions": []})
        checkpoint.header["sessions"].append(session)
        return checkpoint

    @property
    def session(self) -> int:
        return len(self.header["sessions"]) - 1

    def pending(self, label: str) -> bool:
        return label not in self.done

    def group(self, label: str, produce: Callable[[], list[dict[str, Any]]]) -> None:
        """Run one measurement group unless an earlier session finished it; stamp its rows with the load average
        before and after and this session; a group that raises becomes one error row and the run goes on."""
        if not self.pending(label):
            print(f"[bench] {label}: done in an earlier session, kept", file=sys.stderr, flush=True)
            return
        before = load_average()
        print(f"[bench] {label} (load {before})", file=sys.stderr, flush=True)
        try:
            produced = produce()
        except GROUP_ERRORS as error:
            reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
            print(f"[bench] {label} failed: {reason}", file=sys.stderr, flush=True)
            produced = [{"name": f"group/{label}", "method": "", "error": reason}]
        after = load_average()
        for row in produced:
            row.update(group=label, load_before=before, load_after=after, session=self.session)
        self.rows.extend(produced)
        self.done.append(label)
        self.save()

    def save(self) -> None:
        from medxai.io.atomic import write_text_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"header": self.header, "done": self.done, "rows": self.rows}
        write_text_atomic(self.path, json.dumps(payload, indent=1, default=str) + "\n")

    def finish(self) -> None:
        """The run is complete: the final JSON and table hold everything, the partial file goes."""
        self.path.unlink(missing_ok=True)


def session_record(*, cpu_model: str, torch_threads: int, cpu_affinity: list[int] | None, omp_num_threads: str | None) -> dict[str, Any]:
    """Who measured: one entry per session of a (possibly resumed) run."""
    return {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu_model": cpu_model,
            "torch_threads": torch_threads, "cpu_affinity": cpu_affinity, "omp_num_threads": omp_num_threads,
            "load_average_start": load_average()}
