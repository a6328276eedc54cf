"""One run per output folder: an advisory ``fcntl.flock`` on ``OUT/.medxai.lock`` holding pid and host.

The kernel drops a flock when its process dies, even on ``kill -9``, so a lock left by a dead run is
simply taken over by the next one; the pid/host text is only there to name the holder in the error.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from medxai.errors import ConfigError

LOCK_NAME = ".medxai.lock"


class RunLock:
    """Context manager holding the exclusive lock of ``out_dir`` (created if missing)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 200).decode("utf-8", "replace").split()
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise ConfigError(f"cannot lock the output folder ({error.strerror})", path=self.out_dir) from None
            pid, host = (holder + ["?", "?"])[:2]
            raise ConfigError(
                f"output folder is locked by pid {pid} on host {host} (another medxai run is writing to it)",
                path=self.out_dir,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empty the file (so a finished run leaves no pid behind) and drop the lock."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.release()
