"""Send exported DICOM files to a PACS over DICOMweb (STOW-RS, with dicomweb-client), without duplicates.

Before storing, each instance is looked up by its SOP Instance UID (QIDO-RS): one already in the PACS is not
sent again, so a resumed or repeated export stores nothing twice (the export's UIDs are deterministic). After
the store each instance is looked up again: a refused, failed or silently dropped store raises :class:`SendError` naming the PACS and the reason; the files stay on disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

from medxai.errors import ConfigError, MedxaiError

SCHEMES = {"dicomweb": "http", "dicomwebs": "https", "http": "http", "https": "https"}


class SendError(MedxaiError):
    """The PACS refused the instances or could not be reached (exit 1: the outputs are written, not sent)."""


@dataclass
class SendReport:
    """What a send did: file names stored now, and those the PACS already held."""

    sent: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Service:
    """A DICOMweb service: its HTTP base URL without credentials (safe to print) and the ``user:password``
    of the address, if any (sent as HTTP basic authentication, never printed)."""

    url: str
    auth: tuple[str, str] | None = None


def dicomweb_service(target: str) -> Service:
    """``dicomweb://[USER:PASSWORD@]HOST[:PORT]/PATH`` (or ``dicomwebs://``, ``http(s)://``); a query is ignored."""
    parts = urlsplit(target)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ConfigError(f"not a DICOMweb address: {_redacted(target)!r} (expected dicomweb://HOST[:PORT]/PATH)")
    try:
        host = f"{parts.hostname}:{parts.port}" if parts.port is not None else parts.hostname
    except ValueError:
        raise ConfigError(f"not a DICOMweb address: {_redacted(target)!r} (bad port)") from None
    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username is not None else None
    return Service(urlunsplit((SCHEMES[parts.scheme], host, parts.path.rstrip("/"), "", "")), auth)


def _redacted(target: str) -> str:
    """``target`` without its ``user:password@`` part."""
    parts = urlsplit(target)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else target


def dicomweb_url(target: str) -> str:
    """The HTTP base URL of the service at ``target`` (without credentials)."""
    return dicomweb_service(target).url


def dicomweb_client(service: Service, *, timeout_s: float = 60.0, attempts: int = 5) -> DICOMwebClient:
    """A client of ``service``; each request is tried up to ``attempts`` times with exponential back-off."""
    session = create_session_from_user_pass(*service.auth) if service.auth else None
    client = DICOMwebClient(service.url, session=session, timeout=timeout_s)
    client.set_http_retry_params(retry=attempts > 1, max_attempts=attempts)
    return client


def _present(client: DICOMwebClient, dataset: pydicom.Dataset) -> bool:
    found = client.search_for_instances(study_instance_uid=dataset.StudyInstanceUID,
                                        search_filters={"SOPInstanceUID": dataset.SOPInstanceUID})
    return bool(found)


def send_dicomweb(paths: Sequence[Path], target: str, *, timeout_s: float = 60.0, attempts: int = 5) -> SendReport:
    """Store ``paths`` in the DICOMweb service at ``target`` (skipping instances it already holds); each request
    is tried up to ``attempts`` times with exponential back-off (dicomweb-client's retry)."""
    service = dicomweb_service(target)
    url = service.url
    client = dicomweb_client(service, timeout_s=timeout_s, attempts=attempts)
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
