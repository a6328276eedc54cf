"""Cohort tables: the per-case CSVs of every done case concatenated into one ``OUT/<name>.csv``."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from medxai.io.atomic import write_text_atomic


def merge_case_tables(out_dir: Path, case_ids: Sequence[str], name: str, *, missing: str = "") -> Path | None:
    """Concatenate ``OUT/<case_id>/<name>`` of ``case_ids`` (in that order) into ``OUT/<name>``.

    Columns are the union in first-seen order; a cell a case lacks is ``missing``. Returns the path, or
    None (and removes a stale table) when no case has the file.
    """
    columns: dict[str, None] = {}
    rows: list[dict[str, str]] = []
    for case_id in case_ids:
        path = out_dir / case_id / name
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns.update(dict.fromkeys(reader.fieldnames or []))
            rows.extend(reader)
    target = out_dir / name
    if not rows:
        target.unlink(missing_ok=True)
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval=missing, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(target, buffer.getvalue())
    return target
