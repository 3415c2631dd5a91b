"""The embedded SQL backend: SQLite behind a MySQL dialect translated by sqlglot.

Each database is one SQLite file in the node's data directory, attached to a
session's SQLite connection on first use. Statements run in a worker thread so
the event loop stays free; a KILL interrupts them with ``sqlite3.interrupt()``
(and ``SLEEP()`` inside SQL sleeps in short slices that notice it).

The backend is an interface (``Backend`` / ``BackendSession``) so a deployment
can put a real MySQL-protocol database behind the FEs instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from coordinator import errors
from coordinator.errors import SqlError
from frontend.result import Result

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
MAX_ATTACHED = 10  # SQLite's default SQLITE_MAX_ATTACHED
CACHED_STATEMENT = 4096  # longer statements are translated off the loop and not cached


class BackendSession(Protocol):
    async def execute(self, sql: str, database: str | None) -> Result: ...

    def close(self) -> None: ...


class Backend(Protocol):
    def session(self) -> BackendSession: ...

    def databases(self) -> list[str]: ...

    def create_database(self, name: str, if_not_exists: bool) -> None: ...

    def drop_database(self, name: str, if_exists: bool) -> None: ...

    def has_database(self, name: str) -> bool: ...


def check_db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise SqlError(errors.BAD_DB, f"Incorrect database name '{name}'")
    return name


class SqliteBackend:
    def __init__(self, data_dir: Path, max_threads: int = 32) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(max_threads, thread_name_prefix="sqlite")

    def path(self, name: str) -> Path:
        return self.data_dir / f"{check_db_name(name).lower()}.sqlite"

    def session(self) -> SqliteSession:
        return SqliteSession(self)

    def databases(self) -> list[str]:
        return sorted(p.stem for p in self.data_dir.glob("*.sqlite"))

    def has_database(self, name: str) -> bool:
        return _DB_NAME.match(name) is not None and self.path(name).exists()

    def create_database(self, name: str, if_not_exists: bool) -> None:
        path = self.path(name)
        if path.exists():
            if if_not_exists:
                return
            raise SqlError(errors.DB_CREATE_EXISTS, f"Can't create database '{name}'; database exists")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()

    def drop_database(self, name: str, if_exists: bool) -> None:
        path = self.path(name)
        if not path.exists():
            if if_exists:
                return
            raise SqlError(errors.DB_DROP_EXISTS, f"Can't drop database '{name}'; database doesn't exist")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@lru_cache(maxsize=2048)
def translate(sql: str, database: str | None) -> tuple[str, frozenset[str], bool]:
    """MySQL text -> (SQLite text, databases it names, whether it returns rows)."""
    try:
        tree = sqlglot.parse_one(sql, read="mysql")
    except ParseError as e:
        raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax: {e}") from e
    dbs: set[str] = set()
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.name or table.name.lower() in ctes:
            continue
        db = table.args.get("db")
        if db is None:
            if database is None:
                raise SqlError(errors.NO_DB, "No database selected")
            table.set("db", exp.to_identifier(database.lower()))
        else:
            db.set("this", db.name.lower())
        dbs.add(table.db.lower())
    returns_rows = isinstance(tree, exp.Query | exp.Show | exp.Describe)
    return tree.sql(dialect="sqlite"), frozenset(dbs), returns_rows


class SqliteSession:
    """One client session's SQLite connection, opened on first use."""

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self._conn: sqlite3.Connection | None = None
        self._attached: set[str] = set()
        self._cancelled = threading.Event()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            conn.create_function("sleep", 1, self._sleep)
            self._conn = conn
        return self._conn

    def _sleep(self, seconds: float) -> int:
        deadline = time.monotonic() + float(seconds or 0)
        while (left := deadline - time.monotonic()) > 0:
            if self._cancelled.wait(min(left, 0.01)):
                raise sqlite3.OperationalError("interrupted")
        return 0

    def _attach(self, conn: sqlite3.Connection, dbs: frozenset[str]) -> None:
        for db in dbs - self._attached:
            path = self.backend.path(db)
            if not path.exists():
                raise SqlError(errors.BAD_DB, f"Unknown database '{db}'")
            if len(self._attached) >= MAX_ATTACHED:
                for old in list(self._attached - dbs):
                    conn.execute(f'DETACH DATABASE "{old}"')
                    self._attached.discard(old)
            conn.execute("ATTACH DATABASE ? AS " + f'"{db}"', (str(path),))
            self._attached.add(db)

    def _run_untranslated(self, sql: str, database: str | None) -> Result:
        sqlite_sql, dbs, returns_rows = translate.__wrapped__(sql, database)
        return self._run(sqlite_sql, dbs, returns_rows)

    def _run(self, sql: str, dbs: frozenset[str], returns_rows: bool) -> Result:
        conn = self._connection()
        self._attach(conn, dbs)
        try:
            cursor = conn.execute(sql)
            if cursor.description is None:
                return Result(affected_rows=max(cursor.rowcount, 0))
            columns = [d[0] for d in cursor.description]
            return Result(columns=columns, rows=cursor.fetchall())
        except sqlite3.OperationalError as e:
            if str(e) == "interrupted":
                raise errors.interrupted() from e
            raise SqlError(errors.UNKNOWN_ERROR, str(e)) from e
        except sqlite3.Error as e:
            raise SqlError(errors.UNKNOWN_ERROR, str(e)) from e

    async def execute(self, sql: str, database: str | None) -> Result:
        self._cancelled.clear()
        loop = asyncio.get_running_loop()
        if len(sql) > CACHED_STATEMENT:
            # A bulk statement: translate it in the worker thread (seconds of
            # parsing must not stall the event loop) and keep it out of the cache.
            future = loop.run_in_executor(self.backend.pool, self._run_untranslated, sql, database)
        else:
            sqlite_sql, dbs, returns_rows = translate(sql, database)
            future = loop.run_in_executor(self.backend.pool, self._run, sqlite_sql, dbs, returns_rows)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Stop the statement in its thread, then wait for the thread to let
            # go of the connection before anyone uses it again, even if we are
            # cancelled again meanwhile.
            self._cancelled.set()
            if self._conn is not None:
                self._conn.interrupt()
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(future)
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._cancelled.set()
            self._conn.interrupt()
            conn, self._conn = self._conn, None
            self.backend.pool.submit(conn.close)
