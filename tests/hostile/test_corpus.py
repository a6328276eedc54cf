"""Issue 24: every kind of the hostile-input corpus (``corpus.py``) through the real CLI, in a subprocess
under an address-space limit, a file-size limit where the kind asks, and a timeout.

Per kind: the expected exit code (4 for one bad input, 3 for a batch with one bad case and the others
done, 0 for inputs that must simply work, 130 for Ctrl-C); no traceback; for exit 4 exactly one stderr line
``medxai: error: ...`` naming the offending file; for exit 3 one ``medxai: error:`` line and the failed case
named; no partial output (a refused command leaves OUT as it found it, a failed case has no folder); no
empty folders under OUT; nothing written outside OUT; marker files of code-execution kinds never created;
secrets of foreign files never echoed. Select one kind with ``-k KIND``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

# RLIMIT_AS for every command. Measured on the CPU build of torch 2.13: importing torch maps ~1 GiB of
# address space, and a GOOD input passes `explain`/`score`/`segment` on the tiny model at 1.25 GiB and
# `info`/`convert`/`radiomics` at 1 GiB. 2 GiB leaves headroom while making a header that claims 13 GB
# (or a 1 GiB gzip bomb read as floats) impossible to allocate: it must be refused from the header.
ADDRESS_SPACE = 2 << 30


def _load_corpus():
    """corpus.py by path (pytest runs with --import-mode=importlib, so sibling imports do not resolve)."""
    spec = importlib.util.spec_from_file_location("medxai_hostile_corpus", Path(__file__).with_name("corpus.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """Good phantoms, a tiny model (folder, TorchScript, bundle weights) and the gzip bombs, built once; and a
    warm matplotlib cache (MPLCONFIGDIR), so that no command writes a font cache into HOME or warns that it
    cannot (under a full disk)."""
    built = corpus.build_shared(tmp_path_factory.mktemp("hostile-shared"))
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], check=True,
                   env={**os.environ, "MPLCONFIGDIR": str(built.root / "mplconfig")})
    return built


Result = corpus.Outcome


def _limits(fsize: int | None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        if fsize is not None:  # a full disk: writes past fsize fail with EFBIG instead of killing the process
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return apply


def _environment(home: Path, shared) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDXAI_") and k not in ("PYTHONWARNINGS",)}
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), TMPDIR=str(home / "tmp"), PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8",
               MPLCONFIGDIR=str(shared.root / "mplconfig"))
    return env


def _invoke(args: list[str], attempt, cwd: Path, env: dict[str, str], *, fsize: int | None = None,
            interrupt_when: Path | None = None) -> Result:
    """``python -m medxai ARGS`` in its own session (so SIGINT and a timeout reach its workers too)."""
    process = subprocess.Popen([sys.executable, "-m", "medxai", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limits(fsize),
                               start_new_session=True)
    deadline = time.monotonic() + attempt.timeout
    if interrupt_when is not None:  # Ctrl-C reaches the whole foreground process group: so does this SIGINT
        while process.poll() is None and not interrupt_when.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            time.sleep(0.5)
            os.killpg(process.pid, signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"no answer within {attempt.timeout} s (hang?): medxai {' '.join(args)}\n"
                    f"{stderr.decode(errors='replace')[-2000:]}")
    return Result(process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def _under(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def _tree(roots: tuple[Path, ...], exclude: tuple[Path, ...]) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``roots`` but outside ``exclude``: kind, size and mtime (links not followed)."""
    found: dict[str, tuple[str, int, int]] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=False):
            for name in (*dirs, *files):
                path = Path(folder) / name
                if _under(path, exclude):
                    continue
                info = path.lstat()
                folder_entry = path.is_dir() and not path.is_symlink()  # a folder's mtime changes when OUT is made in it
                found[str(path)] = (oct(info.st_mode), 0 if folder_entry else info.st_size, 0 if folder_entry else info.st_mtime_ns)
    return found


def _digests(outs: tuple[Path, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for out in outs:
        files = [out] if out.is_file() else [p for p in out.rglob("*") if p.is_file()] if out.is_dir() else []
        for path in files:
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _empty_folders(outs: tuple[Path, ...]) -> list[str]:
    return [str(p) for out in outs if out.is_dir() for p in out.rglob("*") if p.is_dir() and not any(p.iterdir())]


def _first_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[0] if lines else "(no stderr)"


def _check_streams(attempt, result: Result) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text, result.stderr[-3000:]
    if attempt.secret is not None:
        assert attempt.secret not in text, "the content of a foreign file was echoed"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.code == 4:
        assert len(lines) == 1, f"exit 4 must give exactly one stderr line, got {len(lines)}:\n{result.stderr[-3000:]}"
        line = lines[0]
        assert line.startswith("medxai: error: ") and "internal error" not in line, line
        assert len(line) <= 1000, f"error line of {len(line)} characters"
        assert any(name in line for name in attempt.names), f"the error must name one of {attempt.names}: {line}"
    elif result.code == 3:
        errors = [line for line in lines if line.startswith("medxai: error:")]
        assert len(errors) == 1, result.stderr[-3000:]
        assert any(attempt.failed in line and "fail" in line for line in lines), \
            f"the failed case {attempt.failed!r} must be named:\n{result.stderr[-3000:]}"
        assert "internal error" not in result.stderr
    elif result.code == 130:
        assert len(lines) == 1 and "interrupted" in lines[0] and "--resume" in lines[0], result.stderr[-3000:]
    elif result.code == 0:
        assert not re.search(r"\b\w+Warning: ", result.stderr), f"Python warnings on stderr:\n{result.stderr[-3000:]}"


def _check_outputs(attempt, result: Result, after_setup: dict[str, str]) -> None:
    outs = attempt.outs
    assert not _empty_folders(outs), f"empty folders left: {_empty_folders(outs)}"
    now = _digests(outs)
    for path, digest in after_setup.items():
        assert now.get(path) == digest, f"{path} (written by an earlier run) was replaced or removed"
    if result.code == 4:
        added = sorted(set(now) - set(after_setup))
        assert not added, f"a refused command left partial output: {added}"
    if result.code == 3 and attempt.failed is not None:
        leftovers = [str(p) for out in outs if out.is_dir() for p in out.rglob("*") if p.is_dir() and p.name == attempt.failed]
        assert not leftovers, f"the failed case left a folder: {leftovers}"
        manifest = outs[0] / "manifest.csv"
        if manifest.is_file():
            rows = corpus.read_manifest(outs[0])
            statuses = {row["case_id"]: row["status"] for row in rows}
            assert statuses.get(attempt.failed) == "failed", statuses
            assert all(status == "done" for case, status in statuses.items() if case.startswith("good")), statuses


@pytest.mark.parametrize("name", sorted(corpus.KINDS))
def test_hostile_input(name: str, shared, tmp_path: Path) -> None:
    spec = corpus.KINDS[name]
    inputs, work, home = tmp_path / "in", tmp_path / "work", tmp_path / "home"
    for folder in (inputs, work):
        folder.mkdir()
    env = _environment(home, shared)
    attempt = spec.build(inputs, shared)
    roots = (tmp_path, shared.root)
    before = _tree(roots, attempt.outs)
    untouched = {path: path.read_bytes() for path in attempt.untouched}

    for args in attempt.setup:
        ready = _invoke(args, attempt, work, env)
        assert ready.code == 0, f"setup run failed ({ready.code}): {_first_line(ready)}"
    after_setup = _digests(attempt.outs)

    result = _invoke(attempt.args, attempt, work, env, fsize=attempt.fsize, interrupt_when=attempt.interrupt_when)
    assert result.code in attempt.expect, \
        f"exit {result.code}, expected {sorted(attempt.expect)}; first stderr line: {_first_line(result)}"
    if attempt.marker is not None:
        assert not attempt.marker.exists(), "code from the input was executed (marker file created)"
    _check_streams(attempt, result)
    _check_outputs(attempt, result, after_setup)
    for path, content in untouched.items():
        assert path.read_bytes() == content, f"{path} was modified"
    if attempt.check is not None:
        attempt.check(attempt, result)
    for args in attempt.followups:
        again = _invoke(args, attempt, work, env)
        assert again.code in attempt.expect, f"follow-up exit {again.code}: {_first_line(again)}"
        _check_streams(attempt, again)
        if attempt.check is not None:
            attempt.check(attempt, again)
    if attempt.marker is not None:
        assert not attempt.marker.exists(), "code from the input was executed (marker file created)"
    after = _tree(roots, attempt.outs)
    changed = sorted(set(after.items()) ^ set(before.items()))
    assert not changed, f"written outside OUT: {sorted({path for path, _ in changed})[:10]}"


def test_the_corpus_is_large_and_covers_every_owner() -> None:
    assert len(corpus.KINDS) >= 65
    assert {spec.owner for spec in corpus.KINDS.values()} == set(corpus.OWNERS)
