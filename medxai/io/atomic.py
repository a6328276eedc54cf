"""Atomic file output: write to a temporary sibling, then rename, so no reader ever sees half a file.

Output locations are checked before the work (:func:`output_folder`, :func:`output_file`: a file where a
folder is expected, a folder that cannot be written); a write that fails on the way (full disk, file size
limit, read-only) is one :class:`OutputError` (exit 4) naming the file, its temporary file removed.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from medxai.errors import ConfigError

# Failures that are about where the output goes, not about the data: reported as one line naming the file.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                            errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTEMPTY})


class OutputError(ConfigError):
    """An output that cannot be written (where it goes, or a full disk): it stops a whole batch (exit 4),
    unlike a bad case, since every other case would fail the same way."""


def output_error(error: OSError, path: str | Path) -> OutputError:
    """The one-line error for an output that cannot be written."""
    return OutputError(f"cannot write here ({error.strerror or type(error).__name__})", path=path)


def _suffix(path: Path) -> str:
    """The full multi-part suffix (``.nii.gz``), which writers such as nibabel use to pick a format."""
    return "".join(path.suffixes[-2:]) if path.suffixes[-1:] == [".gz"] else path.suffix


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, on error remove it."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{_suffix(target)}", dir=target.parent)
    except OSError as error:
        raise output_error(error, target) from None
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; shared outputs need the umask's mode
        os.replace(temporary, target)
    except OSError as error:
        if error.errno not in _OUTPUT_ERRNOS:
            raise
        raise output_error(error, target) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _create_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, innermost first."""
    missing = []
    current = folder
    while not current.exists() and not current.is_symlink() and current != current.parent:
        missing.append(current)
        current = current.parent
    if current.exists() and not current.is_dir():
        raise OutputError("is a file, not a folder", path=current)
    created = []
    try:
        for item in reversed(missing):
            item.mkdir()
            created.insert(0, item)
    except OSError as error:
        remove_empty_folders(created)
        raise OutputError(f"cannot create the output folder ({error.strerror})", path=folder) from None
    return created


def _probe(folder: Path) -> None:
    """Fail now, not after the computation, when no file can be created in ``folder``."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".medxai-probe.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise OutputError(f"cannot write in the output folder ({error.strerror})", path=folder) from None
    os.close(handle)
    os.unlink(probe)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of ``folders`` (innermost first) that is empty; keep the others."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Check that ``path`` can be the output folder before the work (creating it and its missing parents,
    probing that a file can be written there); on exit remove the folders it created that stayed empty."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError("is a file, not a folder: choose a folder for -o", path=folder)
    created = _create_folder(folder)
    try:
        _probe(folder)
        yield folder
    finally:
        remove_empty_folders(created)


@contextlib.contextmanager
def output_file(path: str | Path) -> Iterator[Path]:
    """Check that ``path`` can be written (not a folder; its folder created and writable) before the work;
    on exit remove the folders it created that stayed empty."""
    target = Path(path)
    if target.is_dir():
        raise OutputError("is a folder: give a file name for the output", path=target)
    with output_folder(target.parent):
        yield target
