"""Send exported DICOM files to a PACS over DICOMweb (STOW-RS, with dicomweb-client), without duplicates.

Before storing, each instance is looked up by its SOP Instance UID (QIDO-RS): one already in the PACS is not
sent again, so a resumed or repeated export stores nothing twice (the export's UIDs are deterministic). After
the store each instance is looked up again: a refused, failed or silently dropped store raises :class:`SendError` naming the PACS and the reason; the files stay on disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit, urlunsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from medxai.errors import ConfigError, MedxaiError

SCHEMES = {"dicomweb": "http", "dicomwebs": "https", "http": "http", "https": "https"}


class SendError(MedxaiError):
    """The PACS refused the instances or could not be reached (exit 1: the outputs are written, not sent)."""


@dataclass
class SendReport:
    """What a send did: file names stored now, and those the PACS already held."""

    sent: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


def dicomweb_url(target: str) -> str:
    """``dicomweb://HOST[:PORT]/PATH`` (or ``dicomwebs://``, ``http(s)://``) as the HTTP base URL of the service."""
    parts = urlsplit(target)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise ConfigError(f"not a DICOMweb address: {target!r} (expected dicomweb://HOST[:PORT]/PATH)")
    return urlunsplit((SCHEMES[parts.scheme], parts.netloc, parts.path.rstrip("/"), "", ""))


def _present(client: DICOMwebClient, dataset: pydicom.Dataset) -> bool:
    found = client.search_for_instances(study_instance_uid=dataset.StudyInstanceUID,
                                        search_filters={"SOPInstanceUID": dataset.SOPInstanceUID})
    return bool(found)


def send_dicomweb(paths: Sequence[Path], target: str, *, timeout_s: float = 60.0, attempts: int = 5) -> SendReport:
    """Store ``paths`` in the DICOMweb service at ``target`` (skipping instances it already holds); each request
    is tried up to ``attempts`` times with exponential back-off (dicomweb-client's retry)."""
    url = dicomweb_url(target)
    client = DICOMwebClient(url, timeout=timeout_s)
    client.set_http_retry_params(retry=attempts > 1, max_attempts=attempts)
    report = SendReport()
    folder = Path(paths[0]).parent if paths else Path(".")
    try:
        pending = []
        for path in paths:
            dataset = pydicom.dcmread(path)
            (report.present if _present(client, dataset) else report.sent).append(Path(path).name)
            if Path(path).name in report.sent:
                pending.append(dataset)
        response = client.store_instances(pending) if pending else None
        missing = [d for d in pending if not _present(client, d)]  # some PACS acknowledge what a filter then drops
    except requests.RequestException as error:
        reason = " ".join(str(error).split())[:200]
        raise SendError(f"the PACS did not store the instances ({reason}); the files stay in {folder}", path=url) from None
    failed = list(response.get("FailedSOPSequence", [])) if response is not None else []
    if failed:
        reasons = sorted({str(item.get("FailureReason", "unknown")) for item in failed})
        raise SendError(f"the PACS refused {len(failed)} of {len(pending)} instance(s) (failure reason {', '.join(reasons)}); "
                        f"the files stay in {folder}", path=url)
    if missing:
        raise SendError(f"the PACS acknowledged but did not keep {len(missing)} of {len(pending)} instance(s); "
                        f"the files stay in {folder}", path=url)
    return report
