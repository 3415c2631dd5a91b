"""The embedded backend: SQLite behind a MySQL dialect translated by sqlglot.

Each database is one SQLite file in the data directory (several FEs on one
host may share it: WAL mode and a busy timeout), attached to a session's
SQLite connection on first use. Every SQLite call runs in a worker thread so
the event loop stays free; a KILL interrupts it with ``sqlite3.interrupt()``
(and ``SLEEP()`` inside SQL sleeps in short slices that notice it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from coordinator import errors
from coordinator.errors import SqlError
from frontend.backend import check_db_name, valid_db_name
from frontend.result import Result

T = TypeVar("T")
MAX_ATTACHED = 10  # SQLite's default SQLITE_MAX_ATTACHED
CACHED_STATEMENT = 4096  # longer statements are translated off the loop and not cached
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another FE's lock on a shared data directory


class SqliteBackend:
    def __init__(self, data_dir: Path, max_threads: int = 32) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(max_threads, thread_name_prefix="sqlite")

    def path(self, name: str) -> Path:
        return self.data_dir / f"{check_db_name(name).lower()}.sqlite"

    async def _in_thread(self, work: Callable[[sqlite3.Connection], T], path: str = ":memory:") -> T:
        """``work`` on a private connection in a worker thread; a cancel interrupts it."""
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
        future = asyncio.get_running_loop().run_in_executor(self.pool, work, conn)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            conn.interrupt()
            while not future.done():
                # Whatever the interrupted work raises ("interrupted", a
                # user function's error), the statement's answer is the cancel.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(future)
            raise
        except sqlite3.OperationalError as e:
            if str(e) == "interrupted":
                raise errors.interrupted() from e
            raise SqlError(errors.UNKNOWN_ERROR, str(e)) from e
        except sqlite3.Error as e:
            raise SqlError(errors.UNKNOWN_ERROR, str(e)) from e
        finally:
            self.pool.submit(conn.close)

    async def tables(self, database: str) -> list[str]:
        def names(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
            return [r[0] for r in rows]

        return await self._in_thread(names, str(self.path(database)))

    async def constant_select(self, query: exp.Select) -> Result:
        sql = query.sql(dialect="sqlite")
        columns = [p.alias_or_name if p.alias else p.sql(dialect="mysql") for p in query.expressions]

        def run(conn: sqlite3.Connection) -> Result:
            return Result(columns, conn.execute(sql).fetchall())

        return await self._in_thread(run)

    async def query_rows(
        self, query: exp.Expression, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> Result:
        sql = query.sql(dialect="sqlite")

        def run(conn: sqlite3.Connection) -> Result:
            conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
            cursor = conn.execute(sql)
            return Result([d[0] for d in cursor.description or ()], cursor.fetchall())

        return await self._in_thread(run)

    def session(self) -> SqliteSession:
        return SqliteSession(self)

    def databases(self) -> list[str]:
        return sorted(p.stem for p in self.data_dir.glob("*.sqlite"))

    def has_database(self, name: str) -> bool:
        return valid_db_name(name) and self.path(name).exists()

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
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
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
                # Whatever the interrupted work raises ("interrupted", a
                # user function's error), the statement's answer is the cancel.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(future)
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._cancelled.set()
            self._conn.interrupt()
            conn, self._conn = self._conn, None
            self.backend.pool.submit(conn.close)
