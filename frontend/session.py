"""The session core: one per client connection, whichever protocol carries it.

The MySQL and gRPC listeners are adapters over this class: they authenticate,
open it through the ``SessionTable``, hand statements to ``execute`` and render
its ``Result``. Killing works the same for both:

- ``kill_query`` cancels the running statement (the client sees 1317 with
  who asked); an idle session is untouched, and so is a statement that began
  after the KILL was issued (``issued_at_us``: no late kills).
- ``kill_connection`` also asks the adapter to close (``close_transport``,
  with the error to send first when there is one, e.g. 4031 for an idle
  session); once hit, every later statement of the session fails with 1317.
- A statement that outlives its time limit (``max_execution_time``,
  ``query_timeout`` or a ``/*+ MAX_EXECUTION_TIME(n) */`` hint) is
  interrupted the same way, with 3024 naming the limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from coordinator import errors
from coordinator.pb import fecluster_pb2 as pb
from coordinator.registry import ConnectionRecord, FeRecord
from coordinator.users import UserRecord
from frontend.lexer import MAX_CLASSIFY, QuoteModes, quote_modes
from frontend.lexer import split as lexer_split
from frontend.result import Batches, Result, SqlWarning
from frontend.sqltext import redact
from frontend.variables import Variables
from frontend.wire.answer import Command

if TYPE_CHECKING:
    from frontend.backend import Backend, BackendLogin, BackendSession
    from frontend.executor import Executor, Prepared, Route

T = TypeVar("T")
log = logging.getLogger("fecluster.session")
CATALOG = "internal"
_DEFERRABLE_SET = re.compile(
    r"^\s*SET\s+(?:(?:SESSION\s+|@@(?:SESSION\.)?)?autocommit\s*=\s*(0|1|ON|OFF|TRUE|FALSE)"
    r"|NAMES\s+'?(?:utf8mb4|utf8mb3|utf8|latin1|ascii|binary)'?)\s*;?\s*$",
    re.IGNORECASE,
)
_HINT = re.compile(r"/\*\+[^*]*?\bMAX_EXECUTION_TIME\s*\(\s*(\d+)\s*\)", re.IGNORECASE)


@dataclass(frozen=True)
class TimeLimit:
    seconds: float
    name: str  # what the client is told: "max_execution_time = 500 ms"


def time_limit(sql: str, variables: Variables) -> TimeLimit | None:
    """The tightest of the statement's limits (0 means none): the hint, else
    ``max_execution_time`` (ms, MySQL), and ``query_timeout`` (s, Doris)."""
    limits = []
    hint = _HINT.search(sql) if "/*+" in sql else None
    if hint is not None:
        limits.append(TimeLimit(int(hint.group(1)) / 1000, f"MAX_EXECUTION_TIME hint = {hint.group(1)} ms"))
    elif ms := int(variables.get("max_execution_time") or 0):
        limits.append(TimeLimit(ms / 1000, f"max_execution_time = {ms} ms"))
    if seconds := int(variables.get("query_timeout") or 0):
        limits.append(TimeLimit(float(seconds), f"query_timeout = {seconds} s"))
    limits = [limit for limit in limits if limit.seconds > 0]
    return min(limits, key=lambda limit: limit.seconds) if limits else None


MAX_USER_VARIABLES = 256  # each value is at most a SET statement's size (64 KB)
INFO_MAX = 16 * 1024  # what the processlist keeps of a statement: bounded memory, and redaction work on the loop


def statement_info(sql: str) -> str:
    """The processlist's Info: redacted, and cut at INFO_MAX (a cut inside a
    quoted password is closed first, so the cut cannot show half a secret).
    Binary bytes (surrogates from the wire layer) show as U+FFFD: Info is
    text, and travels between FEs as protobuf strings."""
    if not sql.isascii():
        sql = sql.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if len(sql) <= INFO_MAX:
        return redact(sql)
    return redact(sql[:INFO_MAX] + "'")[:-1]


class SessionHost(Protocol):
    """What a session needs from the FE it lives on (``frontend.session_table.SessionTable``)."""

    executor: Executor
    backend: Backend
    cloud_cluster: str

    @property
    def fe(self) -> FeRecord: ...

    def next_query_id(self) -> str: ...

    def record_changed(self, session: Session) -> None: ...

    def user_record(self, name: str) -> UserRecord | None:
        """The user's record as this FE has it now (its grants)."""
        ...

    def may_use(self, user: str, database: str) -> bool:
        """``user`` holds a privilege on ``database`` (or one of its tables)."""
        ...

    async def trace_changed(self, session: Session, old: str) -> None: ...


class Session:
    def __init__(
        self,
        host: SessionHost,
        conn_id: int,
        user: UserRecord,
        peer: str,
        protocol: str,
        close_transport: Callable[[errors.SqlError | None], None],
        variables: Variables,
        interactive: bool = False,
        login: BackendLogin | None = None,
    ) -> None:
        self._host = host
        self.login = login  # who the backend connection logs in as (a relaying backend)
        self.id = conn_id
        self.user = user.name
        self.host = peer  # the processlist's Host column: the client's address
        self.protocol = protocol
        self.login_time = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self.db: str | None = None
        self.variables = variables
        self.command = "Sleep"
        self.state = "OK"
        self.state_since = time.monotonic()
        self.query_id = ""
        self.info = ""
        self.warnings: list[SqlWarning] = []
        self.user_variables: dict[str, Any] = {}  # SET @v = ...; bounded by MAX_USER_VARIABLES
        self.killed_by: str | None = None  # why the connection was killed, once it has been
        self.trace_id = ""  # SET session_context = 'trace_id:...'
        self.counted = False  # holds a slot of a per-user connection limit in Redis
        self.interactive = interactive  # the client said CLIENT_INTERACTIVE: interactive_timeout applies
        self.tls: tuple[str, str] | None = None  # (protocol version, cipher) of the client's TLS link
        self.started_us = 0  # wall clock of the running statement's start, in microseconds
        self._close_transport = close_transport
        self._running: asyncio.Task[Any] | None = None
        self._interrupt: errors.SqlError | None = None  # what the cancelled statement answers
        self._close_after_statement = False  # a KILL of its own connection: answer 1927, then close
        self._streaming = False  # its rows are being sent, batch by batch (Result.more)
        self._backend: BackendSession | None = None
        self.backend_thread = 0  # the backend connection's thread id (MySQL backend), in the registry row
        self.backend_host = ""  # that connection's host (host:port): thread ids are each host's own
        self.previous_query_id = ""  # the last statement's id (Doris: a KILL of it is a no-op)
        self.fe_answered = False  # the last statement was the FE's own (its warnings are the FE's)
        self.quote_modes = QuoteModes()  # how the server reads quotes under the session's sql_mode (the lexer's)
        self._relaying = False  # a relayed statement's answer is being read
        self._grants_seen: UserRecord | None = user  # the user's record the backend connection last saw

    @property
    def backend(self) -> BackendSession:
        if self._backend is None:
            backend = self._host.backend
            if backend.relays:  # the server judges: the connection is the user's own account
                self._backend = backend.session(self._backend_opened, login=self.login)
            else:  # SQLite's authorizer judges, from the user's grants as this FE has them now
                self._backend = backend.session(
                    self._backend_opened,
                    user=lambda: self._host.user_record(self.user),
                    lock_wait_timeout=lambda: float(self.variables.get("innodb_lock_wait_timeout")),
                )
        return self._backend

    def _backend_opened(self, thread_id: int) -> None:
        """The backend connection opened: its thread id goes to the registry, so a
        surviving FE can kill its work should this FE die."""
        self.backend_thread = thread_id
        self.backend_host = getattr(self._backend, "backend_host", "")
        self._host.record_changed(self)

    def record(self) -> ConnectionRecord:
        fe = self._host.fe
        return ConnectionRecord(
            id=self.id,
            fe=fe.address,
            server_id=fe.server_id,
            user=self.user,
            host=self.host,
            login_time=self.login_time,
            catalog=CATALOG,
            db=self.db or "",
            protocol=self.protocol,
            trace_id=self.trace_id,
            backend_thread=self.backend_thread,
            backend_host=self.backend_host,
        )

    # ------------------------------------------------------------ statements

    async def execute(self, sql: str, prepared: Prepared | None = None, raw: bytes | None = None) -> Result:
        """Run one statement; a KILL turns it into SqlError 1317, a time limit into 3024.
        ``prepared``: a prepared statement's text and parameters (``sql`` substitutes them).
        ``raw``: the client's COM_QUERY as it came, relayed unchanged when the
        statement is the engine's (a relaying backend)."""
        if self.killed_by is not None:
            raise errors.interrupted(self.killed_by)
        executor = self._host.executor
        immediate = executor.immediate(sql) if not self._host.backend.relays else None
        if immediate is not None:
            self.previous_query_id, self.query_id = self.query_id, self._host.next_query_id()
            self.info = statement_info(sql)
            self.state = "OK"
            self.warnings = []
            self.state_since = time.monotonic()
            return immediate
        route = executor.route(self, sql) if self._host.backend.relays else None
        if route is not None and route.relay:
            deferrable = _DEFERRABLE_SET.match(sql) if len(sql) < 80 else None
            if deferrable is not None and not self.backend.connected:
                # A driver's connect-time SET NAMES / autocommit, with a value the
                # server cannot refuse: said when the connection opens, so a login
                # costs no backend connection (and works while the backend is away).
                if deferrable.group(1) is not None:
                    await self.backend.set_autocommit(deferrable.group(1).upper() in ("1", "ON", "TRUE"))
                else:
                    await self.backend.relay_set(sql)
                self.fe_answered = False
                return Result()
            if raw is not None:
                return self.relay(raw, Command.QUERY, sql, route=route)
            result = await self._timed(sql, lambda: self.backend.execute(sql, self.db))  # gRPC: decoded rows
            self._observe(route, ok=True)
            return result
        self.fe_answered = True
        text = route.text if route is not None else None
        return await self._timed(sql, lambda: executor.run(self, sql, prepared, text))

    def _begin(self, sql: str) -> asyncio.TimerHandle | None:
        """A statement starts: the processlist shows it, its time limit runs."""
        self.previous_query_id, self.query_id = self.query_id, self._host.next_query_id()
        self.info = statement_info(sql)
        self.command = "Query"
        self.state_since = time.monotonic()
        self.started_us = time.time_ns() // 1000
        limit = time_limit(sql, self.variables)
        if limit is None:
            return None
        return asyncio.get_running_loop().call_later(
            limit.seconds, self._interrupt_with, errors.statement_timeout(limit.name)
        )

    def relay(
        self, payload: bytes, command: Command, sql: str, statement_id: int = 0, route: Route | None = None
    ) -> Result:
        """A command for the engine, relayed as the client sent it: the answer
        is the server's packets (``Result.relay``), read as the client takes
        them. The statement runs until its answer's last packet is out."""
        if self.killed_by is not None:
            raise errors.interrupted(self.killed_by)
        self.fe_answered = False
        record = self._host.user_record(self.user)
        if record is not self._grants_seen:  # a GRANT or REVOKE somewhere: the server must see it now
            self._grants_seen = record
            self.backend.grants_changed()
        timer = self._begin(sql)
        chunks = self.backend.relay(payload, command, self.db, lambda: self._interrupt, statement_id)
        return Result(relay=self._relayed(chunks, timer, route))

    async def _relayed(
        self, chunks: AsyncGenerator[bytes, None], timer: asyncio.TimerHandle | None, route: Route | None
    ) -> AsyncGenerator[bytes, None]:
        self._relaying = True
        self.state = "Sending data"
        ok = False
        try:
            async for chunk in chunks:
                yield chunk
            ok = True
            self.state = "OK"
        except errors.SqlError as e:
            self.state = "ERR"
            if e.code == errors.SERVER_LOST and self.killed_by is None:
                self.killed_by = "by the loss of the backend connection"
                self._close_after_statement = True
            raise
        finally:
            await chunks.aclose()
            self._relaying = False
            self._statement_ended(timer)
            if route is not None:
                self._observe(route, ok and not self._backend_failed())
                if route.sql_mode and ok:
                    await self._read_sql_mode()

    def relays(self, sql: str) -> bool:
        """Whether ``sql`` is the engine's, relayed as the client sent it."""
        return self._host.backend.relays and self._host.executor.route(self, sql).relay

    def split(self, sql: str) -> list[str]:
        """A multi-statement text's statements, cut where the server cuts them.
        Over a relaying backend a text past 64 KB is not cut by the FE (the
        cost on the loop stays bounded): it goes to the server whole, which
        judges every statement in it."""
        if len(sql) > MAX_CLASSIFY and self._host.backend.relays:
            return [sql]
        return [sql[a:b] for a, b in lexer_split(sql, self.quote_modes)]

    def has_statement(self, statement_id: int) -> bool:
        """A prepared statement of this session that lives on the backend server."""
        return self._backend is not None and self._backend.has_statement(statement_id)

    async def send_only(self, payload: bytes) -> None:
        """A relayed command the server does not answer (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA)."""
        if self._backend is not None:
            await self._backend.send_only(payload)

    def _backend_failed(self) -> bool:
        return bool(getattr(self._backend, "last_error", None))

    async def _read_sql_mode(self) -> None:
        """A SET that may have changed the sql_mode: ask the server what it is now
        (whatever form it was set in), so the lexer reads quotes as the server does."""
        try:
            result = await self.backend.execute("SELECT @@SESSION.sql_mode", None)
            value = result.rows[0][0] if result.rows else b""
            self.quote_modes = quote_modes(value.decode() if isinstance(value, bytes) else str(value or ""))
        except errors.SqlError as e:
            log.warning("session %d: sql_mode unknown after a SET (%s)", self.id, e.message)

    def _observe(self, route: Route, ok: bool) -> None:
        """What the FE keeps of a relayed statement that succeeded."""
        if not ok:
            return
        if route.use is not None:
            self.db = route.use
            self._host.record_changed(self)

    async def _timed(self, sql: str, run: Callable[[], Awaitable[Result]]) -> Result:
        """A statement the FE runs (or the gRPC path decodes) as a task a KILL can cancel."""
        timer = self._begin(sql)
        streaming = False
        try:
            result = await self._step(run())
            if result.more is not None:  # the statement runs on while its rows are sent
                result.more = self._rest(result.more, timer)
                streaming = True
            self.state = "OK"
            return result
        finally:
            if not streaming:
                self._statement_ended(timer)

    async def _step(self, step: Awaitable[T]) -> T:
        """A step of the running statement (the statement, or one batch of its
        streamed rows) as a task a KILL or a time limit can cancel."""
        if self._interrupt is not None:  # it came between two batches
            self.state = "ERR"
            raise self._interrupt
        task = asyncio.ensure_future(step)
        self._running = task
        try:
            return await task
        except asyncio.CancelledError:
            # Our KILL (or time limit) cancelled the statement's task; a cancel
            # of this task itself (client gone, shutdown) must propagate.
            current = asyncio.current_task()
            if self._interrupt is not None and task.cancelled() and (current is None or not current.cancelling()):
                self.state = "ERR"
                raise self._interrupt from None
            raise
        except errors.SqlError as e:
            self.state = "ERR"
            if e.code == errors.SERVER_LOST and self.killed_by is None:
                # The backend connection died under the session: its transaction
                # and session state are gone, so the session ends too (never a
                # silent reconnect inside a transaction). The client gets the
                # 2013 as this statement's answer, then the socket closes.
                self.killed_by = "by the loss of the backend connection"
                self._close_after_statement = True
            raise
        except Exception:
            self.state = "ERR"
            raise

    async def _rest(
        self, more: Batches, timer: asyncio.TimerHandle | None
    ) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        """The rest of a streamed result, batch by batch as the client reads:
        the statement is running (processlist, KILL, time limits) until its
        last batch is out or the reader lets go."""
        self._streaming = True
        self.state = "Sending data"
        try:
            while (batch := await self._step(anext(more, None))) is not None:
                yield batch
            self.state = "OK"
        finally:
            await more.aclose()  # the backend lets go of its cursor
            self._streaming = False
            self._statement_ended(timer)

    def _statement_ended(self, timer: asyncio.TimerHandle | None) -> None:
        if self._close_after_statement:
            # After the adapter has written this statement's answer (same loop step).
            asyncio.get_running_loop().call_soon(self._close_transport, None)
            self._close_after_statement = False
        if timer is not None:
            timer.cancel()
        self._running = None
        self._interrupt = None
        self.command = "Sleep"
        self.state_since = time.monotonic()

    def set_user_variable(self, name: str, value: Any) -> None:
        name = name.lower()
        if name not in self.user_variables and len(self.user_variables) >= MAX_USER_VARIABLES:
            raise errors.SqlError(errors.NOT_SUPPORTED, f"more than {MAX_USER_VARIABLES} user variables")
        self.user_variables[name] = value

    async def use(self, database: str) -> None:
        """The session's database, however it is named (login, COM_INIT_DB,
        COM_CHANGE_USER, the gRPC hello, USE): checked like MySQL's USE, 1044
        without a privilege on it, 1049 when it does not exist."""
        if database.lower() != "information_schema" and not self._host.may_use(self.user, database):
            raise errors.SqlError(
                errors.DB_ACCESS_DENIED, f"Access denied for user '{self.user}'@'%' to database '{database}'"
            )
        if not await self._host.backend.has_database(database):
            raise errors.SqlError(errors.BAD_DB, f"Unknown database '{database}'")
        self.db = database
        self._host.record_changed(self)

    async def set_trace_id(self, trace_id: str) -> None:
        old, self.trace_id = self.trace_id, trace_id
        if old != trace_id:
            await self._host.trace_changed(self, old)

    @property
    def running(self) -> bool:
        return self.command == "Query"

    def idle_seconds(self) -> float:
        return 0.0 if self.running else time.monotonic() - self.state_since

    @property
    def in_transaction(self) -> bool:
        """A transaction is open (SERVER_STATUS_IN_TRANS for the wire layer)."""
        return self._backend is not None and self._backend.in_transaction

    @property
    def autocommit(self) -> bool:
        """SERVER_STATUS_AUTOCOMMIT for the wire layer (a relaying backend's own, as it last said)."""
        if self._backend is not None and self._host.backend.relays:
            return self._backend.autocommit
        return bool(self.variables.get("autocommit"))

    # ------------------------------------------------------------ kill

    def kill_query(self, reason: str = "", issued_at_us: int | None = None) -> bool:
        """Interrupt the running statement, if any, unless it began after the
        KILL was issued; True if a statement was interrupted."""
        if issued_at_us is not None and self.started_us > issued_at_us:
            return False  # the statement the KILL was aimed at has ended: never hit the next one
        return self._interrupt_with(errors.interrupted(reason))

    def _interrupt_with(self, error: errors.SqlError) -> bool:
        if self._interrupt is not None:
            return False  # once: a second cancel would cut the backend's cleanup short
        if self._relaying and self._backend is not None:
            # Not a cancel: the server is told (KILL QUERY) and its own answer
            # decides what the client hears (an effect means no error).
            self._interrupt = error
            self._backend.interrupt()
            return True
        if self._running is None or self._running.done():
            if not self._streaming:
                return False
            self._interrupt = error  # between two batches of a streamed result: the next one answers it
            return True
        self._interrupt = error
        self._running.cancel()
        return True

    def kill_connection(self, by: str, error: errors.SqlError | None = None) -> bool:
        """Close the session (``by`` says why, e.g. "by KILL CONNECTION from
        root@10.0.0.7 via FE 10.0.0.5:9020"). Without ``error`` (KILL
        CONNECTION) the socket closes at once, as MariaDB's: a running
        statement's client sees 2013. With ``error`` the client is told first:
        as the running statement's answer, or unsolicited when idle."""
        if self.killed_by is not None:
            return False
        self.killed_by = by
        own = self._running is not None and self._running is asyncio.current_task()
        if self.running and (own or error is not None):
            # The running statement answers first, then the connection closes:
            # a KILL of one's own connection (1927, as MariaDB) or a shutdown (1053).
            self._interrupt_with(error or errors.connection_killed())
            self._close_after_statement = True
            return True
        self._interrupt_with(errors.interrupted(by))
        self._close_transport(error)
        return True

    # ------------------------------------------------------------ processlist

    def process_row(self) -> pb.ProcessRow:
        return pb.ProcessRow(
            id=self.id,
            user=self.user,
            host=self.host,
            login_time=self.login_time,
            catalog=CATALOG,
            db=self.db or "",
            command=self.command,
            time=int(time.monotonic() - self.state_since),
            state=self.state,
            query_id=self.query_id,
            info=self.info if self.running else "",  # idle: NULL in the processlist
            fe=self._host.fe.address,
            cloud_cluster=self._host.cloud_cluster,
            trace_id=self.trace_id,
            backend_host=self.backend_host,
            backend_thread=self.backend_thread,
        )

    async def close(self) -> None:
        self.kill_query()
        if self._running is not None:
            await asyncio.wait([self._running], timeout=5)  # the backend lets go of its thread first
        if self._backend is not None:
            self._backend.close()
            self._backend = None
