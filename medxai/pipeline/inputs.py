"""What a batch runs over: a folder of scans, a CSV manifest, or an nnU-Net-style dataset folder.

- CSV manifest (``IN.csv``, or a folder holding ``labels.csv``): ``case_id,image[,mask][,label]``, paths
  relative to the CSV (the ``medxai sample-data`` / ``labels.csv`` contract; ``a.nii.gz;b.nii.gz`` in
  ``image`` lists the channels of a multi-channel case).
- nnU-Net dataset (a folder with ``imagesTr/`` and/or ``imagesTs/``): ``<case>_0000.nii.gz`` channel files,
  masks from ``labelsTr/<case>.nii.gz`` (Isensee et al., "nnU-Net", Nat. Methods 2021, dataset format).
- Any other folder, searched recursively: every NIfTI/NRRD/MHA file is a case and every DICOM image
  series is a case; a DICOM series that is not 3D (localizer, single image) is listed as skipped; any
  other file that is not a known sidecar is listed and fails with "unsupported file type".

Case ids are made of ``[A-Za-z0-9_-]`` and unique (:func:`medxai.io.naming.unique_case_ids`): cases sharing a
file name take in the distinguishing part of their paths (``left/scan.nii.gz`` -> ``left_scan``); a
manifest's own ``case_id`` is kept (made safe) and may not repeat.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from medxai.errors import InvalidInputError
from medxai.io.data_files import read_table
from medxai.io.naming import input_label, safe_case_id, unique_case_ids

SCAN_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Files a scan folder commonly holds next to the scans; they are neither cases nor failures.
SIDECAR_SUFFIXES = (".json", ".txt", ".md", ".csv", ".tsv", ".bval", ".bvec", ".xml", ".pdf", ".log", ".raw", ".zraw")
MANIFEST_NAMES = ("labels.csv",)
CHANNEL_SEPARATOR = ";"  # several channel files in one CSV image cell, as in labels.csv for training


@dataclass(frozen=True)
class Case:
    """One unit of batch work. ``image`` is a file or a DICOM folder (with ``series_uid``)."""

    case_id: str
    image: Path
    series_uid: str | None = None
    mask: Path | None = None
    label: str | None = None
    extra_channels: tuple[Path, ...] = ()
    skip_reason: str | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every input path of the case (to keep them out of logged messages)."""
        return (self.image, *self.extra_channels, *((self.mask,) if self.mask else ()))

    @property
    def source(self) -> str:
        """The input this case's outputs record (absolute channel paths, ``#<series UID>`` for DICOM)."""
        return input_label((self.image, *self.extra_channels), self.series_uid)


@dataclass(frozen=True)
class _Named:
    """A case before its id is final: the stem its id derives from (None: the file name) or its fixed id."""

    case: Case
    stem: str | None = None
    fixed: str | None = None


def discover_cases(source: str | Path) -> list[Case]:
    """The cases of ``source`` (CSV, nnU-Net folder, scan folder or one scan), with unique ids."""
    path = Path(source)
    if not path.exists():
        raise InvalidInputError("no such input file or folder", path=path)
    if path.is_file() and path.suffix.lower() == ".csv":
        named = cases_from_csv(path)
    elif path.is_dir() and any((path / name).is_file() for name in MANIFEST_NAMES):
        named = cases_from_csv(next(path / n for n in MANIFEST_NAMES if (path / n).is_file()))
    elif path.is_dir() and ((path / "imagesTr").is_dir() or (path / "imagesTs").is_dir()):
        named = cases_from_nnunet(path)
    elif path.is_dir():
        named = cases_from_folder(path)
    else:
        named = [_Named(Case(case_id="", image=path))]
    if not named:
        raise InvalidInputError("no scans found (expected NIfTI/NRRD files, DICOM series, a CSV or nnU-Net folders)", path=path)
    ids = unique_case_ids([n.case.image for n in named], stems=[n.stem for n in named], fixed=[n.fixed for n in named])
    return [replace(n.case, case_id=case_id) for n, case_id in zip(named, ids)]


def cases_from_csv(path: Path) -> list[_Named]:
    """Rows of a ``case_id,image[,mask][,label]`` CSV; relative paths are relative to the CSV."""
    columns, rows = read_table(path, what="CSV manifest")
    if "image" not in columns:
        raise InvalidInputError(f"CSV manifest needs an 'image' column (found: {', '.join(columns) or 'none'})", path=path)
    cases, lines = [], {}
    for number, row in enumerate(rows, start=2):
        if not row.get("image"):
            raise InvalidInputError(f"line {number}: empty 'image'", path=path)
        image, *extra = [_relative_to(path.parent, p.strip()) for p in row["image"].split(CHANNEL_SEPARATOR) if p.strip()]
        raw_id = row.get("case_id") or None
        if raw_id is not None:
            first = lines.setdefault(safe_case_id(raw_id), number)
            if first != number:
                raise InvalidInputError(f"line {number}: case_id {safe_case_id(raw_id)} repeats line {first}", path=path)
        case = Case(case_id="", image=image, extra_channels=tuple(extra),
                    mask=_relative_to(path.parent, row["mask"]) if row.get("mask") else None, label=row.get("label") or None)
        cases.append(_Named(case, fixed=raw_id))
    return cases


def _relative_to(folder: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate


def cases_from_nnunet(root: Path) -> list[_Named]:
    """``imagesTr/``/``imagesTs/`` channel files grouped by case, masks from ``labelsTr/``."""
    cases = []
    for split in ("imagesTr", "imagesTs"):
        folder = root / split
        if not folder.is_dir():
            continue
        channels: dict[str, list[Path]] = {}
        for file in sorted(folder.iterdir()):
            stem = _scan_stem(file)
            if stem is None:
                continue
            name, _, channel = stem.rpartition("_")
            if not (name and len(channel) == 4 and channel.isdigit()):
                raise InvalidInputError("nnU-Net image names end in _XXXX (the channel), e.g. case_0000.nii.gz", path=file)
            channels.setdefault(name, []).append(file)
        for name, files in sorted(channels.items()):
            suffix = files[0].name[len(_scan_stem(files[0]) or ""):]
            label = root / "labelsTr" / f"{name}{suffix}"
            cases.append(_Named(Case(
                case_id="",
                image=files[0],
                extra_channels=tuple(files[1:]),
                mask=label if split == "imagesTr" and label.is_file() else None,
            ), stem=name))
    return cases


def _scan_stem(path: Path) -> str | None:
    """The file name without its scan suffix, or None when ``path`` is not a scan file."""
    lowered = path.name.lower()
    for suffix in SCAN_SUFFIXES:
        if lowered.endswith(suffix) and path.is_file():
            return path.name[: -len(suffix)]
    return None


def cases_from_folder(root: Path) -> list[_Named]:
    """Scan files and DICOM series under ``root`` (recursively), plus unsupported files as cases to fail."""
    from medxai.io.dicom import is_dicom_file

    found: list[tuple[str, _Named]] = []
    other: list[Path] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            if _scan_stem(path) is not None:
                found.append((str(path.relative_to(root)), _Named(Case(case_id="", image=path))))
            elif not name.lower().endswith(SIDECAR_SUFFIXES):
                other.append(path)
    dicom = [path for path in other if is_dicom_file(path)]
    for path in sorted(set(other) - set(dicom)):  # read_volume will fail these with "unsupported file type"
        found.append((str(path.relative_to(root)), _Named(Case(case_id="", image=path))))
    found.extend(_dicom_cases(root, dicom))
    return [case for _, case in sorted(found, key=lambda item: item[0])]


def _dicom_cases(root: Path, dicom_files: list[Path]) -> list[tuple[str, _Named]]:
    """One case per DICOM image series, named after its folder (plus the series number when a folder
    holds several); series that are not 3D (localizers, single images) are listed as skipped."""
    from medxai.io.dicom_series import discover_series

    folders = sorted({path.parent for path in dicom_files})
    tops = [f for f in folders if not any(other in f.parents for other in folders)]
    by_folder: dict[Path, list] = {}
    for top in tops:
        for info in discover_series(top):
            folder = Path(os.path.commonpath([str(f.parent) for f in info.files]))
            by_folder.setdefault(folder, []).append(info)
    cases = []
    for folder, members in sorted(by_folder.items()):
        for info in members:
            base = folder.name
            stem = base if len(members) == 1 else f"{base}_s{info.number if info.number is not None else info.uid[-8:]}"
            skip = info.problem if info.skippable else None
            case = _Named(Case(case_id="", image=folder, series_uid=info.uid, skip_reason=skip), stem=stem)
            cases.append((f"{folder.relative_to(root)}/{info.number or 0:08d}/{info.uid}", case))
    return cases
