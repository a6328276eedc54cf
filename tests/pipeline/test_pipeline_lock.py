"""One run per output folder: a held lock refuses a second run; a dead holder's lock is taken over."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from medxai.errors import ConfigError
from medxai.pipeline.lock import LOCK_NAME, RunLock

HOLDER = """
import sys, time
from medxai.pipeline.lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_lock_in_subprocess(out):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_lock_held_by_another_process_refuses_then_is_taken_over_when_it_dies(tmp_path):
    out = tmp_path / "out"
    holder = hold_lock_in_subprocess(out)
    try:
        with pytest.raises(ConfigError, match=f"^{out}: output folder is locked by pid {holder.pid} on host "):
            RunLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).read_text().split()[0] == str(holder.pid)   # stale content left by kill -9
    with RunLock(out) as lock:
        assert (out / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        with pytest.raises(ConfigError, match=f"locked by pid {os.getpid()}"):
            RunLock(out).acquire()                                          # even from this same process
        assert lock.path == out / LOCK_NAME
    assert (out / LOCK_NAME).read_text() == ""                             # released: no pid left behind
    with RunLock(out):
        pass


def test_lock_is_released_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with RunLock(tmp_path):
            raise RuntimeError("boom")
    with RunLock(tmp_path):        # would raise "locked by pid" had the failed run kept its lock
        pass
