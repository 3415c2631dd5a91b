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
answer are at hand; (3) a cancelled statement is handled precisely: packets
are read with the cancel-safe ``WireProtocol`` and the answer's parse state
lives in the connection (``_Answer``), so after a cancel the FE sends ``KILL
QUERY <thread id>`` on its control connection and then reads the rest of the
statement's answer (1317): the connection stays in step and is reused, with
no task per statement; (4) no new dependency. The cost: only
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
import shutil
import ssl
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.users import ROOT, UserRecord
from frontend.backend import BackendLogin, Column, Index, check_db_name
from frontend.result import Result, SqlWarning
from frontend.sqlite_backend import MAX_RESULT_BYTES, MAX_RESULT_ROWS, SqliteBackend
from frontend.wire import client as wc
from frontend.wire import commands
from frontend.wire import handshake as hs
from frontend.wire.answer import Answer, Command, last_packet
from frontend.wire.auth import scramble, scramble_with_stage1, stage1_of_password
from frontend.wire.packets import Cursor, MalformedPacket, PacketTooLarge, frame
from frontend.wire.prepared import unknown_statement
from frontend.wire.results import (
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_IN_TRANS,
    err_packet,
)
from frontend.wire.results import Column as WireColumn
from frontend.wire.sqltext import quote_string, split_placeholders, substitute
from frontend.wire.transport import WireProtocol

log = logging.getLogger("fecluster.mysql_backend")
T = TypeVar("T")

SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys"})
CONNECT_TIMEOUT = 5.0
SETTLE_TIMEOUT = 5.0  # how long a killed statement may take to answer before its connection is dropped
IDLE_UTILITY = 4
HEALTH_INTERVAL = 2.0  # seconds between two checks of each host (several hosts only)
HEALTH_TIMEOUT = 1.5  # a check (connect and SELECT 1) that takes longer fails
MAX_PENDING_SETS = 64
READ_BUFFER = 1 << 20  # bytes of a backend's answer buffered before reading pauses
_WITH_STATEMENT_ID = frozenset(
    {
        commands.COM_STMT_EXECUTE,
        commands.COM_STMT_SEND_LONG_DATA,
        commands.COM_STMT_CLOSE,
        commands.COM_STMT_RESET,
        commands.COM_STMT_FETCH,
    }
)
# Options a relayed client's backend connection takes from the client, so the
# server's answers are what the client expects, byte for byte.
_FROM_CLIENT = (
    hs.CLIENT_DEPRECATE_EOF
    | hs.CLIENT_FOUND_ROWS
    | hs.CLIENT_MULTI_STATEMENTS
    | hs.CLIENT_MULTI_RESULTS
    | hs.CLIENT_PS_MULTI_RESULTS
    | hs.CLIENT_INTERACTIVE
)


@dataclass(frozen=True)
class BackendAddress:
    """The ``--backend`` URL: the service account and one host (``host``,
    ``port``), or several (``hosts``: every host of the URL, in order, for a
    cluster whose hosts each take sessions: ``mysql://u:pw@h1:9030,h2:9030``).
    ``shared_users``: the hosts share their accounts (a Doris, StarRocks or
    Galera cluster: made once, on one host); ``?shared_users=0``: accounts are
    made on every host."""

    host: str
    port: int
    user: str
    password: str
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()
    shared_users: bool = True

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def each(self) -> list[BackendAddress]:
        """One address per host of the URL (the first is ``self``'s host)."""
        return [replace(self, host=h, port=p, hosts=()) for h, p in (self.hosts or ((self.host, self.port),))]

    @classmethod
    def parse(cls, url: str) -> BackendAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError(f"--backend {url!r}: not a mysql:// or mariadb:// URL")
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        hosts = tuple(_host_port(url, h) for h in hostlist.split(",")) if hostlist else ()
        if not hosts:
            raise ValueError(f"--backend {url!r}: a host is needed (mysql://user:password@host:port)")
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"--backend {url!r}: a host is listed twice")
        query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
        tls = any(query.get(k) in ("1", "true", "required", "require") for k in ("ssl", "tls", "ssl-mode", "sslmode"))
        shared = query.get("shared_users", "1") not in ("0", "false", "no", "off")
        return cls(
            hosts[0][0],
            hosts[0][1],
            unquote(user or "root"),
            unquote(password),
            tls,
            hosts if len(hosts) > 1 else (),
            shared,
        )


def _host_port(url: str, text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (host, port), 3306 by default."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (port and not port.isdigit()) or not 0 <= int(port or 3306) < 65536:
        raise ValueError(f"--backend {url!r}: {text!r} is not host:port")
    return unquote(host), int(port or 3306)


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class _Answer:
    """The server's answer to one command, read packet by packet. Its state
    lives here, not in a coroutine's locals, so a cancelled read resumes where
    it stopped (``Connection.finish``): the connection stays in step without a
    task per statement."""

    __slots__ = ("columns", "count", "done", "error", "packets", "phase", "result", "rows", "size", "too_large")

    def __init__(self) -> None:
        self.phase = 0  # 0: first packet, 1: column definitions, 2: rows
        self.count = 0
        self.columns: list[WireColumn] = []
        self.rows: list[tuple[Any, ...]] = []
        self.size = 0
        self.too_large = False
        self.result: Result | None = None
        self.error: SqlError | None = None
        self.done = False
        self.packets = 0


class Connection:
    """One client connection to the backend, speaking COM_QUERY with DEPRECATE_EOF."""

    def __init__(self, address: BackendAddress, login: BackendLogin | None = None, database: str | None = None) -> None:
        self.address = address
        self.login = login  # None: the service account
        self.database = database  # named in the handshake
        # The client's options where the answer is relayed to it byte for byte.
        caps = login.capabilities if login is not None else wc.CLIENT_CAPABILITIES
        self.deprecate_eof = bool(caps & hs.CLIENT_DEPRECATE_EOF)
        self.thread_id = 0
        self.status = SERVER_STATUS_AUTOCOMMIT
        self.db: str | None = None
        self.broken = False
        self.on_overflow: Callable[[], None] | None = None  # a result past the caps
        self._io: WireProtocol | None = None
        self._answer: _Answer | None = None  # the command whose answer is being read

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
                loop = asyncio.get_running_loop()
                _, io = await loop.create_connection(
                    lambda: WireProtocol(limit=wc.MAX_PACKET, buffer_limit=READ_BUFFER), a.host, a.port
                )
                self._io = io
                first = await io.read()
                if first[:1] == b"\xff":  # refused before the greeting: 1040 too many connections, 1129 blocked, ...
                    code, _, message = wc.parse_err(first)
                    raise SqlError(code, f"backend {a.address}: {message}")
                greeting = wc.parse_greeting(first)
                seq = 1
                if a.tls:
                    io.write(frame([wc.ssl_request(greeting)], seq)[0])
                    seq += 1
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    secure = await loop.start_tls(io.transport, io, context)
                    if secure is None:
                        raise OSError("TLS with the backend failed")
                    io.transport = secure
                io.write(frame([self._handshake_response(greeting)], seq)[0])
                answer = await io.read()
                if answer[:1] == b"\xfe":  # auth switch: mysql_native_password with a new nonce
                    plugin, _, rest = answer[1:].partition(b"\x00")
                    if plugin.decode() != hs.NATIVE_PASSWORD:
                        raise SqlError(errors.ACCESS_DENIED, f"backend asks for auth plugin {plugin.decode()!r}")
                    io.write(frame([self._scramble(rest[:20])], io.seq)[0])
                    answer = await io.read()
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

    def _scramble(self, nonce: bytes) -> bytes:
        login = self.login
        if login is None:
            return scramble(self.address.password, nonce)
        return scramble_with_stage1(login.stage1 or b"", nonce)

    def _handshake_response(self, greeting: wc.Greeting) -> bytes:
        a, login = self.address, self.login
        tls = hs.CLIENT_SSL if a.tls else 0
        if login is None:
            return wc.handshake_response(greeting, a.user, a.password, tls, database=self.database)
        caps = login.capabilities
        return wc.handshake_response(
            greeting,
            login.user,
            "",
            tls | (caps & _FROM_CLIENT),
            auth=self._scramble(greeting.nonce),
            charset=login.charset,
            database=self.database,
            without=_FROM_CLIENT & ~caps,
        )

    @property
    def busy(self) -> bool:
        """A command was sent whose answer has not been read to its end."""
        return self._answer is not None and not self.broken

    def start_relay(self, payload: bytes) -> WireProtocol:
        """Send a client's command whose answer is relayed (``MysqlSession.relay``)."""
        self._send(payload)
        self._answer = _Answer()  # busy until end_relay: a cancelled relay is seen as such
        assert self._io is not None
        return self._io

    def end_relay(self, status: int) -> None:
        self.status = status
        self._answer = None

    def send_raw(self, payload: bytes) -> None:
        """A command without an answer (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA)."""
        self._send(payload)

    def _send(self, payload: bytes) -> None:
        io = self._io
        if io is None or self.broken or io.transport.is_closing():
            raise self._lost()
        if self._answer is not None:  # never two commands in flight (a cancelled read not finished)
            self.broken = True
            raise self._lost()
        io.write(frame([payload], 0)[0])

    async def _read(self) -> bytes:
        assert self._io is not None
        try:
            return await self._io.read()
        except (OSError, asyncio.IncompleteReadError, PacketTooLarge) as e:
            raise self._lost(e) from e

    def _error(self, payload: bytes) -> SqlError:
        code, state, message = wc.parse_err(payload)
        return SqlError(code, message, state or None)

    async def query(self, sql: str) -> Result:
        """Run ``sql``; the last result of a multi-result answer (CALL) is returned.
        Cancel-safe: a cancel leaves the answer half read, for ``finish``."""
        self._send(bytes((wc.COM_QUERY,)) + sql.encode("utf-8", "surrogateescape"))
        self._answer = _Answer()
        return await self._read_answer()

    async def finish(self) -> Result | None:
        """Read the rest of a cancelled command's answer: its result if the
        server completed it after all, None if it failed (its 1317)."""
        if self._answer is not None:
            with contextlib.suppress(SqlError):
                return await self._read_answer()
        return None

    async def _read_answer(self) -> Result:
        answer = self._answer
        assert answer is not None
        while not answer.done:
            self._feed(answer, await self._read())
            answer.packets += 1
            if not answer.packets & 1023:
                await asyncio.sleep(0)  # a large buffered answer must not hold the loop (nor the KILL of it)
        self._answer = None
        if answer.error is not None:
            raise answer.error
        if answer.result is None:  # cannot happen: an answer ends with a result or an error
            raise SqlError(errors.UNKNOWN_ERROR, "the backend's answer had no result")
        return answer.result

    def _feed(self, answer: _Answer, payload: bytes) -> None:
        """One packet of the answer; sets ``answer.done`` after its last."""
        if answer.phase == 2:
            if wc.is_end(payload) and (self.deprecate_eof or len(payload) < 9):
                ok = wc.parse_ok(payload) if self.deprecate_eof else wc.parse_eof(payload)
                self.status = ok.status
                if answer.too_large:
                    answer.error = _too_large()
                answer.result = _with_count(
                    Result([c.name for c in answer.columns], answer.rows, wire_columns=answer.columns), ok.warnings
                )
                self._next_result(answer)
            elif payload[:1] == b"\xff":
                self.status &= ~SERVER_MORE_RESULTS_EXISTS
                # e.g. 1317 when killed while sending rows (by us, for a result past the caps)
                answer.error = answer.error or (_too_large() if answer.too_large else self._error(payload))
                answer.done = True
            elif not answer.too_large:
                answer.rows.append(wc.parse_text_row(payload, answer.count))
                answer.size += len(payload) + 56
                if len(answer.rows) > MAX_RESULT_ROWS or answer.size > MAX_RESULT_BYTES:
                    answer.too_large = True
                    answer.rows = []
                    if self.on_overflow is not None:
                        self.on_overflow()  # KILL QUERY: the server stops sending
            return
        if answer.phase == 3:  # the EOF after the column definitions (no DEPRECATE_EOF)
            answer.phase = 2
            return
        if answer.phase == 1:
            answer.columns.append(wc.parse_column_definition(payload))
            if len(answer.columns) == answer.count:
                answer.phase = 2 if self.deprecate_eof else 3
            return
        head = payload[:1]
        if head == b"\xff":
            self.status &= ~SERVER_MORE_RESULTS_EXISTS
            answer.error = answer.error or self._error(payload)
            answer.done = True
        elif head == b"\x00":
            ok = wc.parse_ok(payload)
            self.status = ok.status
            answer.result = _with_count(
                Result(affected_rows=ok.affected_rows, last_insert_id=ok.last_insert_id), ok.warnings
            )
            self._next_result(answer)
        elif head == b"\xfb":
            self.broken = True  # the server waits for a file we will not send
            answer.error = SqlError(errors.NOT_SUPPORTED, "LOAD DATA LOCAL INFILE is not supported through the FE")
            answer.done = True
        else:
            answer.count = Cursor(payload).lenenc_int()
            answer.columns, answer.rows, answer.size = [], [], 0
            answer.phase = 1

    def _next_result(self, answer: _Answer) -> None:
        if self.status & SERVER_MORE_RESULTS_EXISTS:
            answer.phase = 0  # another result follows (CALL): the last one is the answer
        else:
            answer.done = True

    async def init_db(self, name: str) -> None:
        self._send(bytes((wc.COM_INIT_DB,)) + name.encode())
        self._answer = _Answer()
        await self._read_answer()
        self.db = name

    def close(self) -> None:
        """COM_QUIT, then close: the server ends the thread at once."""
        io = self._io
        if io is not None and not self.broken:
            with contextlib.suppress(Exception):
                io.write(frame([bytes((wc.COM_QUIT,))], 0)[0])
        with contextlib.suppress(Exception):
            if io is not None:
                io.transport.close()
        self._io = None
        self.broken = True

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._io is not None:
                self._io.transport.abort()
        self._io = None


def _too_large() -> SqlError:
    return SqlError(
        errors.UNKNOWN_ERROR,
        f"Result too large: more than {MAX_RESULT_ROWS} rows or {MAX_RESULT_BYTES >> 20} MB; add a LIMIT or a WHERE",
    )


def _with_count(result: Result, warnings: int) -> Result:
    result.warnings = [SqlWarning("Warning", 0, "")] * warnings if warnings else []
    return result


class BackendHost:
    """One host of the backend: its address, control connection, utility pool,
    health, and the sessions pinned to it."""

    def __init__(self, address: BackendAddress) -> None:
        self.address = address
        self.control: Connection | None = None
        self.control_lock = asyncio.Lock()
        self.idle: list[Connection] = []
        self.sessions: set[MysqlSession] = set()
        self.healthy = True

    @property
    def name(self) -> str:
        return self.address.address

    def close(self) -> None:
        for conn in [*self.idle, *([self.control] if self.control else [])]:
            conn.close()
        self.idle.clear()
        self.control = None


class HostService:
    """One host as ``backend_accounts.ServiceBackend``: the service account's
    statements on that host alone (hosts that do not share their accounts)."""

    def __init__(self, backend: MysqlBackend, host: BackendHost) -> None:
        self.backend = backend
        self.host = host
        self.address = host.address

    async def service_query(self, sql: str) -> Result:
        return await self.backend._catalog(sql, self.host)

    async def connect(self) -> Connection:
        return await self.backend.connect(host=self.host)


class ConnectionMarker(Protocol):
    """Marks each session connection so a survivor can find it if this FE
    dies (``frontend.orphans``, wired by the node)."""

    async def mark(self, host: BackendHost, conn: Connection) -> None: ...

    def unmark(self, host: BackendHost, thread_id: int) -> None: ...


class MysqlBackend:
    """One per FE: the hosts (each with its control connection and utility
    pool), the health checks, the sessions' placement."""

    relays = True

    def __init__(self, url: str) -> None:
        parsed = BackendAddress.parse(url)
        self.hosts = [BackendHost(a) for a in parsed.each()]
        self.address = self.hosts[0].address  # the service account (and, with one host, the host)
        self.shared_users = parsed.shared_users
        # Until start() has asked the server: case-sensitive, which can only refuse more.
        self.names_fold_case = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._health: asyncio.Task[None] | None = None
        self.marker: ConnectionMarker | None = None  # frontend.orphans.OrphanReaper, set by the node
        # Queries over rows the FE holds (information_schema.processlist): in-memory SQLite, as ever.
        self._local_dir = Path(tempfile.mkdtemp(prefix="fecluster-rows-"))
        self._local = SqliteBackend(self._local_dir, max_threads=4)

    # ------------------------------------------------------------ hosts

    def host(self, name: str) -> BackendHost | None:
        """The host named ``name`` (``host:port``); None if it is not one of ours."""
        return next((h for h in self.hosts if h.name == name), None)

    def _service_host(self) -> BackendHost:
        """Where service work runs (catalogue, accounts on shared users): the first healthy host."""
        return next((h for h in self.hosts if h.healthy), self.hosts[0])

    def host_services(self) -> list[HostService]:
        """Each host as a service endpoint of its own (accounts made on every host)."""
        return [HostService(self, h) for h in self.hosts]

    async def open_pinned(
        self, session: MysqlSession, login: BackendLogin | None, database: str | None
    ) -> tuple[BackendHost, Connection]:
        """A session's backend connection, on the healthy host with the fewest
        sessions (ties: the URL's order). A host that refuses the connection is
        marked down and the next is tried; with none healthy, every host is
        tried (one may be back before its next check)."""
        healthy = sorted((h for h in self.hosts if h.healthy), key=lambda h: len(h.sessions))
        candidates = healthy or sorted(self.hosts, key=lambda h: len(h.sessions))
        failure: SqlError | None = None
        for host in candidates:
            try:
                conn = await self.connect(login, database, host)
            except SqlError as e:
                if e.code != errors.CONN_HOST_ERROR:
                    raise  # the server answered (1045, 1044, 1040 ...): its word, not a dead host
                failure = e
                if len(self.hosts) > 1 and host.healthy:
                    self._mark_down(host, e.message)
                continue
            host.healthy = True
            host.sessions.add(session)
            return host, conn
        assert failure is not None
        raise failure

    def _mark_down(self, host: BackendHost, why: str) -> None:
        """New sessions go elsewhere; the host's sessions lose their connection
        (2013 naming the host, and the session ends: its transaction is gone)."""
        if not host.healthy:
            return
        host.healthy = False
        log.warning("backend host %s is down (%s): %d sessions lost", host.name, why, len(host.sessions))
        for session in list(host.sessions):
            session.host_lost()
        host.close()

    async def _check(self, host: BackendHost) -> None:
        """``SELECT 1`` on the host's utility pool within HEALTH_TIMEOUT. A pooled
        connection that fails is retried once on a fresh one (a server restarted
        between two checks breaks the pool, not the host)."""
        error = ""
        for _ in (1, 2):
            try:
                async with asyncio.timeout(HEALTH_TIMEOUT):
                    async with self._utility(host) as conn:
                        await conn.query("SELECT 1")
            except (SqlError, OSError, TimeoutError) as e:
                error = e.message if isinstance(e, SqlError) else f"no answer within {HEALTH_TIMEOUT}s"
                continue
            if not host.healthy:
                host.healthy = True
                log.warning("backend host %s is back: it takes sessions again", host.name)
            return
        self._mark_down(host, error)

    async def _check_forever(self) -> None:
        while True:
            await asyncio.gather(*(self._check(h) for h in self.hosts))
            await asyncio.sleep(HEALTH_INTERVAL)

    # ------------------------------------------------------------ connections

    async def connect(
        self, login: BackendLogin | None = None, database: str | None = None, host: BackendHost | None = None
    ) -> Connection:
        """A connection as the service account, or as ``login``'s user (the
        cluster's root runs as the service account), on ``host`` (default:
        the service host)."""
        if login is not None and login.user == ROOT:
            login = replace(login, user=self.address.user, stage1=stage1_of_password(self.address.password))
        where = host or self._service_host()
        return await Connection(where.address, login, database).open()

    @contextlib.asynccontextmanager
    async def _utility(self, host: BackendHost | None = None) -> AsyncIterator[Connection]:
        where = host or self._service_host()
        conn = where.idle.pop() if where.idle else await self.connect(host=where)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.broken or len(where.idle) >= IDLE_UTILITY or conn.status & SERVER_STATUS_IN_TRANS:
            conn.close()
        else:
            where.idle.append(conn)

    async def start(self) -> None:
        """Ask the server how it compares names (lower_case_table_names: 0 on
        Linux by default, names as spelled). Unreachable: stay case-sensitive.
        With several hosts, their health checks start (every HEALTH_INTERVAL)."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                result = await self._catalog("SELECT @@lower_case_table_names")
            self.names_fold_case = int(_text(result.rows[0][0])) != 0
        except (SqlError, OSError, TimeoutError, ValueError, IndexError) as e:
            log.warning(
                "backend %s: lower_case_table_names unknown (%s); names compare case-sensitively", self.address.host, e
            )
        if len(self.hosts) > 1 and self._health is None:
            self._health = asyncio.get_running_loop().create_task(self._check_forever())

    async def _catalog(self, sql: str, host: BackendHost | None = None) -> Result:
        async with self._utility(host) as conn:
            return await conn.query(sql)

    async def service_query(self, sql: str) -> Result:
        """``sql`` as the service account (the ``--backend`` URL's user), on a
        utility connection of the service host: account management, catalogue reads."""
        return await self._catalog(sql)

    def _host_of(self, host: BackendHost | str | None) -> BackendHost | None:
        if isinstance(host, BackendHost):
            return host
        if host:
            return self.host(host)
        return self.hosts[0] if len(self.hosts) == 1 else None

    async def kill(self, thread_id: int, query: bool = True, host: BackendHost | str | None = None) -> None:
        """``KILL [QUERY] thread_id`` on ``host``'s control connection (an
        unknown thread is fine). Thread ids are each host's own: with several
        hosts and none named, nothing is killed (it could be a stranger)."""
        if not thread_id:
            return
        where = self._host_of(host)
        sql = f"KILL {'QUERY ' if query else ''}{int(thread_id)}"
        if where is None:
            log.warning("%s not sent: which backend host (%r) is not known", sql, host)
            return
        async with where.control_lock:
            for attempt in (1, 2):
                try:
                    if where.control is None or where.control.broken:
                        where.control = await self.connect(host=where)
                    await where.control.query(sql)
                    return
                except SqlError as e:
                    if e.code == errors.UNKNOWN_THREAD:
                        return
                    if e.code != errors.SERVER_LOST or attempt == 2:  # a stale control connection: once more
                        log.warning("%s on backend %s failed: %s", sql, where.name, e.message)
                        return

    def warm_control(self, host: BackendHost | None = None) -> None:
        """Open the host's control connection ahead of the first KILL (once a session has a connection)."""
        where = host or self.hosts[0]
        if where.control is None and not where.control_lock.locked():
            task = asyncio.get_running_loop().create_task(self._open_control(where))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open_control(self, host: BackendHost) -> None:
        async with host.control_lock:
            if host.control is None:
                with contextlib.suppress(SqlError):
                    host.control = await self.connect(host=host)

    def kill_soon(self, thread_id: int, query: bool = True, host: BackendHost | str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self.kill(thread_id, query, host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def kill_threads(self, thread_ids: Sequence[int | tuple[str, int]]) -> None:
        """Backend connections left by a dead FE: ``(host, thread)`` pairs (the
        registry row's ``backend_host``, ``backend_thread``), each killed on its
        own host; a bare thread id only when there is one host."""
        for item in thread_ids:
            host, thread_id = item if isinstance(item, tuple) else ("", item)
            log.info("killing backend thread %d on %s left by a dead FE", thread_id, host or self.hosts[0].name)
            await self.kill(thread_id, query=False, host=host or None)

    # ------------------------------------------------------------ Backend

    def session(
        self,
        on_thread: Callable[[int], None] | None = None,
        *,
        login: BackendLogin | None = None,
        user: Callable[[], UserRecord | None] | None = None,
        lock_wait_timeout: Callable[[], float] | None = None,
    ) -> MysqlSession:
        """``user`` and ``lock_wait_timeout`` are the embedded backend's: the server has its own."""
        return MysqlSession(self, on_thread, login)

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
        schema, name = quote_string(database), quote_string(table)
        result = await self._catalog(
            "SELECT c.column_name, c.column_type, c.is_nullable, c.column_default, s.seq_in_index "
            "FROM information_schema.columns c LEFT JOIN information_schema.statistics s"
            " ON s.table_schema = c.table_schema AND s.table_name = c.table_name"
            " AND s.column_name = c.column_name AND s.index_name = 'PRIMARY'"
            f" WHERE c.table_schema = {schema} AND c.table_name = {name} ORDER BY c.ordinal_position"
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
                0 if position is None else int(_text(position)),
            )
            for name, kind, nullable, default, position in result.rows
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
        self, query: exp.Expr, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> Result:
        return await self._local.query_rows(query, table, columns, rows)

    async def query_tables(
        self, query: exp.Expr, tables: Mapping[str, tuple[Sequence[str], Sequence[tuple[Any, ...]]]]
    ) -> Result:
        return await self._local.query_tables(query, tables)

    def shutdown(self) -> None:
        if self._health is not None:
            self._health.cancel()
            self._health = None
        for host in self.hosts:
            host.close()
        self._local.shutdown()
        shutil.rmtree(self._local_dir, ignore_errors=True)


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
    """One client session's backend connection, opened on its first statement,
    logged in as the session's user (``BackendLogin``).

    **Relay** (``relay``): a command the FE does not own goes to the server as
    the client's bytes, and the answer comes back as the server's packets,
    framed as they came (the sequence ids match: both sides count from the
    command), a chunk at a time as the client reads. ``frontend.wire.answer``
    finds the answer's end and keeps the status flags; nothing else is read.

    **Interrupts never lie.** A KILL, a time limit or the client going away
    does not cancel a relayed statement's reading: ``interrupt`` sends KILL
    QUERY on the control connection and the relay goes on to the server's own
    end of the answer. If the server says 1317, the statement had no effect and
    the client gets the FE's 1317 (or 3024) naming why; if the server finished
    first (a COMMIT that committed), the client gets the server's OK. The next
    command waits until the KILL QUERY has been answered, so it can never hit
    a later statement (the server clears a pending KILL QUERY when its next
    command starts).
    """

    def __init__(
        self, backend: MysqlBackend, on_thread: Callable[[int], None] | None, login: BackendLogin | None = None
    ) -> None:
        self.backend = backend
        self._on_thread = on_thread
        self._login = login
        self._conn: Connection | None = None
        self.host: BackendHost | None = None  # where the connection is pinned, for its life
        self._autocommit = True
        self._pending_sets: list[str] = []  # SETs said before the connection opened (drivers' connect-time SETs)
        self._relaying = False  # a relayed answer is being read
        self._killing: asyncio.Task[None] | None = None  # a KILL QUERY on its way to the server
        self._statement_ids: dict[int, bytes] = {}  # the client's prepared-statement id -> the server's (4 bytes)
        self.last_error: tuple[int, str, str] | None = None  # how the last relayed answer failed, if it did
        self._reselect = False  # select the current database again before the next statement (grants changed)

    @property
    def thread_id(self) -> int:
        return self._conn.thread_id if self._conn is not None else 0

    @property
    def backend_host(self) -> str:
        """``host:port`` of the backend connection's host ("" before it opens)."""
        return self.host.name if self.host is not None and self._conn is not None else ""

    @property
    def connected(self) -> bool:
        """The backend connection is open."""
        return self._conn is not None

    def host_lost(self) -> None:
        """The pinned host failed its health check: the connection is lost (the
        relay reading it, or the next statement, answers 2013 naming the host)."""
        conn = self._conn
        if conn is not None and not conn.broken:
            conn._lost()

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
            host, conn = await self.backend.open_pinned(self, self._login, database)
            conn.db = database
            try:
                if self.backend.marker is not None:
                    await self.backend.marker.mark(host, conn)
                if not self._autocommit:
                    await conn.query("SET autocommit = 0")
                for sql in self._pending_sets:
                    await _relay_set(conn, sql)
            except BaseException as e:
                conn.close()
                host.sessions.discard(self)
                if self.backend.marker is not None:
                    self.backend.marker.unmark(host, conn.thread_id)
                if isinstance(e, SqlError) and e.code not in (errors.CONN_HOST_ERROR, errors.SERVER_LOST):
                    self._pending_sets.clear()  # the server refused one: said once, not at every statement
                raise
            self._pending_sets.clear()
            conn.on_overflow = lambda: self.backend.kill_soon(conn.thread_id, query=True, host=host)
            self._conn, self.host = conn, host
            self.backend.warm_control(host)
            if self._on_thread is not None:
                self._on_thread(conn.thread_id)
        if database and database != conn.db:
            await self._run(conn, lambda: conn.init_db(database))
        return conn

    # ------------------------------------------------------------ relay

    def has_statement(self, statement_id: int) -> bool:
        """A prepared statement of the client's that lives on the server."""
        return statement_id in self._statement_ids

    def _server_payload(self, payload: bytes) -> bytes:
        """A COM_STMT_* payload with the client's statement id replaced by the server's."""
        server_id = self._statement_ids.get(int.from_bytes(payload[1:5], "little"))
        if server_id is None:
            raise unknown_statement(int.from_bytes(payload[1:5], "little"), "mysqld_stmt")
        return payload[:1] + server_id + payload[5:]

    async def send_only(self, payload: bytes) -> None:
        """COM_STMT_SEND_LONG_DATA / COM_STMT_CLOSE: the server answers nothing."""
        conn = self._conn
        if conn is None or conn.broken or len(payload) < 5:
            return
        await self._settled()
        if payload[0] == commands.COM_STMT_CLOSE:
            server_payload = self._server_payload(payload)
            del self._statement_ids[int.from_bytes(payload[1:5], "little")]
            conn.send_raw(server_payload)
        else:
            conn.send_raw(self._server_payload(payload))

    async def relay(
        self,
        payload: bytes,
        command: Command,
        database: str | None,
        interrupted: Callable[[], SqlError | None],
        statement_id: int = 0,
    ) -> AsyncGenerator[bytes, None]:
        """The server's answer to ``payload`` (a whole command), in chunks of
        whole packets framed as they came. ``interrupted`` says whether the FE
        interrupted the statement (and with what) when the server answers 1317.
        ``statement_id``: for COM_STMT_PREPARE, the id the client will know
        the statement by (the server's own id is mapped to it)."""
        await self._settled()
        conn = await self._connection(database)
        if self._reselect:
            await self._select_again(conn)
        error = interrupted()
        if error is not None:  # a KILL while the connection opened: the statement never starts
            yield frame([err_packet(error.code, error.message, error.state)], 1)[0]
            return
        if payload[0] in _WITH_STATEMENT_ID:
            payload = self._server_payload(payload)
        io = conn.start_relay(payload)
        answer = Answer(command, conn.deprecate_eof, conn.status)
        self._relaying = True
        done = False
        first = command == Command.PREPARE
        try:
            while not done:
                data, done = await self._read(conn, io, answer)
                if first:
                    first = False
                    if data[4:5] == b"\x00" and statement_id:  # the prepare-OK: the client knows our id
                        self._statement_ids[statement_id] = data[5:9]
                        data = data[:5] + statement_id.to_bytes(4, "little") + data[9:]
                if done:
                    conn.end_relay(answer.status)
                    self.last_error = answer.error
                    if answer.error is not None and answer.error[0] == errors.QUERY_INTERRUPTED:
                        error = interrupted()
                        if error is not None:  # our interrupt: the FE says why, in the server's place
                            last = last_packet(data)
                            data = (
                                data[:last]
                                + frame([err_packet(error.code, error.message, error.state)], data[last + 3])[0]
                            )
                yield data
        finally:
            self._relaying = False
            if not done:  # the reader let go (the client went away): stop the statement, keep in step
                await self._abandon(conn, io, answer)

    async def _read(self, conn: Connection, io: WireProtocol, answer: Answer) -> tuple[bytes, bool]:
        try:
            if self._killing is None:
                return await io.read_answer(answer)
            async with asyncio.timeout(SETTLE_TIMEOUT):  # interrupted: the server must answer soon
                return await io.read_answer(answer)
        except TimeoutError:
            log.warning("backend thread %d did not answer its KILL QUERY; killing it", conn.thread_id)
            self.backend.kill_soon(conn.thread_id, query=False, host=self.host)
            raise conn._lost() from None
        except (OSError, asyncio.IncompleteReadError, PacketTooLarge, MalformedPacket) as e:
            raise conn._lost(e) from e

    async def _abandon(self, conn: Connection, io: WireProtocol, answer: Answer) -> None:
        if conn.broken:
            return
        self.interrupt()
        try:
            done = False
            while not done:
                _, done = await self._read(conn, io, answer)
            conn.end_relay(answer.status)
        except SqlError:
            pass

    def grants_changed(self) -> None:
        """The user's grants changed (on any FE). MariaDB applies a change at the
        database level to an open connection's current database only when it
        selects it again: done before the next statement."""
        self._reselect = self._conn is not None and bool(self._conn.db)

    async def _select_again(self, conn: Connection) -> None:
        self._reselect = False
        db = conn.db
        if not db:
            return
        try:
            await self._run(conn, lambda: conn.init_db(db))
        except SqlError as e:
            if e.code not in (errors.DB_ACCESS_DENIED, errors.BAD_DB):
                raise
            # No privilege left on it: leave it, or the privileges read when it was
            # selected would stay in force. The statement answers the server's refusal.
            await self._run(conn, lambda: conn.init_db("information_schema"))
            raise

    def interrupt(self) -> None:
        """Stop the relayed statement: KILL QUERY on the control connection.
        The relay reads on to the server's answer."""
        conn = self._conn
        if not self._relaying or conn is None or self._killing is not None:
            return
        self._killing = asyncio.get_running_loop().create_task(
            self.backend.kill(conn.thread_id, query=True, host=self.host)
        )

    async def _settled(self) -> None:
        """A KILL QUERY still on its way must land before the next command is sent."""
        killing, self._killing = self._killing, None
        if killing is not None:
            with contextlib.suppress(Exception):
                await killing

    async def _run(self, conn: Connection, work: Callable[[], Awaitable[T]]) -> T:
        """``work`` (one command on ``conn``, decoded: the FE's own use and the
        gRPC API). A cancel (KILL, time limit, client gone, shutdown) kills the
        statement on the backend, then reads the rest of its answer so the
        connection stays in step; no answer within SETTLE_TIMEOUT: the backend
        connection is killed. If the server finished the statement anyway, its
        result stands (an effect is never reported as interrupted)."""
        try:
            return await work()
        except asyncio.CancelledError:
            if conn.busy:
                await self.backend.kill(conn.thread_id, query=True, host=self.host)
                try:
                    async with asyncio.timeout(SETTLE_TIMEOUT):
                        done = await conn.finish()
                except TimeoutError:
                    log.warning("backend thread %d did not answer its KILL QUERY; killing it", conn.thread_id)
                    self.backend.kill_soon(conn.thread_id, query=False, host=self.host)
                    conn.abort()
                    conn.broken = True
                else:
                    if done is not None:
                        return cast(T, done)  # it took effect: the truth, not the interrupt
            raise

    async def execute_bound(self, sql: str, database: str | None, params: Sequence[Any]) -> Result:
        return await self.execute(substitute(split_placeholders(sql), list(params)), database)

    async def execute(self, sql: str, database: str | None, tree: exp.Expr | None = None) -> Result:
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
        if self.host is not None:
            self.host.sessions.discard(self)
        if conn.busy:
            self.backend.kill_soon(conn.thread_id, query=False, host=self.host)  # still busy: the server must stop it
            conn.abort()
        else:
            conn.close()
        if self.backend.marker is not None and self.host is not None:
            self.backend.marker.unmark(self.host, conn.thread_id)  # after the thread's own end
