"""``OUT/manifest.csv``: one row per case with its input, status, timings, one-line error and output files.

Statuses: ``done`` (outputs complete in ``OUT/<case_id>/``), ``failed`` (``error`` says why; ``not sent to the
PACS: ...`` when only ``medxai run --send`` failed: the outputs stay listed and in OUT) and
``skipped`` (listed but not processed: the run stopped before reaching it; ``--resume`` picks it up).
``segmentation`` says whether a done case's weakly-supervised mask is a segmentation (``ok``) or not
(``failed: <reason>``, from its ``segmentation.json``). Times live only here, never in the per-case files, so outputs of two runs can be compared byte for byte.
"""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from medxai.errors import InvalidInputError
from medxai.io.atomic import write_text_atomic

MANIFEST_NAME = "manifest.csv"
STATUSES = ("done", "failed", "skipped")
OUTPUT_SEPARATOR = ";"


@dataclass(frozen=True)
class ManifestRow:
    """One case's line in the manifest; ``input`` is what the case was read from (absolute paths of its
    channels, ``#<series UID>`` for a DICOM series); ``outputs`` are paths relative to OUT."""

    case_id: str
    status: str
    started: str = ""
    finished: str = ""
    seconds: str = ""
    error: str = ""
    outputs: tuple[str, ...] = ()
    input: str = ""
    segmentation: str = ""  # the segment stage's verdict on its mask: "ok", "failed: <reason>" or "" (no stage)

    def outputs_exist(self, out_dir: Path) -> bool:
        return bool(self.outputs) and all((out_dir / name).is_file() for name in self.outputs)


COLUMNS = ("case_id", "input", *(f.name for f in fields(ManifestRow) if f.name not in ("case_id", "input")))


def write_manifest(out_dir: Path, rows: list[ManifestRow]) -> Path:
    """Write all rows atomically (a reader never sees a half-written manifest)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**asdict(row), "outputs": OUTPUT_SEPARATOR.join(row.outputs)})
    path = out_dir / MANIFEST_NAME
    write_text_atomic(path, buffer.getvalue())
    return path


def read_manifest(out_dir: Path) -> dict[str, ManifestRow]:
    """The rows of ``OUT/manifest.csv`` by case id ({} when there is none)."""
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise InvalidInputError(f"not a medxai run manifest (columns {reader.fieldnames})", path=path)
        rows = {}
        for record in reader:
            if record["status"] not in STATUSES:
                raise InvalidInputError(f"unknown status {record['status']!r} for case {record['case_id']}", path=path)
            outputs = tuple(name for name in record["outputs"].split(OUTPUT_SEPARATOR) if name)
            rows[record["case_id"]] = ManifestRow(**{**record, "outputs": outputs})
    return rows
