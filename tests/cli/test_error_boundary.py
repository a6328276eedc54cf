"""The one error boundary: usage errors exit 2, input errors exit 4 with one line, --version exits 0."""
from __future__ import annotations

import subprocess
import sys


def test_unknown_option_is_a_usage_error(cli):
    result = cli("--bogus")
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert "internal error" not in result.stderr


def test_missing_argument_is_a_usage_error(cli):
    result = cli("info")
    assert result.exit_code == 2


def test_missing_scan_is_one_line_exit_4(cli, tmp_path):
    result = cli("info", tmp_path / "absent.nii.gz")
    assert result.exit_code == 4
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "absent.nii.gz" in lines[0] and "Traceback" not in result.stderr


def test_version_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "medxai", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("medxai ")
