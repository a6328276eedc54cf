"""What an explanation record says about where it came from: input hashes, library versions, time."""
from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence


def _update_with_file(digest: "hashlib._Hash", path: Path) -> None:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def input_sha256(path: str | Path) -> str:
    """SHA-256 of a scan file, or of every file of a DICOM folder (sorted by relative path, names included)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(member.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
            _update_with_file(digest, member)
    else:
        _update_with_file(digest, path)
    return digest.hexdigest()


def inputs_sha256(paths: Sequence[str | Path]) -> list[str]:
    return [input_sha256(path) for path in paths]


def library_versions() -> dict[str, str]:
    """Versions of the libraries a heatmap depends on."""
    import captum
    import monai
    import numpy
    import torch

    from medxai import __version__

    return {"medxai": __version__, "torch": torch.__version__, "monai": monai.__version__, "captum": captum.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
