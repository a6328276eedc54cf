"""Case ids that are always safe as folder names, unique per run, and case folders that record their input.

A case id is made of ``[A-Za-z0-9_-]`` only (dots become ``_``), while every file or folder a command writes
beside the case folders (``run.json``, ``manifest.csv``, ``.work`` ...) has a dot in its name: so no case id
can ever name one of them, whatever a file name, manifest or DICOM tag holds.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from medxai.errors import ConfigError

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
INPUT_RECORD = "input.json"  # in every case folder: the input its outputs came from


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def safe_case_id(raw: str, *, max_length: int = 64) -> str:
    """Reduce ``raw`` to ``[A-Za-z0-9_-]`` (dots and other characters become ``_``), starting with a letter or
    digit, never empty. Over-long or emptied ids keep a short hash of the original so distinct inputs stay
    distinct."""
    cleaned = _UNSAFE.sub("_", raw.strip()).strip("_-")
    if not cleaned:
        return f"case_{_digest(raw)}"
    if len(cleaned) > max_length:
        return f"{cleaned[: max_length - 9]}_{_digest(raw)}"
    return cleaned


def _stem(name: str) -> str:
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def case_id_from_path(path: str | Path) -> str:
    """The case id of a scan path: its file name without the image suffix, made safe."""
    return safe_case_id(_stem(Path(path).name))


def _absolute_parts(path: str | Path) -> list[str]:
    """The parts of the absolute, normalised path, by string only (no ``resolve()``: a symlink loop must not
    stop the naming)."""
    return [part for part in Path(os.path.normpath(os.path.abspath(str(path)))).parts if part != os.sep]


def _candidates(path: str | Path, stem: str | None, position: int) -> list[str]:
    """Ids of growing specificity: the stem, the whole file name, then parent folders taken in one by one,
    then a hash of the path (and of the path and position, for one path given twice)."""
    parts = _absolute_parts(path) or ["case"]
    name, parents = parts[-1], parts[:-1]
    base = stem if stem is not None else _stem(name)
    options = [base] if stem is not None else [base, name]
    for depth in range(1, len(parents) + 1):
        options += ["_".join([*parents[-depth:], option]) for option in ([base] if stem is not None else [base, name])]
    text = os.sep.join(parts)
    options += [f"{base}_{_digest(text)}", f"{base}_{_digest(f'{text}#{position}')}"]
    unique: list[str] = []
    for option in (safe_case_id(o) for o in options):
        if option not in unique:
            unique.append(option)
    return unique


def unique_case_ids(
    paths: Sequence[str | Path], *, stems: Sequence[str | None] | None = None, fixed: Sequence[str | None] | None = None,
) -> list[str]:
    """One id per input, unique, deterministic for the same inputs in the same order.

    An input's id is its file name without the image suffix (``stems[i]`` instead, e.g. a DICOM series'
    ``<folder>_s<number>``) or ``fixed[i]`` (a manifest's ``case_id``, never altered beyond
    :func:`safe_case_id`). Where derived ids clash, the clashing ones take in the distinguishing part of
    their path: the suffix (``scan.nii.gz``/``scan.nrrd``), then parent folders (``left/scan.nii.gz`` and
    ``right/scan.nii.gz`` give ``left_scan`` and ``right_scan``), a hash only as the last resort; ids that
    are already unique stay as they are. Repeated fixed ids are refused (ConfigError)."""
    count = len(paths)
    stems = list(stems) if stems is not None else [None] * count
    fixed = list(fixed) if fixed is not None else [None] * count
    options: list[list[str] | None] = [None if fixed[i] else _candidates(paths[i], stems[i], i) for i in range(count)]
    level = [0] * count
    ids = [safe_case_id(str(fixed[i])) if fixed[i] else options[i][0] for i in range(count)]  # type: ignore[index]
    while True:
        groups: dict[str, list[int]] = defaultdict(list)
        for index, case_id in enumerate(ids):
            groups[case_id].append(index)
        clashes = [members for members in groups.values() if len(members) > 1]
        if not clashes:
            return ids
        moved = False
        for members in clashes:
            derived = [i for i in members if options[i] is not None]
            if len(derived) == len(members):  # an id unique before others grew into it keeps its name
                top = max(level[i] for i in members)
                derived = [i for i in members if level[i] == top]
            for index in derived:  # (a fixed id keeps its name; the derived ones move on)
                if level[index] + 1 < len(options[index]):  # type: ignore[arg-type]
                    level[index] += 1
                    ids[index] = options[index][level[index]]  # type: ignore[index]
                    moved = True
        if not moved:
            repeated = ", ".join(sorted({ids[m[0]] for m in clashes}))
            raise ConfigError(f"case ids repeat ({repeated}): give every case its own case_id")


def input_label(paths: Sequence[str | Path], series_uid: str | None = None) -> str:
    """The input of a case as recorded in its outputs: the absolute path of each channel joined by ``;``,
    plus ``#<series UID>`` for one series of a DICOM folder."""
    text = ";".join(os.path.normpath(os.path.abspath(str(p))) for p in paths)
    return f"{text}#{series_uid}" if series_uid else text


_SERIES_SUFFIX = re.compile(r"(?P<paths>.+)#(?P<uid>[0-9]+(?:\.[0-9]+)*)")


def parse_input_label(label: str) -> tuple[list[Path], str | None]:
    """The channel paths and series UID of an :func:`input_label`."""
    match = _SERIES_SUFFIX.fullmatch(label)
    paths, series_uid = (match["paths"], match["uid"]) if match else (label, None)
    return [Path(part) for part in paths.split(";")], series_uid


def check_case_folder(folder: str | Path, source: str) -> None:
    """Refuse (exit 4) to write a case's outputs into ``folder`` when it holds another input's outputs: its
    ``input.json`` names another input, or it holds files without one. The same input may replace its own
    outputs; a missing or empty folder is free."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise ConfigError("exists and is not a case folder; choose another output folder", path=folder)
        return
    record = folder / INPUT_RECORD
    if not record.is_file():
        if any(folder.iterdir()):
            raise ConfigError("holds outputs that record no input; choose another -o / --save-masks folder",
                              path=folder)
        return
    try:
        held = json.loads(record.read_text(encoding="utf-8")).get("input")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        held = None
    if held != source:
        shown = held if isinstance(held, str) else "an unreadable input record"
        raise ConfigError(f"holds the outputs of another input ({shown}); choose another -o / --save-masks folder",
                          path=folder)


def record_case_input(folder: str | Path, case_id: str, source: str) -> None:
    """Write ``folder/input.json``: the case id and the input its outputs came from."""
    from medxai.io.atomic import write_text_atomic

    write_text_atomic(Path(folder) / INPUT_RECORD, json.dumps({"case_id": case_id, "input": source}, indent=2) + "\n")




def scan_channels(scan: str | Path | Sequence[str | Path]) -> tuple[Path, ...]:
    """The channel files of a scan given on a command line: one path, a sequence of paths, or
    ``a.nii.gz;b.nii.gz``."""
    if isinstance(scan, (str, Path)):
        return tuple(Path(part) for part in str(scan).split(";") if part)
    return tuple(Path(part) for part in scan)


def scan_case_ids(scans: Sequence[str | Path | Sequence[str | Path]]) -> list[str]:
    """:func:`unique_case_ids` of scans given as :func:`scan_channels` takes them (named by the first channel)."""
    return unique_case_ids([scan_channels(scan)[0] for scan in scans])


def scan_source(scan: str | Path | Sequence[str | Path]) -> str:
    """What outputs record as the scan's input (:func:`input_label` of its channels)."""
    return input_label(scan_channels(scan))
