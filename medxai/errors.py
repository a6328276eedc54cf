"""The MedxaiError hierarchy. Each class knows the exit code the CLI maps it to (DESIGN.md)."""
from __future__ import annotations

from pathlib import Path


class MedxaiError(Exception):
    """Base of every error the library raises on purpose. Exit code 1 unless a subclass says otherwise."""

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InvalidInputError(MedxaiError):
    """A scan, mask, manifest or model file that cannot be used as given (exit 4)."""

    exit_code = 4


class ConfigError(MedxaiError):
    """An invalid option value, pipeline file or parameter file (exit 4)."""

    exit_code = 4


class UsageError(MedxaiError):
    """The command line itself is wrong (exit 2, like Typer/Click usage errors)."""

    exit_code = 2


class BatchIncompleteError(MedxaiError):
    """A batch finished but some cases failed (exit 3). ``failed`` lists the case ids."""

    exit_code = 3

    def __init__(self, message: str, *, failed: list[str]) -> None:
        self.failed = list(failed)
        super().__init__(message)


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace runs collapsed, as the CLI prints errors), or its type's name."""
    return " ".join(str(error).split()) or type(error).__name__
