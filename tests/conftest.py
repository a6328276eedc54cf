"""Shared fixtures: the real-data folder and a runner for the real CLI entry point."""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("MEDXAI_TEST_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The real de-identified data set (MEDXAI_TEST_DATA, default ../shared/data); skips when absent."""
    folder = shared_data_dir()
    if not (folder / "MANIFEST.md").is_file():
        pytest.skip(f"real test data not found at {folder} (set MEDXAI_TEST_DATA)")
    return folder


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def invoke(*args: str) -> CliResult:
    """Run ``medxai ARGS`` through the real entry point (``medxai.cli.main.run``) in-process."""
    from medxai.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run([str(a) for a in args])
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """``cli("info", path)`` -> CliResult(exit_code, stdout, stderr)."""
    return invoke
