"""The embedded backend: SQLite behind a MySQL dialect translated by sqlglot.

Each database is one SQLite file in the data directory (several FEs on one
host may share it: WAL mode; a writer waits for another's lock up to the
session's innodb_lock_wait_timeout), attached to a session's
SQLite connection on first use. Every SQLite call runs in a worker thread so
the event loop stays free; a KILL interrupts it with ``sqlite3.interrupt()``
(and ``SLEEP()`` inside SQL sleeps in short slices that notice it).

Sealed: every connection it opens has an authorizer (``sqlite_authorizer``)
that refuses ATTACH/DETACH (except the backend's own, run with a flag set),
and so ``VACUUM INTO``, every PRAGMA but a few read-only ones (and the pragma
table-valued functions), ``load_extension`` and virtual tables; a session's
connection also checks the session user's grants on every table SQLite
reports (``Grants``). Error messages are MySQL's (``sqlite_errors``) and never
carry the data directory's paths.

A session's result is streamed: its first batch comes with the answer, the
rest (``Result.more``) is fetched a batch at a time in a worker thread as the
client reads, so a SELECT of millions of rows holds one batch in the FE.
Results the FE builds itself (information_schema, constant SELECTs) are
fetched whole and capped (``MAX_RESULT_ROWS``, ``MAX_RESULT_BYTES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.users import UserRecord
from frontend.backend import BackendLogin, Column, Index, check_db_name, valid_db_name
from frontend.result import Result
from frontend.sqlite_authorizer import CHANGES_TRIGGER, READ_ONLY_PRAGMAS, Grants, Seal
from frontend.sqlite_errors import deadlock, duplicate_key, lock_wait_timeout, row_is_referenced, sql_error
from frontend.sqlite_translate import (
    CACHED_STATEMENT,
    EXPLAIN_COLUMNS,
    FUNCTIONS,
    LAST_INSERT_ID,
    LIVENESS_CHECK,
    ROW_COUNT,
    StatementWarnings,
    Translation,
    explain_row,
    index_name,
    mysql_function,
    notes,
    register_functions,
    sqlite_literals,
    translate,
    translate_tree,
)
from frontend.sqlite_types import NUMERIC_COLLATION, bindable, compare_numeric, mysql_declared_type
from frontend.sqlparse import parse
from frontend.wire.answer import Command

__all__ = ["MAX_RESULT_BYTES", "MAX_RESULT_ROWS", "SqliteBackend", "SqliteSession", "sql_error", "translate"]

T = TypeVar("T")
MAX_ATTACHED = 10  # SQLite's default SQLITE_MAX_ATTACHED
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another FE's lock on a shared data directory
FETCH_BATCH = 1000
TYPED_ROWS = 10 * FETCH_BATCH  # at most this many rows read ahead to type a column NULL so far
MAX_RESULT_ROWS = 1_000_000
MAX_RESULT_BYTES = 64 * 1024 * 1024  # estimated: text and blob lengths, 8 per number, 16 per value
_SAVEPOINT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
STATEMENT_SAVEPOINT = "fe_statement"  # each write inside a transaction runs under it
# A write inside a transaction stops at its next liveness check after a KILL; one
# without any (INSERT ... VALUES) gets SQLite's interrupt after this many seconds,
# which ends the whole transaction (the session is then told: 1213).
INTERRUPT_GRACE = 1.0
LOCK_ATTEMPT = 0.05  # seconds SQLite's own busy handler waits per attempt: a KILL is seen between attempts
DEFAULT_LOCK_WAIT_TIMEOUT = 50.0  # MySQL's innodb_lock_wait_timeout
_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_BUSY_RECOVERY", "SQLITE_BUSY_TIMEOUT", "SQLITE_LOCKED"})
_AUTO_INCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)  # AUTO_INCREMENT as translated


def _sealed(
    path: str = ":memory:",
    detect_types: int = 0,
    pragmas: frozenset[str] = frozenset(),
    seal: Seal | None = None,
    timeout: float = BUSY_TIMEOUT,
    warnings: StatementWarnings | None = None,
) -> tuple[sqlite3.Connection, Seal]:
    """A connection with MySQL's collation and functions (their warnings go to
    ``warnings``), FOREIGN KEYs on, and the seal."""
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=timeout, detect_types=detect_types
    )
    conn.create_collation(NUMERIC_COLLATION, compare_numeric)
    register_functions(conn, warnings or StatementWarnings())
    conn.execute("PRAGMA foreign_keys = ON")  # MySQL's FOREIGN KEYs are enforced (before the seal: no PRAGMA after)
    seal = seal or Seal(pragmas)
    conn.set_authorizer(seal)
    return conn, seal


@dataclass(frozen=True)
class NotedColumn(Column):
    """A column with what MySQL's DDL said of it (the translation keeps it in notes)."""

    charset: str | None = None
    collation: str | None = None
    comment: str = ""
    auto_increment: bool = False


@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    referenced_table: str
    referenced_columns: list[str]
    on_update: str
    on_delete: str


@dataclass
class TableNotes:
    comment: str = ""
    foreign_keys: list[ForeignKey] = field(default_factory=list)


_NAMED_FOREIGN_KEY = re.compile(r"CONSTRAINT\s+(\S+)\s+FOREIGN\s+KEY\s*\(([^)]*)\)", re.IGNORECASE)


def _create_text(conn: sqlite3.Connection, table: str) -> str:
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", (table,)
    ).fetchone()
    return (row[0] or "") if row else ""


def _unseen_column(rows: list[tuple[Any, ...]]) -> bool:
    """Some column has no value but NULL in ``rows``."""
    return bool(rows) and any(all(row[i] is None for row in rows) for i in range(len(rows[0])))


def _value_size(value: Any) -> int:
    if isinstance(value, str | bytes):
        return 16 + len(value)
    return 16


def _fetch(cursor: sqlite3.Cursor) -> list[tuple[Any, ...]]:
    """All rows, in batches, within the caps (SqlError 1105 past them)."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    while batch := cursor.fetchmany(FETCH_BATCH):
        time.sleep(0)  # hand the GIL to the event loop now, not after the 5 ms switch interval
        rows.extend(batch)
        size += sum(_value_size(v) for row in batch for v in row) + 56 * len(batch)
        if len(rows) > MAX_RESULT_ROWS or size > MAX_RESULT_BYTES:
            cursor.close()
            raise SqlError(
                errors.UNKNOWN_ERROR,
                f"Result too large: more than {MAX_RESULT_ROWS} rows or {MAX_RESULT_BYTES >> 20} MB;"
                " add a LIMIT or a WHERE",
            )
    return rows


async def _settle(future: asyncio.Future[Any]) -> None:
    """Wait for an interrupted worker to let go, whatever it raises (its
    "interrupted" must not replace the cancel) and even if cancelled again."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" noise


class SqliteBackend:
    relays = False
    names_fold_case = True  # SQLite's table names; database files are named in lower case

    async def start(self) -> None:
        pass

    def __init__(self, data_dir: Path, max_threads: int = 32) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(max_threads, thread_name_prefix="sqlite")

    def path(self, name: str) -> Path:
        return self.data_dir / f"{check_db_name(name).lower()}.sqlite"

    async def _in_thread(
        self,
        work: Callable[[sqlite3.Connection], T],
        path: str = ":memory:",
        warnings: StatementWarnings | None = None,
    ) -> T:
        """``work`` on a private, sealed connection in a worker thread; a cancel interrupts it."""
        conn, _ = _sealed(path, pragmas=READ_ONLY_PRAGMAS, warnings=warnings)
        # interrupt() only stops a statement already running: a cancel that lands
        # while the worker is still queued or loading rows must stop it too.
        cancelled = threading.Event()
        conn.set_progress_handler(cancelled.is_set, 10_000)
        future = asyncio.get_running_loop().run_in_executor(self.pool, work, conn)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            conn.interrupt()
            await _settle(future)
            raise
        except sqlite3.Error as e:
            raise sql_error(e, self.data_dir) from e
        finally:
            self.pool.submit(conn.close)

    async def tables(self, database: str) -> list[str]:
        def names(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                " ORDER BY name"  # SQLite's own (sqlite_sequence, sqlite_stat1) are not the user's
            ).fetchall()
            return [r[0] for r in rows]

        return await self._in_thread(names, str(self.path(database)))

    async def views(self, database: str) -> list[str]:
        """The database's views (``tables`` lists its tables only): for information_schema's
        TABLES (TABLE_TYPE 'VIEW') and SHOW FULL TABLES; ``columns`` reads a view's too."""

        def names(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")]

        return await self._in_thread(names, str(self.path(database)))

    async def columns(self, database: str, table: str) -> list[Column]:
        """The table's columns (SqlError 1146 when there is no such table),
        with what MySQL's DDL said of them (``NotedColumn``)."""

        def read(conn: sqlite3.Connection) -> list[Column]:
            rows = conn.execute('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (table,))
            create = _create_text(conn, table)
            noted, _ = notes(create)
            auto = _AUTO_INCREMENT.search(create) is not None
            found: list[Column] = []
            for name, declared, notnull, default, pk in rows:
                note = noted.get(name.lower(), {})
                found.append(
                    NotedColumn(
                        name,
                        mysql_declared_type(declared or ""),
                        not notnull and not pk,  # MySQL: a PRIMARY KEY's columns are NOT NULL
                        default,
                        int(pk),
                        charset=note.get("charset") or None,
                        collation=note.get("collation") or None,
                        comment=note.get("comment") or "",
                        auto_increment=auto and bool(pk) and (declared or "").upper().startswith("INT"),
                    )
                )
            if not found:
                raise SqlError(errors.NO_SUCH_TABLE, f"Table '{database}.{table}' doesn't exist")
            return found

        if not self.exists(database):
            raise SqlError(errors.BAD_DB, f"Unknown database '{database}'")
        return await self._in_thread(read, str(self.path(database)))

    async def table_notes(self, database: str, table: str) -> TableNotes:
        """The table's COMMENT and FOREIGN KEYs (SHOW CREATE TABLE, information_schema)."""

        def read(conn: sqlite3.Connection) -> TableNotes:
            create = _create_text(conn, table)
            _, note = notes(create)
            named = {
                m.group(2).split(",")[0].strip().strip('"`').lower(): m.group(1).strip('"`')
                for m in _NAMED_FOREIGN_KEY.finditer(create)
            }
            keys: dict[int, ForeignKey] = {}
            for key_id, _seq, parent, column, to, on_update, on_delete, _match in conn.execute(
                "SELECT * FROM pragma_foreign_key_list(?)", (table,)
            ).fetchall():
                key = keys.get(key_id)
                if key is None:
                    key = keys[key_id] = ForeignKey("", [], parent, [], on_update, on_delete)
                key.columns.append(column)
                key.referenced_columns.append(to)
            ordered = [keys[i] for i in sorted(keys, reverse=True)]  # SQLite lists them last first
            n = 0
            for key in ordered:
                key.name = named.get(key.columns[0].lower(), "")
                if not key.name:
                    n += 1
                    key.name = f"{table}_ibfk_{n}"
            return TableNotes(note.get("comment", ""), ordered)

        return await self._in_thread(read, str(self.path(database)))

    async def indexes(self, database: str, table: str) -> list[Index]:
        """The table's secondary indexes (the primary key is in ``columns``)."""

        def read(conn: sqlite3.Connection) -> list[Index]:
            found = []
            for row in conn.execute('SELECT name, "unique", origin FROM pragma_index_list(?)', (table,)).fetchall():
                if row[2] == "pk":
                    continue  # a PRIMARY KEY's own index: reported as PRIMARY from the columns
                names = [r[0] for r in conn.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (row[0],))]
                name = row[0].removeprefix(index_name(table, ""))  # older tables' indexes: as they were named
                found.append(Index(name, bool(row[1]), names))
            return found

        return await self._in_thread(read, str(self.path(database)))

    async def constant_select(self, query: exp.Select) -> Result:
        sql = sqlite_literals(query.transform(mysql_function)).sql(dialect="sqlite")
        columns = [p.alias_or_name if p.alias else p.sql(dialect="mysql") for p in query.expressions]

        warnings = StatementWarnings()

        def run(conn: sqlite3.Connection) -> Result:
            rows = _fetch(conn.execute(sql))
            return Result(columns, rows, warnings=list(warnings.items))

        return await self._in_thread(run, warnings=warnings)

    async def query_rows(
        self, query: exp.Expr, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> Result:
        return await self.query_tables(query, {table: (columns, rows)})

    async def query_tables(
        self, query: exp.Expr, tables: Mapping[str, tuple[Sequence[str], Sequence[tuple[Any, ...]]]]
    ) -> Result:
        sql = query.sql(dialect="sqlite")

        def run(conn: sqlite3.Connection) -> Result:
            for table, (columns, rows) in tables.items():
                # MySQL compares information_schema's text without regard to case (tools write 'yes', 'YES')
                conn.execute(f"CREATE TABLE {table} ({', '.join(c + ' COLLATE NOCASE' for c in columns)})")
                conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
            cursor = conn.execute(sql)
            return Result([d[0] for d in cursor.description or ()], _fetch(cursor))

        return await self._in_thread(run)

    def session(
        self,
        on_thread: Callable[[int], None] | None = None,
        *,
        login: BackendLogin | None = None,
        user: Callable[[], UserRecord | None] | None = None,
        lock_wait_timeout: Callable[[], float] | None = None,
    ) -> SqliteSession:
        """``on_thread`` and ``login`` are a relaying backend's (no connection, no
        server login here). ``user`` gives the session user's current record (the FE's cache),
        read before each statement: SQLite's authorizer checks its grants (None:
        no check, the FE's own work). ``lock_wait_timeout`` gives the session's
        ``innodb_lock_wait_timeout`` in seconds (None: ``lock_wait_timeout``
        attribute, 50 s as MySQL's default)."""
        return SqliteSession(self, user, lock_wait_timeout)

    async def databases(self) -> list[str]:
        return sorted(p.stem for p in self.data_dir.glob("*.sqlite"))

    async def has_database(self, name: str) -> bool:
        return self.exists(name)

    def exists(self, name: str) -> bool:
        """``has_database`` for the worker threads."""
        return valid_db_name(name) and self.path(name).exists()

    async def kill_threads(self, thread_ids: Sequence[int | tuple[str, int]]) -> None:
        return None  # an embedded backend dies with its FE

    async def create_database(self, name: str, if_not_exists: bool) -> None:
        path = self.path(name)
        if path.exists():
            if if_not_exists:
                return
            raise SqlError(errors.DB_CREATE_EXISTS, f"Can't create database '{name}'; database exists")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()

    async def drop_database(self, name: str, if_exists: bool) -> None:
        path = self.path(name)
        if not path.exists():
            if if_exists:
                return
            raise SqlError(errors.DB_DROP_EXISTS, f"Can't drop database '{name}'; database doesn't exist")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class SqliteSession:
    """One client session's SQLite connection, opened on first use.

    Transactions are SQLite's own on this connection. ``BEGIN`` (and the first
    statement with autocommit off) is issued lazily, right before the next
    statement, after that statement's databases and the current one are
    attached: SQLite cannot ATTACH inside a transaction, so a transaction
    uses the databases attached when it began (a statement naming another
    one gets a clear error).

    Inside a transaction each write runs under a savepoint, as InnoDB's
    statement atomicity: a failed or interrupted statement is undone alone and
    the transaction goes on. Where SQLite ended the whole transaction anyway,
    the statement (or, after a KILL, the next one) answers 1213 and nothing
    later runs as if the transaction were still open.

    Lock waits: SQLite's busy handler waits ``LOCK_ATTEMPT`` at a time, and
    the worker retries until the session's innodb_lock_wait_timeout (1205) or
    a KILL (1317).

    Isolation, in MySQL's words: REPEATABLE READ until the transaction's first
    write; reads before a transaction's first write may see a newer snapshot
    from that write on. SQLite has one writer per database file and a writer
    must write on the latest committed data. So a transaction reads one
    snapshot until it first writes; if another session committed since that
    snapshot, its first write (or its first SELECT ... FOR UPDATE / LOCK IN
    SHARE MODE) ends the read transaction, which has changed nothing, and
    begins again with the write lock (BEGIN IMMEDIATE, waiting as any lock
    wait: 1205, 1317; the transaction stays open on the old terms if the wait
    fails). The write then runs on the latest committed rows, as InnoDB's
    writes do even in REPEATABLE READ, and the transaction's later reads see
    that newer snapshot. From its first write on a transaction holds the
    write lock until COMMIT or ROLLBACK: no other session writes meanwhile,
    so it cannot be overtaken again. A locking read takes the write lock the
    same way (SQLite has no row locks) and reads the latest committed rows.
    Only a transaction that has written and is then overtaken on another
    database it had only read answers 1213 (rolled back)."""

    def __init__(
        self,
        backend: SqliteBackend,
        user: Callable[[], UserRecord | None] | None = None,
        lock_wait_timeout: Callable[[], float] | None = None,
    ) -> None:
        self.backend = backend
        self._user = user
        self._lock_wait_timeout = lock_wait_timeout
        self.lock_wait_timeout = DEFAULT_LOCK_WAIT_TIMEOUT  # seconds, when no callable gives it
        self._conn: sqlite3.Connection | None = None
        self._seal = Grants()
        self._user_name = ""  # the last known user's name, for a denial once the record is gone
        self._attached: set[str] = set()
        self._cancelled = threading.Event()
        self._gentle = False  # a write inside a transaction runs: a KILL waits for its liveness check
        self._hard_after = 0.0  # monotonic time past which a gentle statement gets SQLite's interrupt
        self._lost = False  # SQLite ended the transaction under a KILL: the next statement answers 1213
        self._autocommit = True
        self._begin_pending = False  # BEGIN said, not yet issued (see the class doc)
        self._wrote = False  # the open transaction has a write that took effect: it cannot begin again
        self._writer = False  # the open transaction began with the write lock (BEGIN IMMEDIATE)
        self._early_savepoints: list[str] = []  # SAVEPOINTs set before its first write, to set again
        self._found_rows = 0  # FOUND_ROWS(): rows of the last SELECT (without its LIMIT if SQL_CALC_FOUND_ROWS)
        self._counting_rows = True  # a streamed SELECT adds its batches to _found_rows
        self._changed = 0  # rows the running UPDATE changed (CHANGES_TRIGGER counts them)
        self._warnings = StatementWarnings()  # the running statement's (SHOW WARNINGS)
        self._last_insert_id = 0  # LAST_INSERT_ID(): the first id the last INSERT generated, or as set
        self._row_count = -1  # ROW_COUNT(): the last statement's affected rows, -1 after a SELECT
        self.database: str | None = None

    @property
    def in_transaction(self) -> bool:
        return self._begin_pending or (self._conn is not None and self._conn.in_transaction)

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn, _ = _sealed(
                detect_types=sqlite3.PARSE_DECLTYPES, seal=self._seal, timeout=LOCK_ATTEMPT, warnings=self._warnings
            )
            conn.create_function(LAST_INSERT_ID, -1, self._last_insert_id_function)
            conn.create_function(ROW_COUNT, 0, lambda: self._row_count)
            conn.create_function("sleep", 1, self._sleep)
            conn.create_function("found_rows", 0, lambda: self._found_rows)
            conn.create_function(LIVENESS_CHECK, 0, self._go)
            conn.create_function(CHANGES_TRIGGER, 0, self._count_change)
            for name, function in FUNCTIONS.items():
                conn.create_function(name, 0, function)
            # A KILL that lands before the worker has started the statement
            # (interrupt() is then a no-op) still stops it at its first steps.
            conn.set_progress_handler(self._stop_now, 10_000)
            self._conn = conn
        return self._conn

    def _last_insert_id_function(self, *value: Any) -> int:
        """LAST_INSERT_ID() and LAST_INSERT_ID(expr) (which sets it, as in MySQL)."""
        if value:
            self._last_insert_id = int(value[0] or 0)
        return self._last_insert_id

    def _stop_now(self) -> bool:
        return self._cancelled.is_set() and (not self._gentle or time.monotonic() > self._hard_after)

    def _count_change(self) -> None:
        self._changed += 1

    def _go(self) -> int:
        if self._cancelled.is_set():
            raise sqlite3.OperationalError("interrupted")
        return 1

    def _sleep(self, seconds: float) -> int:
        deadline = time.monotonic() + float(seconds or 0)
        while (left := deadline - time.monotonic()) > 0:
            if self._cancelled.wait(min(left, 0.01)):
                raise sqlite3.OperationalError("interrupted")
        return 0

    def _own(self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> None:
        """The backend's own ATTACH/DETACH: the seal lets these through."""
        self._seal.own = True
        try:
            conn.execute(sql, params)
        finally:
            self._seal.own = False

    def _attach(self, conn: sqlite3.Connection, dbs: frozenset[str] | set[str]) -> None:
        missing = dbs - self._attached
        if not missing:
            return
        if conn.in_transaction:
            raise SqlError(
                errors.UNKNOWN_ERROR,
                f"database '{sorted(missing)[0]}' was not used when this transaction began:"
                " COMMIT or ROLLBACK first (the embedded backend cannot add one inside a transaction)",
            )
        for db in missing:
            path = self.backend.path(db)
            if not path.exists():
                raise SqlError(errors.BAD_DB, f"Unknown database '{db}'")
            if len(self._attached) >= MAX_ATTACHED:
                for old in list(self._attached - dbs):
                    self._own(conn, f'DETACH DATABASE "{old}"')
                    self._attached.discard(old)
            self._own(conn, "ATTACH DATABASE ? AS " + f'"{db}"', (str(path),))
            self._attached.add(db)

    def _begin_if_due(self, conn: sqlite3.Connection, dbs: frozenset[str]) -> None:
        if conn.in_transaction or (self._autocommit and not self._begin_pending):
            return
        wanted = set(dbs)
        if self.database and self.backend.exists(self.database):
            wanted.add(self.database.lower())
        self._attach(conn, frozenset(wanted))
        conn.execute("BEGIN")  # deferred: the first write takes the lock (and waits for it) for its database
        self._begin_pending = False
        self._wrote = self._writer = False
        self._early_savepoints = []

    def _begin_as_writer(self, conn: sqlite3.Connection) -> None:
        """The open transaction, which has changed nothing, begun again with the
        write lock on the latest committed data (see the class doc); its
        savepoints are set again. If the lock cannot be had (1205, a KILL) the
        transaction goes on as a new deferred one, and the error is raised."""
        conn.execute("ROLLBACK")
        try:
            self._locked(conn, lambda: conn.execute("BEGIN IMMEDIATE"))
            self._writer = True
        except BaseException:
            if not conn.in_transaction:
                conn.execute("BEGIN")
            raise
        finally:
            for name in self._early_savepoints:
                conn.execute(f'SAVEPOINT "{name}"')

    def _timeout(self) -> float:
        return self._lock_wait_timeout() if self._lock_wait_timeout is not None else self.lock_wait_timeout

    def _locked(self, conn: sqlite3.Connection, work: Callable[[], T], undo: str | None = None) -> T:
        """``work``, retried while another connection holds the lock it needs,
        up to innodb_lock_wait_timeout (1205, the transaction kept) or a KILL
        (interrupted); ``undo`` is run before each retry (the statement's savepoint)."""
        deadline = time.monotonic() + self._timeout()
        while True:
            try:
                return work()
            except sqlite3.OperationalError as e:
                name = getattr(e, "sqlite_errorname", "")
                if name == "SQLITE_BUSY_SNAPSHOT" and conn.in_transaction:
                    raise _Overtaken() from e
                if name == "SQLITE_BUSY_SNAPSHOT":
                    name = "SQLITE_BUSY"  # an autocommit statement's own snapshot: it simply runs again
                if name not in _BUSY:
                    raise
                if undo is not None and conn.in_transaction:
                    conn.execute(undo)
                if self._cancelled.is_set():
                    raise sqlite3.OperationalError("interrupted") from e
                if time.monotonic() >= deadline:
                    raise lock_wait_timeout() from e
                # SQLite waits by itself only when this connection holds no read snapshot yet.
                self._cancelled.wait(0.005)

    def _run(
        self,
        sql: str,
        database: str | None,
        tree: exp.Expr | None,
        params: tuple[Any, ...],
        user: UserRecord | None,
    ) -> Result:
        conn: sqlite3.Connection | None = None
        was_in = False
        try:
            # Translated here, in the worker thread: parsing must not stall the
            # event loop (seconds for a bulk INSERT); short statements are cached.
            self._warnings.clear()
            if tree is not None:
                translation = translate_tree(tree, database, sql)
            elif len(sql) <= CACHED_STATEMENT:
                translation = translate(sql, database)
            else:
                translation = translate_tree(parse(sql), database, sql)
            if translation.system_table is not None:
                raise _system_denial(sql, translation, (user.name if user is not None else self._user_name) or "root")
            conn = self._connection()
            if self._seal.start(self._user is not None, user, translation.ddl):
                conn.set_authorizer(self._seal)  # statements SQLite keeps prepared are authorized again
            self._attach(conn, translation.databases)
            self._begin_if_due(conn, translation.databases)
            was_in = conn.in_transaction
            if was_in and translation.locking and not self._writer and not self._wrote:
                self._begin_as_writer(conn)  # FOR UPDATE: the write lock, and the latest committed rows
            if was_in and translation.writes:
                result = self._statement_in_transaction(conn, translation, params)
            else:
                result = self._locked(conn, lambda: self._statement(conn, translation, translation.sql, params))
            self._row_count = -1 if result.columns else result.affected_rows
            if result.last_insert_id:
                self._last_insert_id = result.last_insert_id
            if self._warnings.items:
                result.warnings = list(self._warnings.items)
            return result
        except _Overtaken:
            self._rollback_quietly(conn)
            raise deadlock() from None
        except sqlite3.Error as e:
            denied = self._seal.denial(self._user_name)
            if denied is not None:
                raise denied from e
            if self._warnings.error is not None:  # a warning MySQL's strict mode makes an error
                self._rollback_if_lost(conn, was_in)
                raise self._warnings.error from e
            if was_in and conn is not None and not conn.in_transaction and not self._cancelled.is_set():
                raise deadlock() from e  # SQLite ended the transaction (SQLITE_FULL, IOERR, ...): never silently
            raise self._error(conn, e, translation if "translation" in locals() else None, params) from e

    def _statement_in_transaction(
        self, conn: sqlite3.Connection, translation: Translation, params: tuple[Any, ...]
    ) -> Result:
        """A write under the statement savepoint; the transaction's first write,
        overtaken by another writer, begins it again with the write lock (the
        class doc) and runs once more."""
        try:
            result = self._write_in_transaction(conn, translation, params)
        except _Overtaken:
            if self._wrote or self._writer:
                raise
            self._begin_as_writer(conn)
            result = self._write_in_transaction(conn, translation, params)
        self._wrote = True
        return result

    def _write_in_transaction(
        self, conn: sqlite3.Connection, translation: Translation, params: tuple[Any, ...]
    ) -> Result:
        """A write under the statement savepoint: on error only it is undone."""
        conn.execute(f"SAVEPOINT {STATEMENT_SAVEPOINT}")
        sql = translation.guarded or translation.sql
        self._gentle = True
        try:
            result = self._locked(
                conn,
                lambda: self._statement(conn, translation, sql, params),
                undo=f"ROLLBACK TO {STATEMENT_SAVEPOINT}",
            )
        except BaseException:
            self._gentle = False
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {STATEMENT_SAVEPOINT}")
                conn.execute(f"RELEASE {STATEMENT_SAVEPOINT}")
            elif self._cancelled.is_set():
                self._lost = True  # SQLite's interrupt ended the transaction: the next statement says so
            raise
        self._gentle = False
        conn.execute(f"RELEASE {STATEMENT_SAVEPOINT}")
        return result

    def _rollback_if_lost(self, conn: sqlite3.Connection | None, was_in: bool) -> None:
        if was_in and conn is not None and not conn.in_transaction and not self._cancelled.is_set():
            raise deadlock()

    @staticmethod
    def _rollback_quietly(conn: sqlite3.Connection | None) -> None:
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _statement(
        self, conn: sqlite3.Connection, translation: Translation, sql: str, params: tuple[Any, ...]
    ) -> Result:
        if translation.noop:
            return Result()
        if translation.then:
            return self._create_with_indexes(conn, translation)
        if translation.changes is not None:
            return self._update(conn, translation.changes, sql, params)
        cursor = conn.execute(sql, params)
        if translation.explain:
            return Result(list(EXPLAIN_COLUMNS), [explain_row(row[3]) for row in cursor.fetchall()])
        if cursor.description is None:
            affected = max(cursor.rowcount, 0)
            last_id = 0
            if translation.target is not None and affected and self._has_key_alias(conn, *translation.target):
                # MySQL's LAST_INSERT_ID of a multi-row INSERT is its first generated id
                last_id = (cursor.lastrowid or 0) - affected + 1
            info = ""
            if translation.records is not None:  # MySQL's words for a multi-row INSERT
                given = affected if translation.records < 0 else translation.records
                duplicates = given - affected if translation.ignore else 0
                info = f"Records: {given}  Duplicates: {duplicates}  Warnings: 0"
            return Result(affected_rows=affected, last_insert_id=max(last_id, 0), info=info)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchmany(FETCH_BATCH)
        # The wire layer types the columns from the first rows: read on while a
        # column has shown nothing but NULL (a bounded number of batches).
        while len(rows) % FETCH_BATCH == 0 and len(rows) < TYPED_ROWS and _unseen_column(rows):
            batch = cursor.fetchmany(FETCH_BATCH)
            rows.extend(batch)
            if not batch:
                break
        self._found_rows = len(rows)
        more = self._rest(cursor) if rows and len(rows) % FETCH_BATCH == 0 else None
        self._counting_rows = translation.count_sql is None
        if translation.count_sql is not None:
            self._found_rows = conn.execute(translation.count_sql).fetchone()[0]
        return Result(columns=columns, rows=rows, more=more)

    def _update(
        self, conn: sqlite3.Connection, changes: tuple[str, str, tuple[str, ...]], sql: str, params: tuple[Any, ...]
    ) -> Result:
        """An UPDATE with MySQL's counts: SQLite's are the rows it matched; a
        temporary trigger counts those whose values (as stored, after the
        column's affinity) changed, MySQL's affected rows. Created and dropped
        around the statement (a schema change of this connection's temp only)."""
        db, table, columns = changes
        changed = " OR ".join(f"OLD.{_quoted(c)} IS NOT NEW.{_quoted(c)}" for c in columns)
        self._changed = 0
        self._own(
            conn,
            f"CREATE TEMP TRIGGER IF NOT EXISTS {CHANGES_TRIGGER} AFTER UPDATE ON {_quoted(db)}.{_quoted(table)}"
            f" WHEN {changed} BEGIN SELECT {CHANGES_TRIGGER}(); END",
        )
        try:
            matched = max(conn.execute(sql, params).rowcount, 0)
        finally:
            with contextlib.suppress(sqlite3.Error):  # gone already if the statement's rollback took it
                self._own(conn, f"DROP TRIGGER IF EXISTS temp.{CHANGES_TRIGGER}")
        changed_rows = min(self._changed, matched)
        return Result(
            affected_rows=changed_rows,
            found_rows=matched,
            info=f"Rows matched: {matched}  Changed: {changed_rows}  Warnings: 0",
        )

    def _internal(self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The backend's own read of the catalogue, not the user's: no grant check."""
        return self._internal_read(conn, sql, params)[0]

    def _internal_read(
        self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]
    ) -> tuple[list[tuple[Any, ...]], list[str]]:
        check, self._seal.check = self._seal.check, False
        try:
            cursor = conn.execute(sql, params)
            return cursor.fetchall(), [d[0] for d in cursor.description or ()]
        finally:
            self._seal.check = check

    def _has_key_alias(self, conn: sqlite3.Connection, db: str, table: str) -> bool:
        """The table has an AUTO_INCREMENT column (SQLite's INTEGER PRIMARY KEY AUTOINCREMENT, the rowid)."""
        rows = self._internal(
            conn, f"SELECT sql FROM \"{db}\".sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", (table,)
        )
        return bool(rows) and _AUTO_INCREMENT.search(rows[0][0] or "") is not None

    def _error(
        self,
        conn: sqlite3.Connection | None,
        e: sqlite3.Error,
        translation: Translation | None,
        params: tuple[Any, ...],
    ) -> SqlError:
        if conn is not None and isinstance(e, sqlite3.IntegrityError) and str(e).startswith("UNIQUE constraint"):
            try:
                return duplicate_key(
                    str(e), lambda sql, args: self._internal_read(conn, sql, args), translation, params
                )
            except sqlite3.Error:
                pass  # the catalogue could not be read: the plain mapping below
        if (
            isinstance(e, sqlite3.IntegrityError)
            and str(e).startswith("FOREIGN KEY")
            and translation is not None
            and translation.sql.lstrip()[:6].upper() in ("DELETE", "UPDATE", "DROP T", "REPLAC")
            and translation.target is None
            and not self._is_child(conn, translation)
        ):
            return row_is_referenced()
        return sql_error(e, self.backend.data_dir)

    def _is_child(self, conn: sqlite3.Connection | None, translation: Translation) -> bool:
        """The UPDATE's table has foreign keys of its own (its failure is then the child's: 1452)."""
        if conn is None or translation.changes is None:
            return False
        db, table, _ = translation.changes
        try:
            rows = self._internal(
                conn,
                f"SELECT sql FROM \"{db}\".sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
                (table,),
            )
        except sqlite3.Error:
            return False
        return bool(rows) and re.search(r"\bREFERENCES\b", rows[0][0] or "", re.IGNORECASE) is not None

    @staticmethod
    def _create_with_indexes(conn: sqlite3.Connection, translation: Translation) -> Result:
        """CREATE TABLE and its keys' CREATE INDEX as one: all of them or none."""
        conn.execute("SAVEPOINT fe_create_table")
        try:
            conn.execute(translation.sql)
            for statement in translation.then:
                conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK TO fe_create_table")
            raise
        finally:
            conn.execute("RELEASE fe_create_table")
        return Result()

    async def _rest(self, cursor: sqlite3.Cursor) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        """A large result's further rows, a batch per call in a worker thread
        (a KILL interrupts it): memory holds a batch, not the result."""
        try:
            while batch := await self._call(self._next_batch, cursor):
                yield batch
        finally:
            await self._call(cursor.close)  # the statement lets go of its read snapshot now

    def _next_batch(self, cursor: sqlite3.Cursor) -> list[tuple[Any, ...]]:
        try:
            batch = cursor.fetchmany(FETCH_BATCH)
        except sqlite3.Error as e:
            raise sql_error(e, self.backend.data_dir) from e
        if self._counting_rows:
            self._found_rows += len(batch)
        return batch

    async def _call(self, work: Callable[..., T], *args: Any) -> T:
        """``work`` in a worker thread; a cancel (KILL) stops SQLite and waits
        for the thread to let go of the connection. A write inside a
        transaction is stopped by its liveness check (an error SQLite undoes
        alone); SQLite's interrupt, which would end the transaction, comes
        only after ``INTERRUPT_GRACE``, and is then reported."""
        self._cancelled.clear()
        future = asyncio.get_running_loop().run_in_executor(self.backend.pool, work, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Stop the statement in its thread, then wait for the thread to let
            # go of the connection before anyone uses it again, even if we are
            # cancelled again meanwhile.
            self._hard_after = time.monotonic() + INTERRUPT_GRACE
            self._cancelled.set()
            if self._conn is not None and not self._gentle:
                self._conn.interrupt()
            await _settle(future)
            if not future.cancelled() and future.exception() is None:
                # It finished before the interrupt reached it (a COMMIT that
                # committed): the effect stands, so the answer is its result,
                # never an interrupt (architecture rule 12).
                return future.result()
            raise

    def _current_user(self) -> UserRecord | None:
        """The session user's record now (on the event loop, from the FE's cache)."""
        if self._user is None:
            return None
        user = self._user()
        if user is not None:
            self._user_name = user.name
        return user

    def _told_of_loss(self) -> None:
        if self._lost:
            self._lost = False
            raise deadlock()

    async def execute(self, sql: str, database: str | None, tree: exp.Expr | None = None) -> Result:
        self._told_of_loss()
        self.database = database
        return await self._call(self._run, sql, database, tree, (), self._current_user())

    async def execute_bound(self, sql: str, database: str | None, params: Sequence[Any]) -> Result:
        """``sql`` translated once (cached by its text) and its parameters bound
        by SQLite: a prepared statement's executes skip the parse."""
        self._told_of_loss()
        self.database = database
        return await self._call(self._run, sql, database, None, tuple(map(bindable, params)), self._current_user())

    # ------------------------------------------------------------ transactions

    def _end(self, verb: str) -> None:
        self._begin_pending = False
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                self._locked(conn, lambda: conn.execute(verb))
            except sqlite3.Error as e:
                raise sql_error(e, self.backend.data_dir) from e

    async def begin(self) -> None:
        """BEGIN / START TRANSACTION: as in MySQL, an open transaction is committed first."""
        self._told_of_loss()
        await self._call(self._end, "COMMIT")
        self._begin_pending = True

    async def commit(self) -> None:
        self._told_of_loss()
        await self._call(self._end, "COMMIT")

    async def rollback(self) -> None:
        self._lost = False
        await self._call(self._end, "ROLLBACK")

    async def set_autocommit(self, on: bool) -> None:
        if on and not self._autocommit:
            self._told_of_loss()
            await self._call(self._end, "COMMIT")  # MySQL: turning autocommit on commits
        self._autocommit = on

    async def savepoint(self, verb: str, name: str) -> None:
        """``SAVEPOINT``, ``ROLLBACK TO SAVEPOINT`` or ``RELEASE SAVEPOINT`` ``name``."""
        if not _SAVEPOINT_NAME.match(name):
            raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax near '{name[:60]}'")
        self._told_of_loss()

        def run() -> None:
            conn = self._connection()
            if verb == "SAVEPOINT":
                if not conn.in_transaction and self._autocommit and not self._begin_pending:
                    return  # MySQL: a savepoint outside a transaction is gone at once
                self._begin_if_due(conn, frozenset())
            elif not conn.in_transaction:
                raise SqlError(errors.NO_SUCH_FUNCTION, f"SAVEPOINT {name} does not exist")
            try:
                conn.execute(f'{verb} "{name}"')
            except sqlite3.Error as e:
                raise sql_error(e, self.backend.data_dir) from e
            if not self._wrote:  # set again if the transaction begins again at its first write
                marks = [n.lower() for n in self._early_savepoints]
                if verb == "SAVEPOINT":
                    if name.lower() in marks:
                        del self._early_savepoints[marks.index(name.lower())]
                    self._early_savepoints.append(name)
                elif name.lower() in marks:
                    kept = marks.index(name.lower()) + (verb != "RELEASE SAVEPOINT")
                    del self._early_savepoints[kept:]

        await self._call(run)

    async def relay_set(self, sql: str) -> None:
        return None  # the FE's variables are the session's

    @property
    def thread_id(self) -> int:
        return 0

    # The relaying backend's part of BackendSession: the FE calls it only when
    # ``Backend.relays``, which the embedded backend is not (it translates).

    @property
    def connected(self) -> bool:
        return True  # no connection to lose: SQLite is in this process

    def grants_changed(self) -> None:
        return None  # the authorizer reads the user's grants before each statement

    def has_statement(self, statement_id: int) -> bool:
        return False  # no statement lives on a server

    def interrupt(self) -> None:
        return None  # nothing relayed to stop

    def relay(
        self,
        payload: bytes,
        command: Command,
        database: str | None,
        interrupted: Callable[[], SqlError | None],
        statement_id: int = 0,
    ) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError("the embedded backend translates statements; it relays none")

    async def send_only(self, payload: bytes) -> None:
        raise NotImplementedError("the embedded backend translates statements; it relays none")

    def close(self) -> None:
        if self._conn is not None:
            self._cancelled.set()
            self._conn.interrupt()
            conn, self._conn = self._conn, None
            self.backend.pool.submit(conn.close)  # an open transaction is rolled back


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _system_denial(sql: str, translation: Translation, user: str) -> SqlError:
    """What a MySQL server answers a user without access to its own schema's table."""
    assert translation.system_table is not None
    _, table = translation.system_table
    command = sql.lstrip().split(None, 1)[0].upper() if translation.writes and sql.strip() else "SELECT"
    return SqlError(errors.TABLE_ACCESS_DENIED, f"{command} command denied to user '{user}'@'%' for table '{table}'")


class _Overtaken(Exception):
    """SQLITE_BUSY_SNAPSHOT: another connection committed since this transaction's
    snapshot, so it can never write: MySQL's deadlock (1213, rolled back)."""
