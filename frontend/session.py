"""The session core: one per client connection, whichever protocol carries it.

The MySQL and gRPC listeners are adapters over this class: they authenticate,
open it through the ``SessionTable``, hand statements to ``execute`` and render
its ``Result``. Killing works the same for both:

- ``kill_query`` cancels the running statement (the client sees 1317); an
  idle session is untouched.
- ``kill_connection`` also asks the adapter to close (``close_transport``);
  once hit, every later statement of the session fails with 1317 too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from coordinator import errors
from coordinator.pb import fecluster_pb2 as pb
from coordinator.registry import ConnectionRecord, FeRecord
from coordinator.users import UserRecord
from frontend.result import Result, SqlWarning
from frontend.sqltext import redact
from frontend.variables import Variables

if TYPE_CHECKING:
    from frontend.backend import Backend, BackendSession
    from frontend.executor import Executor

CATALOG = "internal"
MAX_USER_VARIABLES = 256  # each value is at most a SET statement's size (64 KB)
INFO_MAX = 16 * 1024  # what the processlist keeps of a statement: bounded memory, and redaction work on the loop


def statement_info(sql: str) -> str:
    """The processlist's Info: redacted, and cut at INFO_MAX (a cut inside a
    quoted password is closed first, so the cut cannot show half a secret)."""
    if len(sql) <= INFO_MAX:
        return redact(sql)
    return redact(sql[:INFO_MAX] + "'")[:-1]


class SessionHost(Protocol):
    """What a session needs from the FE it lives on (``frontend.sessions.SessionTable``)."""

    executor: Executor
    backend: Backend
    cloud_cluster: str

    @property
    def fe(self) -> FeRecord: ...

    def next_query_id(self) -> str: ...

    def record_changed(self, session: Session) -> None: ...


class Session:
    def __init__(
        self,
        host: SessionHost,
        conn_id: int,
        user: UserRecord,
        peer: str,
        protocol: str,
        close_transport: Callable[[], None],
        variables: Variables,
    ) -> None:
        self._host = host
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
        self.killed_by: str | None = None  # set once KILL CONNECTION has hit this session
        self._close_transport = close_transport
        self._running: asyncio.Task[Result] | None = None
        self._interrupted = False
        self._backend: BackendSession | None = None

    @property
    def backend(self) -> BackendSession:
        if self._backend is None:
            self._backend = self._host.backend.session()
        return self._backend

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
        )

    # ------------------------------------------------------------ statements

    async def execute(self, sql: str) -> Result:
        """Run one statement; a KILL turns it into SqlError 1317."""
        if self.killed_by is not None:
            raise errors.interrupted()
        executor = self._host.executor
        self.query_id = self._host.next_query_id()
        self.info = statement_info(sql)
        immediate = executor.immediate(sql)
        if immediate is not None:
            self.state = "OK"
            self.warnings = []
            self.state_since = time.monotonic()
            return immediate
        self.command = "Query"
        self.state_since = time.monotonic()
        task = asyncio.ensure_future(executor.run(self, sql))
        self._running = task
        try:
            result = await task
            self.state = "OK"
            return result
        except asyncio.CancelledError:
            # Our KILL cancelled the statement's task; a cancel of this task
            # itself (client gone, shutdown) must propagate as a cancel.
            current = asyncio.current_task()
            if self._interrupted and task.cancelled() and (current is None or not current.cancelling()):
                self.state = "ERR"
                raise errors.interrupted() from None
            raise
        except Exception:
            self.state = "ERR"
            raise
        finally:
            self._running = None
            self._interrupted = False
            self.command = "Sleep"
            self.state_since = time.monotonic()

    def set_user_variable(self, name: str, value: Any) -> None:
        name = name.lower()
        if name not in self.user_variables and len(self.user_variables) >= MAX_USER_VARIABLES:
            raise errors.SqlError(errors.NOT_SUPPORTED, f"more than {MAX_USER_VARIABLES} user variables")
        self.user_variables[name] = value

    async def use(self, database: str) -> None:
        if not self._host.backend.has_database(database):
            raise errors.SqlError(errors.BAD_DB, f"Unknown database '{database}'")
        self.db = database
        self._host.record_changed(self)

    @property
    def running(self) -> bool:
        return self.command == "Query"

    @property
    def in_transaction(self) -> bool:
        """A transaction is open (SERVER_STATUS_IN_TRANS for the wire layer)."""
        return self._backend is not None and self._backend.in_transaction

    @property
    def autocommit(self) -> bool:
        """SERVER_STATUS_AUTOCOMMIT for the wire layer."""
        return bool(self.variables.get("autocommit"))

    # ------------------------------------------------------------ kill

    def kill_query(self) -> None:
        """Interrupt the running statement, if any; an idle session is untouched."""
        if self._running is not None and not self._running.done() and not self._interrupted:
            self._interrupted = True  # once: a second cancel would cut the backend's cleanup short
            self._running.cancel()

    def kill_connection(self, by: str) -> None:
        if self.killed_by is not None:
            return
        self.killed_by = by
        self.kill_query()
        self._close_transport()

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
        )

    async def close(self) -> None:
        self.kill_query()
        if self._running is not None:
            await asyncio.wait([self._running], timeout=5)  # the backend lets go of its thread first
        if self._backend is not None:
            self._backend.close()
            self._backend = None
