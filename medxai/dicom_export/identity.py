"""What every exported object shares: the equipment that made it and how its UIDs are derived.

UIDs are new (never a source UID reused for a new object) but deterministic: derived from the source series
UID, the object kind and a digest of its content, so exporting the same case twice gives the same SOP
Instance UIDs and a PACS that receives both keeps one copy.
"""
from __future__ import annotations

import hashlib
import uuid

from pydicom.uid import UID

from medxai import __version__

MANUFACTURER = "medxai"
MODEL_NAME = "medxai"
SOFTWARE_VERSION = __version__
DEVICE_SERIAL_NUMBER = "0"  # Type 1 in Enhanced General Equipment; a software product has no serial number


def derived_uid(source_series_uid: str, *parts: object) -> UID:
    """A UUID-derived UID (PS3.5 B.2, ``2.25.<uuid>``) from a name-based UUID (RFC 4122 version 5) of the source
    series and ``parts`` (kind, name, content digest)."""
    name = "\x1f".join([str(source_series_uid), *(str(part) for part in parts)])
    return UID(f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}")


def digest(*chunks: bytes) -> str:
    """SHA-256 of the content an object is made from (so its UIDs change when the content does)."""
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()
