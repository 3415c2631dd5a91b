"""SQLite's errors as MySQL's: codes, SQLSTATEs and messages, never with a
path of the data directory."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    for pattern, build in _MAPPED:
        m = pattern.match(text)
        if m:
            return build(m)
    # A path we did not expect (two or more slashes): say nothing of it.
    text = re.sub(r"[^\s'\"]*/[^\s'\"]*/[^\s'\"]*", "<path>", text)
    return SqlError(errors.UNKNOWN_ERROR, text)


DUP_ENTRY = 1062
BAD_NULL = 1048
NO_DEFAULT = 1364
BAD_FIELD = 1054
NON_UNIQ = 1052
TABLE_EXISTS = 1050
DUP_FIELDNAME = 1060
CANT_DROP_KEY = 1091
NO_REFERENCED_ROW = 1452
ROW_IS_REFERENCED = 1451
CHECK_VIOLATED = 3819
LOCK_WAIT_TIMEOUT = 1205
LOCK_DEADLOCK = 1213
# The SQLSTATEs of the codes above (coordinator.errors knows the FE's own).
STATES = {
    DUP_ENTRY: "23000",
    BAD_NULL: "23000",
    NO_DEFAULT: "HY000",
    BAD_FIELD: "42S22",
    NON_UNIQ: "23000",
    TABLE_EXISTS: "42S01",
    DUP_FIELDNAME: "42S21",
    CANT_DROP_KEY: "42000",
    NO_REFERENCED_ROW: "23000",
    ROW_IS_REFERENCED: "23000",
    CHECK_VIOLATED: "HY000",
    LOCK_WAIT_TIMEOUT: "HY000",
    LOCK_DEADLOCK: "40001",
}


def _error(code: int, message: str) -> SqlError:
    return SqlError(code, message, STATES[code])


def deadlock() -> SqlError:
    """The transaction was rolled back: the session must start it again."""
    return _error(LOCK_DEADLOCK, "Deadlock found when trying to get lock; try restarting transaction")


def row_is_referenced() -> SqlError:
    """A parent row's DELETE/UPDATE refused by a FOREIGN KEY (SQLite does not say which)."""
    return _error(ROW_IS_REFERENCED, "Cannot delete or update a parent row: a foreign key constraint fails")


def lock_wait_timeout() -> SqlError:
    """The statement waited innodb_lock_wait_timeout for a lock; the transaction stays."""
    return _error(LOCK_WAIT_TIMEOUT, "Lock wait timeout exceeded; try restarting transaction")


# SQLite's constraint and name errors -> MySQL's (pattern on SQLite's text, builder).
_MAPPED: list[tuple[re.Pattern[str], Callable[[re.Match[str]], SqlError]]] = [
    (
        re.compile(r"NOT NULL constraint failed: (?:[^.\s]+\.)?(\S+)$"),
        lambda m: _error(BAD_NULL, f"Column '{m.group(1)}' cannot be null"),
    ),
    (
        re.compile(r"no such column: (\S+)$"),
        lambda m: _error(BAD_FIELD, f"Unknown column '{m.group(1)}' in 'field list'"),
    ),
    (
        re.compile(r"ambiguous column name: (\S+)$"),
        lambda m: _error(NON_UNIQ, f"Column '{m.group(1)}' in field list is ambiguous"),
    ),
    (
        re.compile(r"(?:table|view) (\S+) already exists$"),
        lambda m: _error(TABLE_EXISTS, f"Table '{m.group(1).split('.')[-1]}' already exists"),
    ),
    (
        re.compile(r"duplicate column name: (\S+)$"),
        lambda m: _error(DUP_FIELDNAME, f"Duplicate column name '{m.group(1)}'"),
    ),
    (
        re.compile(r"no such index: (?:\S+\.)?(?:[^$\s]+\$)?(\S+)$"),
        lambda m: _error(CANT_DROP_KEY, f"Can't DROP '{m.group(1)}'; check that column/key exists"),
    ),
    (
        re.compile(r"FOREIGN KEY constraint failed$"),
        lambda m: _error(NO_REFERENCED_ROW, "Cannot add or update a child row: a foreign key constraint fails"),
    ),
    (
        re.compile(r"CHECK constraint failed: (.+)$"),
        lambda m: _error(CHECK_VIOLATED, f"Check constraint '{m.group(1)}' is violated."),
    ),
    (
        re.compile(r"UNIQUE constraint failed: (.+)$"),
        lambda m: _error(DUP_ENTRY, f"Duplicate entry '' for key '{m.group(1)}'"),
    ),
]

Reader = Callable[[str, tuple[Any, ...]], tuple[list[tuple[Any, ...]], list[str]]]  # rows, column names


def duplicate_key(message: str, read: Reader, translation: Any, params: tuple[Any, ...]) -> SqlError:
    """1062 for SQLite's "UNIQUE constraint failed: t.a, t.b": the key as
    MySQL names it (PRIMARY, or the index's own name) and the duplicate value
    where the statement shows it (an INSERT's rows, an UPDATE's SET)."""
    columns = [c.strip() for c in message.partition(":")[2].split(",")]
    table = columns[0].rpartition(".")[0] if columns else ""
    names = [c.rpartition(".")[2] for c in columns]
    dbs = sorted(translation.databases) if translation is not None else []
    db = translation.target[0] if translation is not None and translation.target else (dbs[0] if len(dbs) == 1 else "")
    key = "PRIMARY"
    if db and table:
        for name, sql in read(
            f"SELECT name, sql FROM \"{db}\".sqlite_master WHERE type = 'index' AND tbl_name = ? COLLATE NOCASE",
            (table,),
        )[0]:
            m = re.search(r"\(([^()]*)\)\s*$", sql or "")
            if m and [c.strip().strip('"`').lower() for c in m.group(1).split(",")] == [n.lower() for n in names]:
                key = name.partition("$")[2] or name
                break
    value = _duplicate_value(read, db, table, names, translation, params) if db and table else None
    return _error(DUP_ENTRY, f"Duplicate entry '{'' if value is None else value}' for key '{key}'")


def _duplicate_value(
    read: Reader, db: str, table: str, names: list[str], translation: Any, params: tuple[Any, ...]
) -> str | None:
    """The key value that collided: the first of the statement's rows already
    in the table or earlier in the statement (MySQL joins a key's parts with '-')."""
    from sqlglot import exp, parse_one  # the error path only: parsed again, in the worker thread

    try:
        tree = parse_one(translation.sql, dialect="sqlite")
    except Exception:  # noqa: BLE001 - a statement sqlglot cannot read again: no value to show
        return None
    places = iter(params)

    def value(node: exp.Expr) -> Any:
        if isinstance(node, exp.Placeholder):
            return next(places, None)
        if isinstance(node, exp.Literal):
            return node.this if node.is_string else node.to_py()
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            # -'5' is -5 (MySQL reads quoted text as a number under a minus); text no number reads raises ValueError
            number = exp.Literal.number(node.this.this).to_py()
            if isinstance(number, str):  # never for a number literal; it narrows the type
                raise ValueError(number)
            return -number
        if isinstance(node, exp.Null):
            return None
        raise ValueError(node.sql())

    candidates: list[tuple[Any, ...]] = []
    wanted = [n.lower() for n in names]
    try:
        if isinstance(tree, exp.Insert):
            if isinstance(tree.this, exp.Schema):
                order = [c.name.lower() for c in tree.this.expressions]
            else:  # no column list: the table's columns in order
                order = [c.lower() for c in read(f'SELECT * FROM "{db}"."{table}" LIMIT 0', ())[1]]
            values = tree.expression
            if isinstance(values, exp.Values) and all(n in order for n in wanted):
                for row in values.expressions:
                    cells = [value(c) for c in row.expressions]
                    candidates.append(tuple(cells[order.index(n)] for n in wanted))
        elif isinstance(tree, exp.Update):
            sets = {e.this.name.lower(): e.expression for e in tree.expressions if isinstance(e, exp.EQ)}
            if all(n in sets for n in wanted):
                candidates.append(tuple(value(sets[n]) for n in wanted))
    except (ValueError, StopIteration):
        return None
    seen: set[tuple[Any, ...]] = set()
    condition = " AND ".join(f'"{n}" IS ?' for n in names)
    for candidate in candidates[:1000]:
        if candidate in seen or read(f'SELECT 1 FROM "{db}"."{table}" WHERE {condition} LIMIT 1', candidate)[0]:
            return "-".join("NULL" if v is None else str(v) for v in candidate)
        seen.add(candidate)
    return None
