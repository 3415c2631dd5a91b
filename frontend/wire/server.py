"""The MySQL listener on the ``frontend.wire`` codec.

One ``MysqlConnection`` per client, over ``transport.WireProtocol``:

1. Connection phase, under one deadline (``connect_timeout``, shorter under
   pressure): admission of the handshake (at most ``max_handshakes_per_address``
   from one client address, 1040 past it; at most ``max_handshakes`` in all,
   the oldest one cut to make room), reserve an id, send HandshakeV10, read
   the answer (upgrading to TLS on an SSLRequest when a context is
   configured), switch the client to mysql_native_password when it opened
   with another plugin, wait what the login throttle asks (growing delays
   after failed logins per user and address, ``frontend.throttle``), verify
   the scramble (1045 on failure, the same path for unknown users), open the
   session (``SessionFactory.open``: 1040 past ``--max-connections``, an
   admin's reserve beyond it), send OK. Handshakes never count against
   ``--max-connections``: idle sockets that never log in cannot lock anyone out.
2. Command phase: one payload in, one answer out with a single transport write
   (large result sets are flushed in bounded chunks with back-pressure).

The node is reached only through ``SessionFactory`` and ``WireSession``
(``frontend.session_table.SessionTable`` and ``frontend.session.Session``).

KILL CONNECTION closes the socket at once (the client sees 2013, as with
MariaDB); a client that goes away mid-statement has its statement cancelled
at once; an idle session closed by the server is told why first (4031).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import IdsExhausted
from coordinator.users import UserRecord
from frontend.backend import BackendLogin
from frontend.result import Batches, Result
from frontend.throttle import LoginThrottle
from frontend.wire import auth, commands
from frontend.wire import handshake as hs
from frontend.wire import prepared as ps
from frontend.wire import results as rs
from frontend.wire.answer import Command, next_seq, with_more_results
from frontend.wire.packets import (
    DEFAULT_MAX_ALLOWED_PACKET,
    PRE_AUTH_LIMIT,
    MalformedPacket,
    PacketTooLarge,
    PacketWriter,
    frame,
    lenenc_bytes,
)
from frontend.wire.transport import WireProtocol

log = logging.getLogger("fecluster.wire")

ER_HANDSHAKE_ERROR = 1043
ER_UNKNOWN_COM_ERROR = 1047
ER_MALFORMED_PACKET = 1835
ER_SECURE_TRANSPORT_REQUIRED = 3159
_STATES = {ER_HANDSHAKE_ERROR: "08S01", ER_UNKNOWN_COM_ERROR: "08S01", PacketTooLarge.code: "08S01"}

_CLIENT_GONE = (asyncio.IncompleteReadError, ConnectionError, EOFError)
MAX_HANDSHAKES = 512
MAX_HANDSHAKES_PER_ADDRESS = 64
PRESSED_CONNECT_TIMEOUT = 2.0
"""The handshake deadline once half of ``max_handshakes`` are in progress:
a client that logs in takes milliseconds, an idle socket is cut sooner."""
LINGER_S = 1.0
"""After a fatal ERR (1153), how long the unread rest of the client's packet
is read and dropped before the socket closes: closing with unread input
resets the connection, and the client could lose the ERR."""
_ONE_WRITE_ROWS = 256
"""Results with at most this many rows are encoded and written in one go, without awaiting."""


class WireSession(Protocol):
    """What the listener needs of a session (``frontend.session.Session`` has it)."""

    id: int
    killed_by: str | None
    tls: tuple[str, str] | None

    async def execute(
        self, sql: str, prepared: tuple[str, Sequence[Any]] | None = None, raw: bytes | None = None
    ) -> Result: ...

    def relays(self, sql: str) -> bool:
        """Whether ``sql`` is the engine's, to relay as the client sent it (a relaying backend)."""
        ...

    def split(self, sql: str) -> list[str]:
        """A multi-statement text's statements, cut as the server cuts them."""
        ...

    def has_statement(self, statement_id: int) -> bool:
        """A prepared statement of this session that lives on the backend server (a relayed PREPARE kept it)."""
        ...

    def relay(self, payload: bytes, command: Command, sql: str, statement_id: int = 0) -> Result: ...

    async def send_only(self, payload: bytes) -> None:
        """A relayed command the server does not answer (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA)."""
        ...

    async def use(self, database: str) -> None: ...

    def kill_query(self, reason: str = "", issued_at_us: int | None = None) -> bool: ...

    @property
    def autocommit(self) -> bool: ...

    @property
    def in_transaction(self) -> bool: ...


S = TypeVar("S", bound=WireSession)
"""The node's own session type: the listener hands back to the node what its ``open`` made."""


class SessionFactory(Protocol[S]):
    """The node, as the listener sees it."""

    def refusal(self) -> SqlError | None:
        """Why no session may open now (shutdown, a fenced FE), else None: told before the handshake."""
        ...

    def reserve_id(self) -> int:
        """A connection id; raises ``coordinator.ids.IdsExhausted`` (-> 1040)."""
        ...

    def release_id(self, conn_id: int) -> None: ...

    async def user(self, name: str) -> UserRecord | None: ...

    async def open(
        self,
        conn_id: int,
        user: UserRecord,
        host: str,
        protocol: str,
        close_transport: Callable[[SqlError | None], None],
        *,
        database: str | None = None,
        interactive: bool = False,
        login: BackendLogin | None = None,
    ) -> S:
        """A registered session; raises SqlError (e.g. 1049 unknown database) to refuse it."""
        ...

    async def close(self, session: S) -> None: ...

    def answered(self, session: S) -> None:
        """The answer of the session's statement has been written (a KILL may be waiting for it)."""
        ...


ER_OUT_OF_RESOURCES = 1041
_OUT_OF_MEMORY = (
    "Out of memory; check if mysqld or some other process uses all available memory; if not, you may have to use "
    "'ulimit' to allow mysqld to use more memory or you can add more swap space"
)


class MemoryBudget:
    """What this FE's sessions make it hold, in bytes, against ``--memory-budget``
    (0: unbounded, counted all the same): the FE's own prepared statements
    (their text and long data, until closed) and results the FE built whole
    while they are written to a client that reads slowly. What would pass the
    budget is refused with MySQL's 1041 (ER_OUT_OF_RESOURCES); what is held
    already is never taken away. Relayed results and the embedded backend's
    streamed ones are bounded chunks already, and are not counted."""

    def __init__(self, budget: int = 0) -> None:
        self.budget = budget
        self.used = 0
        self.peak = 0
        self.refused = 0

    def charge(self, n: int) -> None:
        if self.budget and self.used + n > self.budget:
            self.refused += 1
            raise SqlError(ER_OUT_OF_RESOURCES, f"{_OUT_OF_MEMORY} (--memory-budget = {self.budget} bytes)")
        self.used += n
        self.peak = max(self.peak, self.used)

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)


_STATEMENT_OVERHEAD = 512  # a prepared statement's objects besides its text
_ROW_OVERHEAD = 64


def _result_size(rows: Sequence[Sequence[Any]]) -> int:
    """A whole result's size, estimated from its first rows (constant time)."""
    if not rows:
        return 0
    sample = rows[:64]
    per_row = sum(
        _ROW_OVERHEAD + sum(len(v) if isinstance(v, str | bytes) else 8 for v in row) for row in sample
    ) / len(sample)
    return int(per_row * len(rows))


def _err(code: int, message: str, state: str | None = None) -> bytes:
    return rs.err_packet(code, message, state or _STATES.get(code))


class MysqlServer(Generic[S]):
    """Accepts MySQL clients; ``start`` binds, ``close`` stops accepting, ``abort_all`` cuts everyone."""

    def __init__(
        self,
        factory: SessionFactory[S],
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        max_allowed_packet: int = DEFAULT_MAX_ALLOWED_PACKET,
        server_version: str = hs.SERVER_VERSION,
        max_prepared_statements: int = 1024,
        require_secure_transport: bool = False,
        throttle: LoginThrottle | None = None,
        max_handshakes: int = MAX_HANDSHAKES,
        max_handshakes_per_address: int = MAX_HANDSHAKES_PER_ADDRESS,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.factory = factory
        self.memory = memory if memory is not None else MemoryBudget()
        self.throttle = throttle
        self.max_handshakes = max(1, max_handshakes)
        self.max_handshakes_per_address = max(1, max_handshakes_per_address)
        # Handshakes in progress, oldest first, and how many per client address.
        self.handshakes: dict[MysqlConnection[S], None] = {}
        self._per_address: dict[str, int] = {}
        self.handshakes_refused = 0  # over the per-address cap (1040)
        self.handshakes_cut = 0  # the oldest, cut to make room
        self.require_secure_transport = require_secure_transport
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.max_allowed_packet = max_allowed_packet
        self.server_version = server_version
        self.max_prepared_statements = max_prepared_statements
        self.capabilities = hs.server_capabilities(tls=ssl_context is not None)
        self.connections: set[MysqlConnection[S]] = set()
        self.started = time.monotonic()
        self.questions = 0
        self._server: asyncio.Server | None = None
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, backlog: int = 4096) -> None:
        """Listen on ``host:port``.

        Without TLS, asyncio's streams server accepts. With TLS, our own accept
        loop hands raw sockets to the connection: the client sends its TLS
        ClientHello right behind the SSLRequest, and a stream transport would
        already have swallowed those bytes before the TLS layer is in place.
        Reading the first packet with exact ``sock_recv`` calls leaves them in
        the kernel for the TLS handshake.
        """
        loop = asyncio.get_running_loop()
        if self.ssl_context is None:
            self._server = await loop.create_server(
                lambda: WireProtocol(self._accepted), host, port, backlog=backlog, reuse_address=True
            )
            return
        listener = socket.create_server((host, port), backlog=backlog, reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self._accept_task = loop.create_task(self._accept_loop(listener))

    @property
    def port(self) -> int:
        if self._server is not None:
            return int(self._server.sockets[0].getsockname()[1])
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    def close(self) -> None:
        """Stop accepting; open connections go on."""
        if self._server is not None:
            self._server.close()
        if self._accept_task is not None:
            self._accept_task.cancel()
        if self._listener is not None:
            self._listener.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        if self._accept_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task

    def abort_all(self) -> None:
        for connection in list(self.connections):
            connection.abort()

    def _accepted(self, io: WireProtocol) -> None:
        """A plain connection: the greeting (or the refusal) goes out now, in
        the accept callback; a task takes over to read the client's answer."""
        connection = MysqlConnection(self, io.transport.get_extra_info("peername"))
        connection.attach(io)
        if connection.begin(io.write):
            io.write(connection.greeting())
            self._spawn(self._serve(connection, connection.serve_plain()))
        else:
            connection.finish()

    # ------------------------------------------------------------ handshake admission

    def admit_handshake(self, connection: MysqlConnection[S]) -> bool:
        """A new handshake: False past the per-address cap; past the total cap
        the oldest handshake is cut (an idle socket's, nearly always: a client
        that logs in takes milliseconds), so a flood from many addresses
        cannot keep a real client out either."""
        ip = connection.ip
        count = self._per_address.get(ip, 0)
        if count >= self.max_handshakes_per_address:
            self.handshakes_refused += 1
            if self.handshakes_refused & (self.handshakes_refused - 1) == 0:  # 1, 2, 4, ...: bounded logging
                log.warning(
                    "%d handshakes refused: %d in progress from %s (--max-handshakes-per-address)",
                    self.handshakes_refused,
                    count,
                    ip,
                )
            return False
        while len(self.handshakes) >= self.max_handshakes:
            oldest = next(iter(self.handshakes))
            self.handshake_ended(oldest)
            oldest.abort()
            self.handshakes_cut += 1
        self.handshakes[connection] = None
        self._per_address[ip] = count + 1
        return True

    def handshake_ended(self, connection: MysqlConnection[S]) -> None:
        if self.handshakes.pop(connection, 0) is None:
            ip = connection.ip
            left = self._per_address.get(ip, 1) - 1
            if left > 0:
                self._per_address[ip] = left
            else:
                self._per_address.pop(ip, None)

    def handshake_timeout(self) -> float:
        """``connect_timeout``, or ``PRESSED_CONNECT_TIMEOUT`` once half the handshake slots are taken."""
        if len(self.handshakes) * 2 >= self.max_handshakes:
            return min(self.connect_timeout, PRESSED_CONNECT_TIMEOUT)
        return self.connect_timeout

    def _spawn(self, body: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(body)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as e:  # EMFILE and friends: back off instead of spinning
                log.warning("accept failed: %r", e)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = MysqlConnection(self, peer)
            self._spawn(self._serve(connection, connection.serve_socket(sock)))

    async def _serve(self, connection: MysqlConnection[S], body: Coroutine[Any, Any, None]) -> None:
        self.connections.add(connection)
        try:
            await body
        except Exception:
            log.exception("connection %s failed", connection.conn_id)
        finally:
            self.connections.discard(connection)
            connection.finish()


class MysqlConnection(Generic[S]):
    io: WireProtocol

    def __init__(self, server: MysqlServer[S], peer: Any) -> None:
        self.server = server
        self.conn_id = 0
        self.capabilities = 0
        self.charset = hs.UTF8MB4_GENERAL_CI
        self.deprecate_eof = False
        self.multi_statements = False
        self.session: S | None = None
        self.user: UserRecord | None = None
        self.nonce = b""
        self.stage1: bytes | None = None  # SHA1(password), learned from a verified scramble (the backend login)
        self._statements: ps.StatementRegistry | None = None  # made at the first prepared-statement command
        self.secure = False  # the client switched to TLS
        self._attached = False
        self._deadline: asyncio.Timeout | None = None  # the handshake's, while it lasts
        self._held: dict[int, int] = {}  # bytes charged to the memory budget per prepared statement id
        self._sock: socket.socket | None = None  # a raw socket not attached yet (TLS offered)
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.ip, self.peer = str(peer[0]), f"{peer[0]}:{peer[1]}"
        else:
            self.ip = self.peer = "localhost"

    @property
    def statements(self) -> ps.StatementRegistry:
        if self._statements is None:
            server = self.server
            self._statements = ps.StatementRegistry(server.max_prepared_statements, server.max_allowed_packet)
        return self._statements

    def attach(self, io: WireProtocol) -> None:
        self.io = io
        self.packets = io  # reads payloads, carries the sequence id and the size cap
        io.on_lost = self._client_gone
        self._attached = True

    def _client_gone(self) -> None:
        """The client closed or vanished: its running statement has nobody to answer."""
        if self.session is not None:
            self.session.kill_query("by the client going away")

    # ------------------------------------------------------------ output

    def send(self, *payloads: bytes) -> None:
        """Frame ``payloads`` after the client's packet and write them at once."""
        data, self.packets.seq = frame(payloads, self.packets.seq)
        self.io.write(data)

    def send_error(self, code: int, message: str, state: str | None = None) -> None:
        self.send(_err(code, message, state))

    def abort(self) -> None:
        if not self._attached:
            if self._sock is not None:  # cut before its first packet: wakes its pending recv
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
            return
        transport = self.io.transport
        with contextlib.suppress(Exception):
            if not transport.is_closing():
                transport.abort()

    def finish(self) -> None:
        """End the connection after what is already written (the last ERR) has gone out."""
        if not self._attached:
            return
        transport = self.io.transport
        if not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():
                asyncio.get_running_loop().call_later(1.0, self.abort)  # a client that does not read

    def close_by_kill(self, error: SqlError | None = None) -> None:
        """KILL CONNECTION (or an idle timeout, with ``error``): close the socket
        now, as MariaDB does (the client sees 2013, or ``error`` first: an idle
        client is not waiting for an answer, so it goes out with sequence id 0).
        The command loop sees EOF. What is already queued is sent; a client that
        stopped reading could hold us in that write: cut off after 1 s."""
        transport = self.io.transport
        if not transport.is_closing():
            if error is not None:
                self.io.write(frame([_err(error.code, error.message)], 0)[0])
            transport.close()
            asyncio.get_running_loop().call_later(1.0, self.abort)
        self.io.feed_eof()

    # ------------------------------------------------------------ lifecycle

    async def serve_plain(self) -> None:
        """A connection accepted by the protocol server (no TLS offered), greeted already (``begin``)."""
        await self._lifecycle(self._first_plain)

    async def serve_socket(self, sock: socket.socket) -> None:
        """A raw accepted socket (TLS offered): the protocol is attached once the first packet is read."""

        def send_early(data: bytes) -> None:
            with contextlib.suppress(OSError):
                sock.send(data)  # a small packet into an empty socket buffer: never blocks

        self._sock = sock
        try:
            if self.begin(send_early):
                await self._lifecycle(lambda: self._greet_socket(sock, self.greeting()))
        finally:
            self._sock = None
            if not self._attached:
                sock.close()

    async def _first_plain(self) -> bytes | None:
        payload = await self.packets.read()
        return None if hs.is_ssl_request(payload) else payload  # CLIENT_SSL was never offered

    async def _greet_socket(self, sock: socket.socket, greeting: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, greeting)
        header = await _recv_exactly(loop, sock, 4)
        length = int.from_bytes(header[:3], "little")
        if length > PRE_AUTH_LIMIT:
            return None
        payload = await _recv_exactly(loop, sock, length)
        tls = hs.is_ssl_request(payload)
        self.secure = tls
        io = WireProtocol()
        await loop.connect_accepted_socket(lambda: io, sock, ssl=self.server.ssl_context if tls else None)
        self.attach(io)
        self.packets.seq = (header[3] + 1) & 0xFF
        return await self.packets.read() if tls else payload

    def begin(self, send_early: Callable[[bytes], None]) -> bool:
        """Admit the handshake and reserve the connection's id, or tell the client why not (and return False)."""
        server = self.server
        factory = server.factory
        refusal = factory.refusal()
        if refusal is not None:
            send_early(frame([rs.err_packet(refusal.code, refusal.message, protocol41=False)], 0)[0])
            return False
        if not server.admit_handshake(self):
            message = f"Too many connections from {self.ip} still logging in"
            send_early(frame([rs.err_packet(errors.TOO_MANY_CONNECTIONS, message, protocol41=False)], 0)[0])
            return False
        try:
            self.conn_id = factory.reserve_id()
        except IdsExhausted:
            server.handshake_ended(self)
            send_early(
                frame([rs.err_packet(errors.TOO_MANY_CONNECTIONS, "Too many connections", protocol41=False)], 0)[0]
            )
            return False
        self.nonce = hs.make_nonce()
        return True

    def greeting(self) -> bytes:
        """The framed HandshakeV10 for the id ``begin`` reserved."""
        server = self.server
        return frame([hs.build_handshake(self.conn_id, self.nonce, server.capabilities, server.server_version)], 0)[0]

    async def _lifecycle(self, greet: Callable[[], Awaitable[bytes | None]]) -> None:
        """From the greeting (sent, or sent by ``greet``) to the end; the id ``begin`` reserved is given back."""
        server = self.server
        factory = server.factory
        try:
            try:
                async with asyncio.timeout(server.handshake_timeout()) as deadline:
                    self._deadline = deadline
                    first = await greet()
                    opened = first is not None and await self._login(first)
            except (TimeoutError, *_CLIENT_GONE, ssl.SSLError, PacketTooLarge) as e:
                log.debug("handshake from %s ended: %r", self.peer, e)
                return
            finally:
                self._deadline = None
                server.handshake_ended(self)
            if not opened:
                return
            try:
                await self._command_phase()
            except _CLIENT_GONE:
                pass
            except RuntimeError as e:
                # A write after KILL CONNECTION (or an idle timeout) closed the
                # transport: the session's end is logged by whoever closed it.
                if not self.io.transport.is_closing():
                    raise
                log.debug("connection %d: answer cut by its close: %s", self.conn_id, e)
            finally:
                self._release_all()
                if self.session is not None:
                    await factory.close(self.session)
        finally:
            factory.release_id(self.conn_id)
            # The session holds this connection (its close_transport) and this
            # connection the session: without this cut the pair, its variables and
            # the transport wait for a full collection (a 5,000-connection burst
            # left 65,000 objects and its peak RSS behind).
            self.session = None

    def _hold(self, stmt_id: int, n: int) -> None:
        """Charge ``n`` more bytes of prepared statement ``stmt_id`` to the FE's budget (1041 past it)."""
        self.server.memory.charge(n)
        self._held[stmt_id] = self._held.get(stmt_id, 0) + n

    def _let_go(self, stmt_id: int) -> None:
        self.server.memory.release(self._held.pop(stmt_id, 0))

    def _release_all(self) -> None:
        self.server.memory.release(sum(self._held.values()))
        self._held.clear()

    async def _linger(self) -> None:
        """After a fatal ERR: half-close, then read and drop what the client
        still sends (the rest of an oversize packet) until it closes or
        ``LINGER_S`` passes. Closing with unread input would reset the
        connection, and the client's kernel could drop the ERR unread."""
        transport = self.io.transport
        if transport.is_closing() or not transport.can_write_eof():
            return
        done = asyncio.get_running_loop().create_future()
        transport.set_protocol(_Discard(done))
        transport.resume_reading()
        with contextlib.suppress(OSError, RuntimeError):
            transport.write_eof()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, LINGER_S)

    # ------------------------------------------------------------ connection phase

    async def _login(self, payload: bytes) -> bool:
        """The handshake response: authenticate, open the session, answer OK."""
        server = self.server
        try:
            response = hs.parse_handshake_response(payload, server.capabilities)
        except MalformedPacket:
            self.send_error(ER_HANDSHAKE_ERROR, "Bad handshake")
            return False
        self.capabilities = response.capabilities
        self.deprecate_eof = bool(self.capabilities & hs.CLIENT_DEPRECATE_EOF)
        self.multi_statements = bool(self.capabilities & hs.CLIENT_MULTI_STATEMENTS)
        self.charset = response.charset
        user = await self._authenticate(response.user, response.plugin, response.auth_response)
        if user is None:
            return False
        refusal = server.factory.refusal()
        if refusal is not None:
            self.send_error(refusal.code, refusal.message)
            return False
        if server.require_secure_transport and not self.secure:
            self.send_error(
                ER_SECURE_TRANSPORT_REQUIRED,
                "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
            )
            return False
        try:
            self.session = await server.factory.open(
                self.conn_id,
                user,
                self.peer,
                "mysql",
                self.close_by_kill,
                database=response.database,
                interactive=bool(self.capabilities & hs.CLIENT_INTERACTIVE),
                login=self._backend_login(user),
            )
        except SqlError as e:
            self.send_error(e.code, e.message, e.state)
            return False
        self.session.tls = self._tls()
        self.user = user
        self.packets.limit = server.max_allowed_packet
        self.send(rs.ok_packet())
        return True

    def _backend_login(self, user: UserRecord) -> BackendLogin:
        """How this client's backend connection logs in and speaks (a relaying backend)."""
        return BackendLogin(user.name, self.stage1, self.capabilities, self.charset)

    async def _authenticate(self, name: str, plugin: str | None, response: bytes) -> UserRecord | None:
        """Verify (after an auth switch if needed); on failure send 1045 and return None."""
        if auth.needs_switch(plugin, response):
            self.send(auth.auth_switch_request(self.nonce))
            response = auth.parse_auth_switch_response(await self.packets.read())
        throttle = self.server.throttle
        if throttle is not None:
            # Asked before anything is looked up or verified: an unknown user
            # and a wrong password wait alike. The wait does not count against
            # the handshake's deadline (MySQL's connection-control delays the answer).
            delay = throttle.delay_for(name, self.ip)
            if delay > 0:
                if self._deadline is not None and (when := self._deadline.when()) is not None:
                    self._deadline.reschedule(when + delay)
                await asyncio.sleep(delay)
        user = await self.server.factory.user(name)
        if user is not None and auth.verify_native(user.auth_string, self.nonce, response):
            self.stage1 = auth.stage1(user.auth_string, self.nonce, response)
            if throttle is not None:
                throttle.succeeded(name, self.ip)
            return user
        if user is None:
            auth.verify_native(None, self.nonce, response)  # the same work as a wrong password
        if throttle is not None:
            throttle.failed(name, self.ip)
        self.send_error(errors.ACCESS_DENIED, auth.access_denied_message(name, self.ip, bool(response)))
        return None

    # ------------------------------------------------------------ command phase

    async def _command_phase(self) -> None:
        read = self.packets.read
        handlers = self._handlers()
        while True:
            try:
                payload = await read()
            except PacketTooLarge as e:
                self.send_error(e.code, e.message)
                await self._linger()
                return
            if not payload:
                self.send_error(ER_MALFORMED_PACKET, "Malformed communication packet.")
                continue
            command = payload[0]
            if command == commands.COM_QUIT:
                return
            handler = handlers.get(command)
            if handler is None:
                self.send_error(ER_UNKNOWN_COM_ERROR, "Unknown command")
                continue
            try:
                keep = await handler(payload)
            except MalformedPacket:
                self.send_error(ER_MALFORMED_PACKET, "Malformed communication packet.")
                continue
            except SqlError as e:
                self.send_error(e.code, e.message, e.state)
                continue
            if keep is False:
                return

    def _handlers(self) -> dict[int, Callable[[bytes], Any]]:
        return {
            commands.COM_QUERY: self._query,
            commands.COM_PING: self._ok,
            commands.COM_INIT_DB: self._init_db,
            commands.COM_STMT_PREPARE: self._stmt_prepare,
            commands.COM_STMT_EXECUTE: self._stmt_execute,
            commands.COM_STMT_SEND_LONG_DATA: self._stmt_long_data,
            commands.COM_STMT_CLOSE: self._stmt_close,
            commands.COM_STMT_RESET: self._stmt_reset,
            commands.COM_STMT_FETCH: self._stmt_fetch,
            commands.COM_SET_OPTION: self._set_option,
            commands.COM_RESET_CONNECTION: self._reset_connection,
            commands.COM_FIELD_LIST: self._field_list,
            commands.COM_STATISTICS: self._statistics,
            commands.COM_CHANGE_USER: self._change_user,
        }

    async def _ok(self, payload: bytes) -> None:
        self.send(rs.ok_packet())

    async def _run(
        self, sql: str, prepared: tuple[str, Sequence[Any]] | None = None, raw: bytes | None = None
    ) -> Result | None:
        """Execute one statement; on error the ERR is sent and None returned."""
        assert self.session is not None
        self.server.questions += 1
        session = self.session
        try:
            return await session.execute(sql, prepared, raw)
        except SqlError as e:
            self.send_error(e.code, e.message, e.state)
        except Exception as e:  # a bug of ours: log it, answer 1105, keep the connection
            log.exception("statement failed on connection %d", self.conn_id)
            self.send_error(errors.UNKNOWN_ERROR, f"internal error: {e!r}")
        finally:
            # An error is written by now; a result is, in this loop step.
            self.server.factory.answered(session)
        return None

    async def _query(self, payload: bytes) -> None:
        sql = commands.decode_text(commands.parse_query(payload), self.charset)
        assert self.session is not None
        statements = [sql]
        if self.multi_statements and ";" in sql:
            statements = self.session.split(sql)  # a scan only when a ';' may separate statements
            if len(statements) > 1 and all(self.session.relays(s) for s in statements):
                statements = [sql]  # all the engine's: the server runs them as one, as sent
        elif not sql.strip():
            statements = []
        if not statements:
            self.send_error(errors.EMPTY_QUERY, "Query was empty")
            return
        last = len(statements) - 1
        for i, statement in enumerate(statements):
            raw = payload if last == 0 else bytes((commands.COM_QUERY,)) + commands.encode_text(statement, self.charset)
            result = await self._run(statement, raw=raw)
            if result is None:
                return  # MySQL stops a multi-statement query at the first error
            if result.relay is not None:
                if not await self._forward(result.relay, more=i < last):
                    return
                continue
            status = self._status() | (rs.SERVER_MORE_RESULTS_EXISTS if i < last else 0)
            await self._send_result(result, status, binary=False)

    async def _forward(self, chunks: AsyncGenerator[bytes, None], more: bool = False) -> bool:
        """A relayed answer, written as the server framed it, a chunk at a
        time as the client reads (bounded: the backend connection pauses while
        its buffer is full). ``more``: another statement's answer follows, so
        the last packet says MORE_RESULTS_EXISTS. False if the answer failed."""
        io = self.io
        held: bytes | None = None  # with ``more``, the chunk that may hold the last packet
        written = b""  # the last chunk written: the sequence goes on after it
        ok = True
        try:
            async for data in chunks:
                if more:
                    held, data = data, held or b""
                if data:
                    io.write(data)
                    written = data
                    if io.write_paused:
                        await io.drain()
            if held is not None:
                written = with_more_results(held, self.deprecate_eof)
                io.write(written)
            if written and more:
                self.packets.seq = next_seq(written)
        except SqlError as e:  # the backend failed or went away: the statement's answer is this ERR
            ok = False
            if written:
                self.packets.seq = next_seq(written)
            self.send_error(e.code, e.message, e.state)
        finally:
            await chunks.aclose()
            if self.session is not None:
                self.server.factory.answered(self.session)
        return ok

    def _status(self) -> int:
        """SERVER_STATUS_AUTOCOMMIT / IN_TRANS as the session says: drivers
        (PyMySQL's autocommit(), SQLAlchemy) decide whether to send SET or
        COMMIT from them."""
        session = self.session
        if session is None:
            return rs.SERVER_STATUS_AUTOCOMMIT
        return (rs.SERVER_STATUS_AUTOCOMMIT if session.autocommit else 0) | (
            rs.SERVER_STATUS_IN_TRANS if session.in_transaction else 0
        )

    async def _send_result(self, result: Result, status: int, binary: bool) -> None:
        """OK, or a result set: small ones in one synchronous write, large ones streamed."""
        if not result.columns:
            affected = result.affected_rows  # changed rows, as MySQL counts them
            if result.found_rows is not None and self.capabilities & hs.CLIENT_FOUND_ROWS:
                affected = result.found_rows  # the client asked for matched rows
            # MariaDB sends the info length-encoded, and libmariadb (mysqlclient) reads it so.
            info = lenenc_bytes(result.info.encode()) if result.info else b""
            self.send(rs.ok_packet(affected, result.last_insert_id, status, len(result.warnings), info))
            return
        rows = result.rows
        if result.wire_columns is not None:  # a relaying backend's own column definitions
            columns: Sequence[rs.Column] = result.wire_columns
        elif binary:
            # A streamed result's later batches are unseen: a column NULL so far goes out as text.
            columns = rs.stable_columns(result.columns, rows, unseen_as_text=result.more is not None)
        else:
            columns = rs.infer_columns(result.columns, rows)

        def encode(batch: Sequence[Sequence[Any]]) -> Iterator[bytes]:
            return rs.binary_rows(columns, batch) if binary else map(rs.text_row, batch)

        header = rs.result_header(columns, self.deprecate_eof, status)
        end = rs.result_end(self.deprecate_eof, status, len(result.warnings))
        if result.more is None and len(rows) <= _ONE_WRITE_ROWS:
            data, self.packets.seq = frame([*header, *encode(rows), end], self.packets.seq)
            self.io.write(data)
            return
        # A result built whole is held until its last row is out: against the budget meanwhile.
        held = _result_size(rows) if result.more is None else 0
        memory = self.server.memory
        try:
            memory.charge(held)
        except SqlError as e:
            self.send_error(e.code, e.message, e.state)
            return
        try:
            await self._stream(header, encode, rows, result.more, end)
        finally:
            memory.release(held)

    async def _stream(
        self,
        header: Sequence[bytes],
        encode: Callable[[Sequence[Sequence[Any]]], Iterator[bytes]],
        rows: Sequence[Sequence[Any]],
        more: Batches | None,
        end: bytes,
    ) -> None:
        """A large result in ~256 KiB writes, waiting for the client whenever
        the transport is full; a streamed one fetches its next batch only then.
        A statement that fails mid-result (a KILL, a time limit) ends it with
        its ERR packet in place of the next row, as MySQL does."""
        out = PacketWriter(self.io.write, self.packets.seq)
        out.extend(header)
        add = out.add

        async def write(batch: Sequence[Sequence[Any]]) -> None:
            for row in encode(batch):
                if add(row):
                    out.flush()
                    await self.io.drain()

        try:
            await write(rows)
            if more is not None:
                async for batch in more:
                    await write(batch)
        except SqlError as e:
            end = _err(e.code, e.message, e.state)
        finally:
            if more is not None:
                await more.aclose()  # the statement ends here, also when the client went away
        add(end)
        out.flush()
        self.packets.seq = out.seq
        if more is not None and self.session is not None:
            self.server.factory.answered(self.session)  # a KILL that stopped the rows may answer now

    async def _init_db(self, payload: bytes) -> None:
        assert self.session is not None
        await self.session.use(commands.parse_init_db(payload, self.charset))
        self.send(rs.ok_packet())

    async def _set_option(self, payload: bytes) -> None:
        option = commands.parse_set_option(payload)
        if option == commands.MYSQL_OPTION_MULTI_STATEMENTS_ON:
            self.multi_statements = True
        elif option == commands.MYSQL_OPTION_MULTI_STATEMENTS_OFF:
            self.multi_statements = False
        else:
            self.send_error(ER_UNKNOWN_COM_ERROR, "Unknown command")
            return
        self.send(rs.result_end(self.deprecate_eof))  # MySQL answers with an EOF (an OK under DEPRECATE_EOF)

    async def _reset_connection(self, payload: bytes) -> None:
        # Prepared statements go; session variables are the session's business.
        self.statements.clear()
        self._release_all()
        self.send(rs.ok_packet())

    async def _field_list(self, payload: bytes) -> None:
        commands.parse_field_list(payload, self.charset)
        self.send(rs.result_end(self.deprecate_eof))  # no column metadata to offer: an empty list

    async def _statistics(self, payload: bytes) -> None:
        server = self.server
        uptime = int(time.monotonic() - server.started)
        text = (
            f"Uptime: {uptime}  Threads: {len(server.connections)}  Questions: {server.questions}  "
            f"Slow queries: 0  Opens: 0  Flush tables: 0  Open tables: 0  Queries per second avg: "
            f"{server.questions / max(uptime, 1):.3f}"
        )
        self.send(text.encode())

    def _tls(self) -> tuple[str, str] | None:
        """(protocol version, cipher) of the client's TLS link, for SHOW STATUS."""
        tls = self.io.transport.get_extra_info("ssl_object") if self.secure else None
        return None if tls is None else (tls.version() or "", (tls.cipher() or ("",))[0])

    async def _change_user(self, payload: bytes) -> bool:
        """Re-authenticate against the greeting's nonce; a new session replaces the old one.

        A failed change ends the connection, as in MySQL.
        """
        request = commands.parse_change_user(payload, self.capabilities)
        self.packets.limit = PRE_AUTH_LIMIT
        user = await self._authenticate(request.user, request.plugin, request.auth_response)
        if user is None:
            return False
        factory = self.server.factory
        if self.session is not None:
            await factory.close(self.session)
            self.session = None
        self.statements.clear()
        self._release_all()
        if request.charset is not None:
            self.charset = request.charset
        try:
            self.session = await factory.open(
                self.conn_id,
                user,
                self.peer,
                "mysql",
                self.close_by_kill,
                database=request.database,
                login=self._backend_login(user),
            )
        except SqlError as e:
            self.send_error(e.code, e.message, e.state)
            return False
        self.session.tls = self._tls()
        self.user = user
        self.packets.limit = self.server.max_allowed_packet
        self.send(rs.ok_packet())
        return True

    # ------------------------------------------------------------ prepared statements

    async def _stmt_prepare(self, payload: bytes) -> None:
        sql = commands.decode_text(ps.parse_prepare(payload), self.charset)
        session = self.session
        assert session is not None
        if session.relays(sql):  # the engine's: it validates, types and keeps the statement
            stmt = self.statements.prepare(sql, relayed=True)
            try:
                ok = await self._forward(session.relay(payload, Command.PREPARE, sql, stmt.id).relay or _nothing())
            except SqlError:
                self.statements.forget(stmt.id)
                raise
            if not ok or not session.has_statement(stmt.id):
                self.statements.forget(stmt.id)
            return
        size = len(payload) + _STATEMENT_OVERHEAD
        self.server.memory.charge(size)
        try:
            stmt = self.statements.prepare(sql)
        except BaseException:
            self.server.memory.release(size)
            raise
        self._held[stmt.id] = size
        self.send(*ps.prepare_ok(stmt, self.deprecate_eof))

    async def _relayed_statement(self, payload: bytes, command: Command) -> bool:
        """A COM_STMT_* for a statement that lives on the server: relayed with
        its id mapped. False if the statement is the FE's own."""
        stmt = self.statements.peek(payload)
        if stmt is None or not stmt.relayed or self.session is None:
            return False
        self.server.questions += 1
        try:
            result = self.session.relay(payload, command, stmt.sql)
        except SqlError as e:
            self.send_error(e.code, e.message, e.state)
        else:
            assert result.relay is not None
            await self._forward(result.relay)
        return True

    async def _stmt_fetch(self, payload: bytes) -> None:
        if not await self._relayed_statement(payload, Command.FETCH):
            stmt_id = int.from_bytes(payload[1:5], "little")
            raise ps.unknown_statement(stmt_id, "mysqld_stmt_fetch")

    async def _stmt_execute(self, payload: bytes) -> None:
        if await self._relayed_statement(payload, Command.QUERY):
            return
        execution = self.statements.parse_execute(payload, self.charset)
        try:
            sql = execution.sql()
        except ValueError as e:
            self.send_error(ps.ER_WRONG_ARGUMENTS, f"Incorrect arguments to mysqld_stmt_execute: {e}")
            return
        result = await self._run(sql, (execution.statement.sql, execution.params))
        if result is not None:
            await self._send_result(result, self._status(), binary=True)

    async def _stmt_long_data(self, payload: bytes) -> None:
        stmt = self.statements.peek(payload)
        if stmt is not None and stmt.relayed and self.session is not None:
            with contextlib.suppress(SqlError):  # no reply, ever: the client is not reading one
                await self.session.send_only(payload)
            return
        if stmt is not None:
            try:
                self._hold(stmt.id, len(payload))
            except SqlError as e:  # no reply now: the execute answers it
                stmt.long_data.clear()
                stmt.long_data_size = 0
                stmt.long_data_error = e
                return
        with contextlib.suppress(MalformedPacket):  # no reply, ever: the client is not reading one
            self.statements.send_long_data(payload)

    async def _stmt_close(self, payload: bytes) -> None:
        with contextlib.suppress(MalformedPacket):  # no reply, ever
            stmt = self.statements.close(payload)
            if stmt is not None:
                self._let_go(stmt.id)
            if stmt is not None and stmt.relayed and self.session is not None:
                with contextlib.suppress(SqlError):
                    await self.session.send_only(payload)

    async def _stmt_reset(self, payload: bytes) -> None:
        if await self._relayed_statement(payload, Command.SIMPLE):
            return
        self.statements.reset(payload)
        self.send(rs.ok_packet())


class _Discard(asyncio.Protocol):
    """Reads and drops a closing connection's input; ``done`` when the client closes."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _nothing() -> AsyncGenerator[bytes, None]:
    return
    yield b""


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock``, never more (the rest stays in the kernel)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(buf), n)
        buf += chunk
    return bytes(buf)
