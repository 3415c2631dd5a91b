"""The MySQL/MariaDB backend: every FE over one shared server (``--backend
mysql://user:password@host:port``, also ``mariadb://``; ``?ssl=1`` for TLS).

The FEs are then a stateless SQL tier, as Doris FEs over BEs or vtgate over
MySQL: each client session is pinned to one backend connection, opened on its
first statement and closed with the session; statements (and prepared
statements, as text with their parameters substituted by the wire layer) are
relayed as they are, and the answer comes back as the server gave it.

**Client: the project's own wire codec** (``frontend.wire.client`` for the
packets, ``auth.scramble``, ``packets.PacketReader``), not an async driver
(asyncmy, aiomysql). Reasons: (1) the server's own column definitions (type,
flags, charset, length, decimals) are relayed unchanged to our wire server
(``Result.wire_columns``), and rows stay the text protocol's bytes, so nothing
is decoded and re-encoded and no type is re-inferred; (2) the thread id, the
status flags (in transaction, autocommit) and the warning count of every
answer are at hand; (3) a cancelled statement is handled precisely: the read
runs in its own task, the FE sends ``KILL QUERY <thread id>`` on its control
connection and then reads the statement's answer (1317), so the connection
stays in step and can be reused; (4) no new dependency. The cost: only
mysql_native_password is spoken (MariaDB's default; a MySQL 8 service account
must be created WITH mysql_native_password).

KILL below the FE:

- one **control connection** per FE (lazy, reopened when it breaks) carries
  ``KILL QUERY n`` for a killed, timed-out or abandoned statement, and
  ``KILL CONNECTION n`` for backend connections of a dead FE (from the
  registry's rows) or a session whose statement did not settle;
- catalogue reads (SHOW DATABASES, DESCRIBE, ...) and constant SELECTs use a
  small pool of utility connections, never the control connection, so a KILL
  never waits behind a query.

Errors: the server's ERR packets are relayed (code and message); a backend that
cannot be reached is 2003 and a connection lost mid-session is 2013, both
naming the backend's address. A lost connection ends the client's session
(``Session.execute``): its transaction is gone with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from frontend.backend import Column, Index, check_db_name
from frontend.result import Result, SqlWarning
from frontend.sqlite_backend import MAX_RESULT_BYTES, MAX_RESULT_ROWS, SqliteBackend
from frontend.wire import client as wc
from frontend.wire.packets import PacketReader, frame
from frontend.wire.results import SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS
from frontend.wire.sqltext import quote_string

log = logging.getLogger("fecluster.mysql_backend")

SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys"})
CONNECT_TIMEOUT = 5.0
SETTLE_TIMEOUT = 5.0  # how long a killed statement may take to answer before its connection is dropped
IDLE_UTILITY = 4
MAX_PENDING_SETS = 64


@dataclass(frozen=True)
class BackendAddress:
    host: str
    port: int
    user: str
    password: str
    tls: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> BackendAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError(f"--backend {url!r}: not a mysql:// or mariadb:// URL")
        if not parts.hostname:
            raise ValueError(f"--backend {url!r}: a host is needed (mysql://user:password@host:port)")
        query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
        tls = any(query.get(k) in ("1", "true", "required", "require") for k in ("ssl", "tls", "ssl-mode", "sslmode"))
        return cls(
            parts.hostname,
            parts.port or 3306,
            unquote(parts.username or "root"),
            unquote(parts.password or ""),
            tls,
        )


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class Connection:
    """One client connection to the backend, speaking COM_QUERY with DEPRECATE_EOF."""

    def __init__(self, address: BackendAddress) -> None:
        self.address = address
        self.thread_id = 0
        self.status = SERVER_STATUS_AUTOCOMMIT
        self.db: str | None = None
        self.broken = False
        self.on_overflow: Callable[[], None] | None = None  # a result past the caps
        self._reader: PacketReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _lost(self, e: BaseException | None = None) -> SqlError:
        self.broken = True
        self.abort()
        detail = f" ({e!r})" if e is not None else ""
        return SqlError(
            errors.SERVER_LOST, f"Lost connection to MySQL server at '{self.address.address}' (backend){detail}"
        )

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> Connection:
        a = self.address
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(a.host, a.port, limit=1 << 20)
                self._writer = writer
                self._reader = packets = PacketReader(reader, limit=wc.MAX_PACKET)
                first = await packets.read()
                if first[:1] == b"\xff":  # refused before the greeting: 1040 too many connections, 1129 blocked, ...
                    code, _, message = wc.parse_err(first)
                    raise SqlError(code, f"backend {a.address}: {message}")
                greeting = wc.parse_greeting(first)
                seq = 1
                if a.tls:
                    writer.write(frame([wc.ssl_request(greeting)], seq)[0])
                    seq += 1
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    await writer.start_tls(context)
                response = wc.handshake_response(greeting, a.user, a.password, wc.hs.CLIENT_SSL if a.tls else 0)
                writer.write(frame([response], seq)[0])
                answer = await packets.read()
                if answer[:1] == b"\xfe":  # auth switch: mysql_native_password with a new nonce
                    cur_plugin, _, rest = answer[1:].partition(b"\x00")
                    if cur_plugin.decode() != wc.hs.NATIVE_PASSWORD:
                        raise SqlError(errors.ACCESS_DENIED, f"backend asks for auth plugin {cur_plugin.decode()!r}")
                    writer.write(frame([wc.scramble(a.password, rest[:20])], packets.seq)[0])
                    answer = await packets.read()
                if answer[:1] == b"\xff":
                    code, _, message = wc.parse_err(answer)
                    raise SqlError(code, f"backend {a.address}: {message}")
                self.thread_id = greeting.thread_id
                self.status = wc.parse_ok(answer).status
        except SqlError:
            self.abort()
            raise
        except asyncio.CancelledError:  # a KILL (or the client gone) while connecting
            self.abort()
            raise
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            self.abort()
            raise SqlError(
                errors.CONN_HOST_ERROR, f"Can't connect to MySQL server on '{a.address}' (backend: {e!r})"
            ) from e
        return self

    def _send(self, payload: bytes) -> None:
        if self._writer is None or self.broken or self._writer.is_closing():
            raise self._lost()
        self._writer.write(frame([payload], 0)[0])

    async def _read(self) -> bytes:
        assert self._reader is not None
        try:
            return await self._reader.read()
        except (OSError, asyncio.IncompleteReadError) as e:
            raise self._lost(e) from e

    def _error(self, payload: bytes) -> SqlError:
        code, state, message = wc.parse_err(payload)
        return SqlError(code, message, state or None)

    async def query(self, sql: str) -> Result:
        """Run ``sql``; the last result of a multi-result answer (CALL) is returned."""
        self._send(bytes((wc.COM_QUERY,)) + sql.encode("utf-8", "surrogateescape"))
        result = await self._read_result()
        while self.status & 8:  # SERVER_MORE_RESULTS_EXISTS
            result = await self._read_result()
        return result

    async def _read_result(self) -> Result:
        first = await self._read()
        head = first[:1]
        if head == b"\xff":
            self.status &= ~8
            raise self._error(first)
        if head == b"\x00":
            ok = wc.parse_ok(first)
            self.status = ok.status
            return _with_count(Result(affected_rows=ok.affected_rows, last_insert_id=ok.last_insert_id), ok.warnings)
        if head == b"\xfb":
            self.broken = True
            raise SqlError(errors.NOT_SUPPORTED, "LOAD DATA LOCAL INFILE is not supported through the FE")
        count = wc.Cursor(first).lenenc_int()
        columns = [wc.parse_column_definition(await self._read()) for _ in range(count)]
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        size = 0
        too_large = False
        while True:
            payload = await self._read()
            if wc.is_end(payload):
                ok = wc.parse_ok(payload)
                break
            if payload[:1] == b"\xff":
                self.status &= ~8
                if too_large:
                    break
                raise self._error(payload)  # e.g. 1317 when killed while sending rows
            if too_large:
                continue  # drained, not kept: the connection must stay in step
            append(wc.parse_text_row(payload, count))
            size += len(payload) + 56
            if len(rows) > MAX_RESULT_ROWS or size > MAX_RESULT_BYTES:
                too_large = True
                rows.clear()
                if self.on_overflow is not None:
                    self.on_overflow()  # KILL QUERY: the server stops sending
            if not len(rows) & 1023:
                await asyncio.sleep(0)  # a large buffered answer must not hold the loop
        if too_large:
            raise SqlError(
                errors.UNKNOWN_ERROR,
                f"Result too large: more than {MAX_RESULT_ROWS} rows or {MAX_RESULT_BYTES >> 20} MB;"
                " add a LIMIT or a WHERE",
            )
        self.status = ok.status
        return _with_count(Result([c.name for c in columns], rows, wire_columns=columns), ok.warnings)

    async def init_db(self, name: str) -> None:
        self._send(bytes((wc.COM_INIT_DB,)) + name.encode())
        answer = await self._read()
        if answer[:1] == b"\xff":
            raise self._error(answer)
        self.status = wc.parse_ok(answer).status
        self.db = name

    def close(self) -> None:
        """COM_QUIT, then close: the server ends the thread at once."""
        if self._writer is not None and not self.broken:
            with contextlib.suppress(Exception):
                self._writer.write(frame([bytes((wc.COM_QUIT,))], 0)[0])
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        self._writer = None
        self.broken = True

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.transport.abort()
        self._writer = None


def _with_count(result: Result, warnings: int) -> Result:
    result.warnings = [SqlWarning("Warning", 0, "")] * warnings if warnings else []
    return result


class MysqlBackend:
    """One per FE: the address, the control connection, the utility pool."""

    relays = True

    def __init__(self, url: str) -> None:
        self.address = BackendAddress.parse(url)
        self._control: Connection | None = None
        self._control_lock = asyncio.Lock()
        self._idle: list[Connection] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._local = SqliteBackend(Path(tempfile.mkdtemp(prefix="fecluster-rows-")), max_threads=4)

    # ------------------------------------------------------------ connections

    async def connect(self) -> Connection:
        return await Connection(self.address).open()

    @contextlib.asynccontextmanager
    async def _utility(self) -> AsyncIterator[Connection]:
        conn = self._idle.pop() if self._idle else await self.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.broken or len(self._idle) >= IDLE_UTILITY or conn.status & SERVER_STATUS_IN_TRANS:
            conn.close()
        else:
            self._idle.append(conn)

    async def _catalog(self, sql: str) -> Result:
        async with self._utility() as conn:
            return await conn.query(sql)

    async def kill(self, thread_id: int, query: bool = True) -> None:
        """``KILL [QUERY] thread_id`` on the control connection (an unknown thread is fine)."""
        if not thread_id:
            return
        sql = f"KILL {'QUERY ' if query else ''}{int(thread_id)}"
        async with self._control_lock:
            for attempt in (1, 2):
                try:
                    if self._control is None or self._control.broken:
                        self._control = await self.connect()
                    await self._control.query(sql)
                    return
                except SqlError as e:
                    if e.code == errors.UNKNOWN_THREAD:
                        return
                    if e.code not in (errors.SERVER_LOST, errors.CONN_HOST_ERROR) or attempt == 2:
                        log.warning("%s on the backend failed: %s", sql, e.message)
                        return

    def warm_control(self) -> None:
        """Open the control connection ahead of the first KILL (once a session has a connection)."""
        if self._control is None and not self._control_lock.locked():
            task = asyncio.get_running_loop().create_task(self._open_control())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open_control(self) -> None:
        async with self._control_lock:
            if self._control is None:
                with contextlib.suppress(SqlError):
                    self._control = await self.connect()

    def kill_soon(self, thread_id: int, query: bool = True) -> None:
        task = asyncio.get_running_loop().create_task(self.kill(thread_id, query))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def kill_threads(self, thread_ids: Sequence[int]) -> None:
        for thread_id in thread_ids:
            log.info("killing backend thread %d left by a dead FE", thread_id)
            await self.kill(thread_id, query=False)

    # ------------------------------------------------------------ Backend

    def session(self, on_thread: Callable[[int], None] | None = None) -> MysqlSession:
        return MysqlSession(self, on_thread)

    async def databases(self) -> list[str]:
        result = await self._catalog("SHOW DATABASES")
        names = [_text(row[0]) for row in result.rows]
        return sorted(n for n in names if n.lower() not in SYSTEM_SCHEMAS)

    async def has_database(self, name: str) -> bool:
        result = await self._catalog(
            f"SELECT 1 FROM information_schema.schemata WHERE schema_name = {quote_string(name)}"
        )
        return bool(result.rows)

    async def create_database(self, name: str, if_not_exists: bool) -> None:
        check_db_name(name)
        await self._catalog(f"CREATE DATABASE {'IF NOT EXISTS ' if if_not_exists else ''}{_ident(name)}")

    async def drop_database(self, name: str, if_exists: bool) -> None:
        await self._catalog(f"DROP DATABASE {'IF EXISTS ' if if_exists else ''}{_ident(name)}")

    async def tables(self, database: str) -> list[str]:
        result = await self._catalog(
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = {quote_string(database)} ORDER BY table_name"
        )
        return [_text(row[0]) for row in result.rows]

    async def columns(self, database: str, table: str) -> list[Column]:
        result = await self._catalog(
            "SELECT column_name, column_type, is_nullable, column_default, column_key "
            f"FROM information_schema.columns WHERE table_schema = {quote_string(database)} "
            f"AND table_name = {quote_string(table)} ORDER BY ordinal_position"
        )
        if not result.rows:
            if not await self.has_database(database):
                raise SqlError(errors.BAD_DB, f"Unknown database '{database}'")
            raise SqlError(errors.NO_SUCH_TABLE, f"Table '{database}.{table}' doesn't exist")
        return [
            Column(
                _text(name),
                _text(kind).upper(),
                _text(nullable) == "YES",
                None if default is None or _text(default) == "NULL" else _text(default),
                _text(key) == "PRI",
            )
            for name, kind, nullable, default, key in result.rows
        ]

    async def indexes(self, database: str, table: str) -> list[Index]:
        result = await self._catalog(
            "SELECT index_name, non_unique, column_name FROM information_schema.statistics "
            f"WHERE table_schema = {quote_string(database)} AND table_name = {quote_string(table)} "
            "AND index_name <> 'PRIMARY' ORDER BY index_name, seq_in_index"
        )
        found: dict[str, Index] = {}
        for name, non_unique, column in result.rows:
            key = _text(name)
            index = found.setdefault(key, Index(key, _text(non_unique) == "0", []))
            index.columns.append(_text(column))
        return list(found.values())

    async def constant_select(self, query: exp.Select) -> Result:
        return await self._catalog(query.sql(dialect="mysql"))

    async def query_rows(
        self, query: exp.Expression, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> Result:
        return await self._local.query_rows(query, table, columns, rows)

    async def query_tables(
        self, query: exp.Expression, tables: Mapping[str, tuple[Sequence[str], Sequence[tuple[Any, ...]]]]
    ) -> Result:
        return await self._local.query_tables(query, tables)

    def shutdown(self) -> None:
        for conn in [*self._idle, *([self._control] if self._control else [])]:
            conn.close()
        self._idle.clear()
        self._control = None
        self._local.shutdown()


async def _relay_set(conn: Connection, sql: str) -> None:
    """A variable only the FE knows (1193: query_timeout, session_context, ...) is the FE's alone."""
    try:
        await conn.query(sql)
    except SqlError as e:
        if e.code != errors.UNKNOWN_SYSTEM_VARIABLE:
            raise


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class MysqlSession:
    """One client session's backend connection, opened on its first statement."""

    def __init__(self, backend: MysqlBackend, on_thread: Callable[[int], None] | None) -> None:
        self.backend = backend
        self._on_thread = on_thread
        self._conn: Connection | None = None
        self._autocommit = True
        self._running: asyncio.Task[Result] | None = None
        self._pending_sets: list[str] = []  # SETs said before the connection opened (drivers' connect-time SETs)

    @property
    def thread_id(self) -> int:
        return self._conn.thread_id if self._conn is not None else 0

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None and bool(self._conn.status & SERVER_STATUS_IN_TRANS)

    @property
    def autocommit(self) -> bool:
        return bool(self._conn.status & SERVER_STATUS_AUTOCOMMIT) if self._conn is not None else self._autocommit

    async def _connection(self, database: str | None) -> Connection:
        conn = self._conn
        if conn is not None and conn.broken:
            raise conn._lost()
        if conn is None:
            conn = await self.backend.connect()
            try:
                if not self._autocommit:
                    await conn.query("SET autocommit = 0")
                for sql in self._pending_sets:
                    await _relay_set(conn, sql)
            except BaseException as e:
                conn.close()
                if isinstance(e, SqlError) and e.code not in (errors.CONN_HOST_ERROR, errors.SERVER_LOST):
                    self._pending_sets.clear()  # the server refused one: said once, not at every statement
                raise
            self._pending_sets.clear()
            conn.on_overflow = lambda: self.backend.kill_soon(conn.thread_id, query=True)
            self._conn = conn
            self.backend.warm_control()
            if self._on_thread is not None:
                self._on_thread(conn.thread_id)
        if database and database != conn.db:
            await self._run(conn, lambda: conn.init_db(database))
        return conn

    async def _run(self, conn: Connection, work: Callable[[], Any]) -> Any:
        """``work`` in its own task: a cancel (KILL, time limit, client gone,
        shutdown) kills the statement on the backend, then waits for its
        answer so the connection stays in step."""
        task = asyncio.ensure_future(work())
        self._running = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await self.backend.kill(conn.thread_id, query=True)
            try:
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    await asyncio.wait([task])
            except TimeoutError:
                log.warning("backend thread %d did not answer its KILL QUERY; killing the connection", conn.thread_id)
                self.backend.kill_soon(conn.thread_id, query=False)
                conn.abort()
                conn.broken = True
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the 1317 (or the result) nobody waits for
            raise
        finally:
            self._running = None

    async def execute(self, sql: str, database: str | None, tree: exp.Expression | None = None) -> Result:
        conn = await self._connection(database)
        result: Result = await self._run(conn, lambda: conn.query(sql))
        if result.warnings:
            shown: Result = await self._run(conn, lambda: conn.query("SHOW WARNINGS"))
            result.warnings = [SqlWarning(_text(r[0]), int(r[1]), _text(r[2])) for r in shown.rows]
        return result

    async def _statement(self, sql: str) -> None:
        conn = await self._connection(None)
        await self._run(conn, lambda: conn.query(sql))

    async def begin(self) -> None:
        await self._statement("BEGIN")

    async def commit(self) -> None:
        if self._conn is not None:
            await self._statement("COMMIT")

    async def rollback(self) -> None:
        if self._conn is not None:
            await self._statement("ROLLBACK")

    async def set_autocommit(self, on: bool) -> None:
        self._autocommit = on
        if self._conn is not None:
            await self._statement(f"SET autocommit = {int(on)}")

    async def savepoint(self, verb: str, name: str) -> None:
        await self._statement(f"{verb} {_ident(name)}")

    async def relay_set(self, sql: str) -> None:
        """The SET as the client wrote it. Before the connection opens it is kept
        for then (a driver's SET NAMES / autocommit at connect costs no backend
        connection, and works while the backend is away)."""
        if self._conn is None and len(self._pending_sets) < MAX_PENDING_SETS:
            self._pending_sets.append(sql)
            return
        conn = await self._connection(None)
        await self._run(conn, lambda: _relay_set(conn, sql))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._running is not None and not self._running.done():
            self.backend.kill_soon(conn.thread_id, query=False)  # still busy: the server must stop it
            conn.abort()
        else:
            conn.close()
