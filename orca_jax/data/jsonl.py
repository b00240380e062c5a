"""JSON Lines reading for every one-object-per-line file the project reads (traces, benchmark
tasks, predictions, judge answers, prompt sets): blank lines are skipped and a bad line is a
`BadRecord` reporting `FILE:LINE: field: problem`, so the user can find and fix it."""

from __future__ import annotations

import json
from typing import Iterator

from orca_jax.errors import UserError


class BadRecord(UserError):
    """A record that cannot be used; names where it is and what was expected."""

    def __init__(self, path: str, line: int, field: str, problem: str):
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{path}:{line}: {field}: {problem}")


def jsonl_records(path: str) -> Iterator[tuple[int, dict | BadRecord]]:
    """(line number, object or the BadRecord that line is), for readers that may skip bad lines."""
    with open(path, "rb") as f:
        yield from _records(f, path)


def read_jsonl(path: str, flag: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; the first bad line raises its BadRecord.

    `flag` is the command-line option that named the file: with it, a file that cannot be
    opened raises UserError("FLAG PATH: reason"); without, the OSError reaches the caller
    (which may know better what a missing file means).
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        if flag is None:
            raise
        raise UserError(f"{flag} {path}: {e.strerror}") from None
    with f:
        for lineno, rec in _records(f, path):
            if isinstance(rec, BadRecord):
                raise rec
            yield lineno, rec


def _records(f, path: str) -> Iterator[tuple[int, dict | BadRecord]]:
    for lineno, raw in enumerate(f, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield lineno, BadRecord(path, lineno, "(line)", f"invalid UTF-8 at byte {e.start}")
            continue
        if not text.strip():
            continue
        try:
            rec = json.loads(text.rstrip("\r\n"))  # so the column of an unfinished line is on that line
        except json.JSONDecodeError as e:
            yield lineno, BadRecord(path, lineno, "(line)", f"broken JSON: {e.msg} at column {e.colno}")
            continue
        if not isinstance(rec, dict):
            yield lineno, BadRecord(path, lineno, "(line)", f"expected a JSON object, got {type(rec).__name__}")
            continue
        yield lineno, rec
