"""Read a study from a PACS over DICOMweb (QIDO-RS to list its series, WADO-RS to retrieve them, with
dicomweb-client) into a local folder the normal input discovery then reads, one series per case.

Address: ``dicomweb://[USER:PASSWORD@]HOST[:PORT]/PATH?StudyInstanceUID=UID[&SeriesInstanceUID=UID]``
(``dicomwebs://``, ``http(s)://`` alike). Only image series are retrieved (CT, MR, PET, NM... image storage
SOP classes): segmentations, parametric maps, structured reports, presentation states and documents in the
study (such as medxai's own outputs sent back earlier) are skipped.

Layout: ``OUT/.inputs/<16 hex digits of the address' SHA-256>/<MODALITY>_<SeriesNumber>/<n>.dcm`` (no patient
identifier in any folder or file name; a dotted folder, which no case id can be). A series folder appears only
once complete (written as ``<name>.tmp``, then renamed); ``.retrieved.json`` marks the study complete, after
which a resumed run reads the folder without asking the PACS again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests
from pydicom.errors import InvalidDicomError
from pydicom import uid as uids

from medxai.dicom_export.send import SCHEMES, Service, dicomweb_client, dicomweb_service
from medxai.errors import ConfigError, InvalidInputError
from medxai.io.atomic import write_text_atomic

FOLDER = ".inputs"
MARKER = ".retrieved.json"
QUERY_KEYS = ("StudyInstanceUID", "SeriesInstanceUID")
SOP_CLASS, MODALITY, SERIES_UID, SERIES_NUMBER = "00080016", "00080060", "0020000E", "00200011"
IMAGE_SOP_CLASSES = frozenset({
    uids.CTImageStorage, uids.EnhancedCTImageStorage, uids.LegacyConvertedEnhancedCTImageStorage,
    uids.MRImageStorage, uids.EnhancedMRImageStorage, uids.LegacyConvertedEnhancedMRImageStorage,
    uids.PositronEmissionTomographyImageStorage, uids.EnhancedPETImageStorage,
    uids.LegacyConvertedEnhancedPETImageStorage, uids.NuclearMedicineImageStorage,
})


@dataclass(frozen=True)
class StudyAddress:
    """A study (or one of its series) in a DICOMweb service."""

    service: Service
    study_uid: str
    series_uid: str | None = None

    @property
    def display(self) -> str:
        """The address without credentials (for messages)."""
        series = f"&SeriesInstanceUID={self.series_uid}" if self.series_uid else ""
        return f"{self.service.url}?StudyInstanceUID={self.study_uid}{series}"


def is_pacs_address(text: str | Path) -> bool:
    """Whether ``text`` is a DICOMweb address rather than a local path (a ``Path`` never is)."""
    return isinstance(text, str) and "://" in text and urlsplit(text).scheme in SCHEMES


def parse_study_address(text: str) -> StudyAddress:
    """The service, study and optional series of a ``dicomweb://...?StudyInstanceUID=UID`` address."""
    service = dicomweb_service(text)
    query = parse_qsl(urlsplit(text).query, keep_blank_values=True)
    unknown = sorted({key for key, _ in query} - set(QUERY_KEYS))
    values = dict(query)
    if unknown or not values.get("StudyInstanceUID"):
        raise ConfigError(f"{service.url}: a PACS input names a study: ?StudyInstanceUID=UID[&SeriesInstanceUID=UID]"
                          + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    for key, value in values.items():
        if not uids.UID(value).is_valid:
            raise ConfigError(f"{service.url}: {key} {value[:70]!r} is not a DICOM UID")
    return StudyAddress(service, values["StudyInstanceUID"], values.get("SeriesInstanceUID") or None)


def study_folder(address: StudyAddress, out_dir: Path) -> Path:
    """Where the study of ``address`` is retrieved to in ``out_dir`` (the same for the same address)."""
    return Path(out_dir) / FOLDER / hashlib.sha256(address.display.encode()).hexdigest()[:16]


def retrieve_study(address: StudyAddress, out_dir: Path, *, timeout_s: float = 60.0, attempts: int = 3) -> Path:
    """Retrieve the image series of ``address`` into :func:`study_folder` (series already there are not
    fetched again; a completed study is not asked for again) and return that folder.

    A PACS that cannot be reached, a study it does not hold or one without image series raise
    :class:`InvalidInputError` naming the address; series retrieved before the failure stay for a resume.
    """
    root = study_folder(address, out_dir)
    if (root / MARKER).is_file():
        return root
    client = dicomweb_client(address.service, timeout_s=timeout_s, attempts=attempts)
    filters = {"SeriesInstanceUID": address.series_uid} if address.series_uid else None
    try:
        found = client.search_for_series(study_instance_uid=address.study_uid, search_filters=filters, get_remaining=True)
        if not found:
            raise InvalidInputError(f"the PACS holds no {'such series' if filters else 'such study'}", path=address.display)
        images, skipped = _image_series(client, address.study_uid, found)
        if not images:
            raise InvalidInputError(f"the study holds no image series (found {', '.join(skipped)})", path=address.display)
        for name, series_uid in images.items():
            if not (root / name).is_dir():
                _retrieve_series(client, address.study_uid, series_uid, root / name)
    except requests.RequestException as error:
        _remove_empty(root, out_dir)
        reason = " ".join(str(error).split())[:200]
        raise InvalidInputError(f"cannot retrieve the study from the PACS ({reason})", path=address.display) from None
    except (InvalidDicomError, ValueError) as error:
        _remove_empty(root, out_dir)
        raise InvalidInputError(f"the PACS sent an instance that cannot be stored ({error})", path=address.display) from None
    except InvalidInputError:
        _remove_empty(root, out_dir)
        raise
    record = {"address": address.display, "series": images, "skipped": skipped}
    write_text_atomic(root / MARKER, json.dumps(record, indent=2) + "\n")
    return root


def _image_series(client, study_uid: str, found: list[dict]) -> tuple[dict[str, str], list[str]]:
    """The image series of a QIDO-RS series listing as ``{folder name: series UID}`` (folder names from
    modality and series number, made unique), and a ``MODALITY #number`` line for each skipped series."""
    images: dict[str, str] = {}
    skipped: list[str] = []
    rows = [(_value(item, SERIES_NUMBER) or "", _value(item, SERIES_UID) or "", _value(item, MODALITY) or "OT")
            for item in found]
    for number, series_uid, modality in sorted(rows, key=lambda row: (_number(row[0]), row[1])):
        instances = client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                                get_remaining=True) if series_uid else []
        if not instances or not {_value(item, SOP_CLASS) for item in instances} <= IMAGE_SOP_CLASSES:
            skipped.append(f"{modality} #{number or '?'}")
            continue
        name = "_".join("".join(c for c in part if c.isalnum())[:16] or "x" for part in (modality, number))
        if name in images:
            name = f"{name}_{hashlib.sha256(series_uid.encode()).hexdigest()[:8]}"
        images[name] = series_uid
    return images, skipped


def _retrieve_series(client, study_uid: str, series_uid: str, target: Path) -> None:
    """WADO-RS one series into ``target`` (via ``target.tmp``: the folder appears only when complete)."""
    partial = target.with_name(f"{target.name}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for index, dataset in enumerate(client.iter_series(study_uid, series_uid)):
            dataset.save_as(partial / f"{index:05d}.dcm", enforce_file_format=True)
    except (requests.RequestException, InvalidDicomError, OSError, ValueError):
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(target)


def _remove_empty(root: Path, out_dir: Path) -> None:
    """Remove the study folder and ``OUT/.inputs`` where a failed retrieval left them empty."""
    for folder in (root, Path(out_dir) / FOLDER):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _value(item: dict, tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or [None]
    return None if values[0] is None else str(values[0])


def _number(text: str) -> tuple[int, str]:
    return (int(text), "") if text.lstrip("-").isdigit() else (1 << 31, text)
