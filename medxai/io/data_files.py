"""JSON, YAML and CSV files from outside (pipelines, bundle configs, model descriptions, manifests) read as data.

Bounded before anything is built: the file's size, YAML aliases and values (counted while composing, so an
alias bomb costs microseconds), and nesting (a RecursionError becomes a refusal). YAML goes through PyYAML's
SafeLoader, so Python tags are refused. Error messages never quote the file: it may not be what it claims
(``inherits_from: /etc/shadow``).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

from medxai.errors import InvalidInputError, one_line

MAX_FILE_BYTES = 4 << 20
MAX_ALIASES = 16
MAX_VALUES = 100_000


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (plain data only: no Python tags) with a budget of aliases and values."""

    def __init__(self, stream: str, *, max_values: int = MAX_VALUES) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.values = 0
        self.max_values = max_values

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise ComposerError(None, None, f"more than {MAX_ALIASES} aliases (refused: alias bomb?)",
                                    self.peek_event().start_mark)
        self.values += 1
        if self.values > self.max_values:
            raise ComposerError(None, None, f"more than {self.max_values} values (refused)", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text: str, *, max_values: int = MAX_VALUES) -> Any:
    """``text`` as plain data through :class:`BoundedLoader` (yaml.YAMLError when it is not, or nests too deeply).
    Aliases are few (an alias repeats a value without its cost: 16 of them can multiply a document 2^16-fold)."""
    loader = BoundedLoader(text, max_values=max_values)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong, with the line, without quoting the file's content."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error) or type(error).__name__
    return where + re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", str(problem))[:120]


def _read_text(path: Path, *, what: str, max_bytes: int, encoding: str) -> str:
    """The text of a regular file of at most ``max_bytes`` (a FIFO would block, a huge file would fill memory)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInputError(f"{what} is not a regular file", path=path)
    if info.st_size > max_bytes:
        raise InvalidInputError(f"{what} is {info.st_size} bytes (at most {max_bytes} accepted)", path=path)
    return path.read_text(encoding=encoding)


def read_data_file(path: str | Path, *, what: str, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """A JSON (or ``.yaml``/``.yml``) file parsed as plain data; InvalidInputError naming ``path`` otherwise.

    Refused before parsing: anything but a regular file (a FIFO would block) and files over ``max_bytes``."""
    path = Path(path)
    try:
        text = _read_text(path, what=what, max_bytes=max_bytes, encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            return parse_yaml(text)
        return json.loads(text)
    except yaml.YAMLError as error:
        raise InvalidInputError(f"unreadable {what} ({yaml_problem(error)})", path=path) from None
    except RecursionError:
        raise InvalidInputError(f"unreadable {what} (nested too deeply)", path=path) from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"unreadable {what} (not UTF-8 text)", path=path) from None
    except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError; its message quotes no content
        raise InvalidInputError(f"unreadable {what} ({one_line(error)[:160]})", path=path) from None


MAX_TABLE_BYTES = 256 << 20
_DELIMITERS = (",", ";", "\t")


def read_table(path: str | Path, *, what: str) -> tuple[list[str], list[dict[str, str]]]:
    """The column names and rows of a CSV that a user or a spreadsheet wrote (manifests, labels, features).

    One reader for all of them: UTF-8 with or without a byte-order mark, any line ending, quoted cells, and
    the delimiter of the header line (``,``, or ``;`` and tab as spreadsheets in many locales write them);
    names and cells stripped. Text that is not UTF-8 is refused (a guessed code page would silently change
    the paths it names). InvalidInputError naming ``path`` otherwise."""
    path = Path(path)
    try:
        text = _read_text(path, what=what, max_bytes=MAX_TABLE_BYTES, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} is not UTF-8 text: save it as 'CSV UTF-8'", path=path) from None
    except OSError as error:
        raise InvalidInputError(f"cannot read the {what} ({error.strerror or type(error).__name__})", path=path) from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = max(_DELIMITERS, key=first.count) if first else ","
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        columns = [(name or "").strip() for name in reader.fieldnames or []]
        rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()}
                for row in reader]
    except csv.Error as error:
        raise InvalidInputError(f"unreadable {what} ({one_line(error)[:160]})", path=path) from None
    return columns, rows
