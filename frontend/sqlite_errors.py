"""SQLite's errors as MySQL's: codes, SQLSTATEs and messages, never with a
path of the data directory."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from coordinator import errors
from coordinator.errors import SqlError


def sql_error(e: sqlite3.Error, data_dir: Path | None = None) -> SqlError:
    """A SQLite error as MySQL words, never with a path of the data directory."""
    text = str(e)
    if data_dir is not None:
        text = text.replace(str(data_dir), "<data>")
    if isinstance(e, sqlite3.OperationalError) and text == "interrupted":
        return errors.interrupted()
    if text.startswith(("not authorized", "authorization denied")) or re.match(r"access to \S+ is prohibited", text):
        return SqlError(errors.SPECIFIC_ACCESS_DENIED, "Access denied; the embedded backend does not allow this")
    m = re.match(r"no such table: (\S+)", text)
    if m:
        return SqlError(errors.NO_SUCH_TABLE, f"Table '{m.group(1)}' doesn't exist")
    if text.endswith("syntax error") or text.startswith("incomplete input"):
        return SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax: {text}")
    m = re.match(r"unknown database (\S+)", text)
    if m:
        return SqlError(errors.BAD_DB, f"Unknown database '{m.group(1)}'")
    m = re.match(r"no such savepoint: (\S+)", text)
    if m:
        return SqlError(errors.NO_SUCH_FUNCTION, f"SAVEPOINT {m.group(1)} does not exist")
    # A path we did not expect (two or more slashes): say nothing of it.
    text = re.sub(r"[^\s'\"]*/[^\s'\"]*/[^\s'\"]*", "<path>", text)
    return SqlError(errors.UNKNOWN_ERROR, text)
