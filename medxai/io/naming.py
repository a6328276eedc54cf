"""Case ids that are always safe as file names, whatever a file name or DICOM tag holds."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_case_id(raw: str, *, max_length: int = 64) -> str:
    """Reduce ``raw`` to ``[A-Za-z0-9._-]``, with no leading dots (so never ``..``), never empty.

    Over-long or emptied ids keep a short hash of the original so distinct inputs stay distinct.
    """
    cleaned = _UNSAFE.sub("_", raw.strip()).strip("._-")
    if not cleaned or len(cleaned) > max_length or cleaned != raw:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        if not cleaned:
            return f"case_{digest}"
        if len(cleaned) > max_length:
            return f"{cleaned[: max_length - 9]}_{digest}"
    return cleaned


def case_id_from_path(path: str | Path) -> str:
    """The case id of a scan path: its file name without the image suffix, made safe."""
    name = Path(path).name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return safe_case_id(name)
