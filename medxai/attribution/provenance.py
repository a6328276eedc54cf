"""What an explanation record says about where it came from: input hashes, library versions, time."""
from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medxai.volume import Volume

HASHED_FILE = "file"
HASHED_VOXELS = "voxels and affine"


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


def volume_sha256(volume: Volume) -> str:
    """SHA-256 of an already-read scan: its voxels (dtype, shape, values) and its affine, so one series of a
    DICOM folder holding several is told apart from the others."""
    data = np.ascontiguousarray(volume.data)
    digest = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
    digest.update(data.tobytes())
    digest.update(np.ascontiguousarray(volume.affine, dtype=np.float64).tobytes())
    return digest.hexdigest()


def input_records(inputs: Sequence[Path | Volume]) -> list[dict[str, Any]]:
    """One provenance entry per input channel: its SHA-256 and what was hashed (the file, or the voxels and
    affine of a scan given already read)."""
    return [{"channel": i, "sha256": volume_sha256(item), "hashed": HASHED_VOXELS} if isinstance(item, Volume)
            else {"channel": i, "sha256": input_sha256(item), "hashed": HASHED_FILE}
            for i, item in enumerate(inputs)]


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
