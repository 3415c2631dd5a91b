"""The gRPC listener: the ``Peer`` service (FE to FE, cluster secret), the
``Frontend`` service (clients, user and password), health and reflection.

The ``Frontend.Session`` stream is the gRPC adapter over the same session core
as the MySQL listener: one stream, one connection id, one registry row.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import IdsExhausted
from coordinator.pb import fecluster_pb2 as pb
from coordinator.pb import fecluster_pb2_grpc as pb_grpc
from coordinator.peers import LEASE_HEALTH, SECRET_HEADER, start_eagerly
from coordinator.processlist import INFO_LIMIT
from coordinator.routing import Router
from coordinator.users import UserRecord
from frontend import tls
from frontend.backend import BackendLogin
from frontend.config import Config
from frontend.grpc_client import PASSWORD_HEADER, USER_HEADER
from frontend.result import Result, SqlWarning, whole
from frontend.session_table import SessionTable
from frontend.throttle import LoginThrottle
from frontend.wire import results as rs
from frontend.wire.answer import RowDecoder
from frontend.wire.auth import stage1_of_password
from frontend.wire.client import CLIENT_CAPABILITIES, COM_QUERY
from frontend.wire.handshake import CLIENT_DEPRECATE_EOF

if TYPE_CHECKING:
    from coordinator.membership import Membership
    from frontend.session import Session

log = logging.getLogger("fecluster.grpc")

HELLO_TIMEOUT = 10.0
MAX_MESSAGE = 4 * 1024 * 1024
# A streamed statement's message: about this many rows, or this many bytes of
# relayed rows (plus one row), whichever comes first. What a session holds.
STREAM_ROWS = 1_000
STREAM_BYTES = 1 << 20
_OUR_PREFIX = f"/{pb.DESCRIPTOR.package}."
_PEER_PREFIX = f"{_OUR_PREFIX}Peer/"


def sql_error(e: SqlError) -> pb.SqlError:
    return pb.SqlError(code=e.code, sqlstate=e.sqlstate, message=e.message)


def _value(v: Any) -> pb.Value:
    if v is None:
        return pb.Value(null=True)
    if isinstance(v, bool):
        return pb.Value(int=int(v))
    if isinstance(v, int):
        return pb.Value(int=v) if -(2**63) <= v < 2**63 else pb.Value(text=str(v))
    if isinstance(v, float):
        return pb.Value(float=v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return pb.Value(blob=bytes(v))
    return pb.Value(text=str(v))


def _type_name(values: list[Any]) -> str:
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool | int):
            return "BIGINT"
        if isinstance(v, float):
            return "DOUBLE"
        if isinstance(v, bytes | bytearray | memoryview):
            return "BLOB"
        return "VARCHAR"
    return "NULL"


def _warnings(warnings: list[SqlWarning]) -> list[pb.Warning]:
    return [pb.Warning(level=w.level, code=w.code, message=w.message) for w in warnings]


def _wire_columns(wire: list[rs.Column]) -> list[pb.Column]:
    return [pb.Column(name=c.name, type=rs.type_name(c)) for c in wire]


def _wire_rows(wire: list[rs.Column], rows: list[tuple[bytes | None, ...]]) -> list[pb.Row]:
    return [pb.Row(values=[_value(rs.python_value(c, v)) for c, v in zip(wire, row, strict=True)]) for row in rows]


def _columns(names: list[str], rows: list[tuple[Any, ...]]) -> list[pb.Column]:
    return [pb.Column(name=name, type=_type_name([row[i] for row in rows])) for i, name in enumerate(names)]


def _rows(rows: list[tuple[Any, ...]]) -> list[pb.Row]:
    return [pb.Row(values=[_value(v) for v in row]) for row in rows]


def statement_result(result: Result, query_id: str) -> pb.StatementResult:
    if result.wire_columns is not None:  # a relaying backend's answer: its types, its raw text values
        wire = result.wire_columns
        return pb.StatementResult(
            columns=[pb.Column(name=c.name, type=rs.type_name(c)) for c in wire],
            rows=[
                pb.Row(values=[_value(rs.python_value(c, v)) for c, v in zip(wire, row, strict=True)])
                for row in result.rows
            ],
            affected_rows=result.affected_rows,
            warnings=[pb.Warning(level=w.level, code=w.code, message=w.message) for w in result.warnings],
            query_id=query_id,
        )
    columns = [
        pb.Column(name=name, type=_type_name([row[i] for row in result.rows])) for i, name in enumerate(result.columns)
    ]
    return pb.StatementResult(
        columns=columns,
        rows=[pb.Row(values=[_value(v) for v in row]) for row in result.rows],
        affected_rows=result.affected_rows,
        warnings=[pb.Warning(level=w.level, code=w.code, message=w.message) for w in result.warnings],
        query_id=query_id,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    peer = context.peer() or ""  # "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555"
    return peer.split(":", 1)[1] if ":" in peer else peer


def _peer_ip(context: grpc.aio.ServicerContext) -> str:
    """The client's address without its port: what the login throttle counts by."""
    host = _peer_host(context)
    return host.rsplit(":", 1)[0] if host.count(":") and not host.endswith("]") else host


class _Garbage:
    """Stands in for a request whose bytes are not the message they should be."""


GARBAGE = _Garbage()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:  # the handler takes the raw bytes: nothing can fail to parse
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return GARBAGE

    return parse


async def _reject_garbage(context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request: the bytes are not a valid message")


# grpc's stubs type a handler's behaviours as the threaded server's (a grpc.ServicerContext, an
# Iterator of requests); under grpc.aio the same fields hold coroutine functions taking an
# aio context and an async iterator, which is what these are.
_AioUnary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
_AioUnaryStream = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]
_AioStream = Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def _checked(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """Garbage protobuf gets INVALID_ARGUMENT and a one-line log, not a traceback."""
    deserializer = _tolerant(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        inner = cast(_AioUnary, handler.unary_unary)

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request is GARBAGE:
                await _reject_garbage(context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, deserializer, serializer)
    if handler.unary_stream is not None:
        producer = cast(_AioUnaryStream, handler.unary_stream)

        async def producing(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if request is GARBAGE:
                await _reject_garbage(context)
            async for response in producer(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(producing, deserializer, serializer)
    if handler.stream_stream is not None:
        stream = cast(_AioStream, handler.stream_stream)

        async def streaming(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async def checked() -> AsyncIterator[Any]:
                async for request in requests:
                    if request is GARBAGE:
                        await _reject_garbage(context)
                    yield request

            async for response in stream(checked(), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(streaming, deserializer, serializer)
    return handler


class SecretInterceptor(grpc.aio.ServerInterceptor):
    """Peer calls must carry the cluster secret; anything else is refused before it runs."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if details.method.startswith(_PEER_PREFIX):
            sent = dict(details.invocation_metadata or ()).get(SECRET_HEADER, "")
            sent_b = sent.encode() if isinstance(sent, str) else sent
            if not self._secret or not hmac.compare_digest(sent_b, self._secret):
                log.warning("refused %s: missing or wrong cluster secret", details.method)
                return _refuse
        handler = await continuation(details)
        if handler is not None and details.method.startswith(_OUR_PREFIX):
            return _checked(handler)
        return handler


async def _refuse_call(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "cluster secret missing or wrong")


_refuse: grpc.RpcMethodHandler[Any, None] = grpc.unary_unary_rpc_method_handler(_refuse_call)


class PeerService(pb_grpc.PeerServicer):
    def __init__(self, sessions: SessionTable) -> None:
        self.sessions = sessions

    async def _kill(self, request: pb.PeerKillRequest) -> pb.KillResult:
        me = self.sessions.fe.address
        late_ms = time.time() * 1000 - request.not_after_unix_ms
        if request.not_after_unix_ms and late_ms > 0:
            # Held up in the network (a partition that healed): the requester has answered 1105 already.
            log.warning("refused a KILL from %s that arrived %.0f ms after its deadline", request.requester_fe, late_ms)
            late = SqlError(errors.UNKNOWN_ERROR, "KILL arrived at its owner after its deadline: not carried out")
            return pb.KillResult(error=sql_error(late), owner_fe=me, request_id=request.request_id)
        reply = await self.sessions.kill_local(request)  # with the target's user, also on a refusal
        reply.request_id = request.request_id
        return reply

    async def Kill(self, request: pb.PeerKillRequest, context: grpc.aio.ServicerContext) -> pb.KillResult:
        return await self._kill(request)

    async def KillStream(
        self, requests: AsyncIterator[pb.PeerKillRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.KillResult]:
        """Each request is handled on its own, so one slow privilege lookup holds up no other kill."""
        replies: asyncio.Queue[pb.KillResult | None] = asyncio.Queue()
        handlers: set[asyncio.Future[None]] = set()

        async def handle(request: pb.PeerKillRequest) -> None:
            try:
                reply = await self._kill(request)
            except Exception as e:  # the requester must get an answer, not a timeout
                log.exception("peer kill %d failed", request.request_id)
                error = sql_error(SqlError(errors.UNKNOWN_ERROR, f"internal error on the owner: {e!r}"))
                reply = pb.KillResult(error=error, request_id=request.request_id)
            replies.put_nowait(reply)

        async def read() -> None:
            try:
                async for request in requests:
                    # Up to the victim's cancel in this step; a privilege lookup
                    # (or the wait for the victim's answer) goes on in a task.
                    handling = start_eagerly(handle(request))
                    if not handling.done():
                        handlers.add(handling)
                        handling.add_done_callback(handlers.discard)
                await asyncio.gather(*handlers)
            finally:
                replies.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:
            reader.cancel()

    async def List(self, request: pb.PeerListRequest, context: grpc.aio.ServicerContext) -> pb.PeerListReply:
        rows = await self.sessions.list_local(request.requester, request.where)
        return pb.PeerListReply(rows=rows, fe=self.sessions.fe.address)


class FrontendService(pb_grpc.FrontendServicer):
    def __init__(self, sessions: SessionTable, router: Router, throttle: LoginThrottle | None = None) -> None:
        self.sessions = sessions
        self.router = router
        self.throttle = throttle

    async def _login(self, name: str, password: str, context: grpc.aio.ServicerContext) -> UserRecord | None:
        """The password check of every Frontend call, throttled as the MySQL door's
        (``frontend.throttle``: the wait comes first, the same for unknown users)."""
        throttle = self.throttle
        if throttle is None:
            return await self.sessions.authenticate(name, password)
        address = _peer_ip(context)
        delay = throttle.delay_for(name, address)
        if delay > 0:
            await asyncio.sleep(delay)
        user = await self.sessions.authenticate(name, password)
        if user is None:
            throttle.failed(name, address)
        else:
            throttle.succeeded(name, address)
        return user

    async def _caller(self, context: grpc.aio.ServicerContext) -> UserRecord:
        md = dict(context.invocation_metadata() or ())
        user = await self._login(str(md.get(USER_HEADER, "")), str(md.get(PASSWORD_HEADER, "")), context)
        if user is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Access denied: wrong user or password")
        assert user is not None
        return user

    async def ShowProcesslist(
        self, request: pb.ShowProcesslistRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShowProcesslistReply:
        user = await self._caller(context)
        rows, failures = await self.router.processlist(user.name, local_only=request.local_only)
        if not request.full:
            for row in rows:
                row.info = row.info[:INFO_LIMIT]
        return pb.ShowProcesslistReply(rows=rows, errors=[pb.FeError(fe=f.fe, message=f.message) for f in failures])

    async def Kill(self, request: pb.KillTarget, context: grpc.aio.ServicerContext) -> pb.KillResult:
        user = await self._caller(context)
        if request.WhichOneof("target") is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "KillTarget needs a connection_id, query_id, trace_id or user"
            )
        try:
            outcome = await self.router.kill(request, user.name, _peer_host(context))
        except SqlError as e:
            return pb.KillResult(error=sql_error(e))
        return pb.KillResult(owner_fe=outcome.owner, killed=outcome.killed, target_user=outcome.target_user)

    async def Execute(self, request: pb.ExecuteRequest, context: grpc.aio.ServicerContext) -> pb.StatementResult:
        user = await self._caller(context)
        password = str(dict(context.invocation_metadata() or ()).get(PASSWORD_HEADER, ""))
        session = await self._open(user, context, asyncio.Event(), password=password)
        try:
            return await self._run(session, request.sql)
        finally:
            await self.sessions.close(session)

    async def _open(
        self,
        user: UserRecord,
        context: grpc.aio.ServicerContext,
        killed: asyncio.Event,
        database: str = "",
        password: str = "",
    ) -> Session:
        if not self.sessions.accepting:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this FE is shutting down")
        try:
            conn_id = self.sessions.reserve_id()
        except IdsExhausted:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many connections")
        try:
            # The backend connection (a relaying backend) logs in as the user, speaking DEPRECATE_EOF.
            login = BackendLogin(user.name, stage1_of_password(password), CLIENT_CAPABILITIES)
            return await self.sessions.open(
                conn_id,
                user,
                _peer_host(context),
                "grpc",
                lambda error: killed.set(),
                database=database,
                login=login,
            )
        except SqlError as e:
            status = {
                errors.BAD_DB: grpc.StatusCode.NOT_FOUND,
                errors.TOO_MANY_CONNECTIONS: grpc.StatusCode.RESOURCE_EXHAUSTED,
            }.get(e.code, grpc.StatusCode.UNAVAILABLE)
            await context.abort(status, e.message)
            raise  # abort raises; this keeps the type checker honest

    async def _run(self, session: Session, sql: str) -> pb.StatementResult:
        try:
            result = await whole(await session.execute(sql))
        except SqlError as e:
            return pb.StatementResult(error=sql_error(e), query_id=session.query_id)
        except Exception as e:  # a bug of ours: log it, answer 1105, keep the session (as over MySQL)
            log.exception("statement failed on gRPC session %d", session.id)
            internal = SqlError(errors.UNKNOWN_ERROR, f"internal error: {e!r}")
            return pb.StatementResult(error=sql_error(internal), query_id=session.query_id)
        finally:
            self.sessions.answered(session)  # its answer is the next message out
        return statement_result(result, session.query_id)

    async def ExecuteStream(
        self, request: pb.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StatementResult]:
        user = await self._caller(context)
        password = str(dict(context.invocation_metadata() or ()).get(PASSWORD_HEADER, ""))
        session = await self._open(user, context, asyncio.Event(), password=password)
        try:
            async for message in self._stream(session, request.sql):
                yield message
        finally:
            await self.sessions.close(session)

    async def _stream(self, session: Session, sql: str) -> AsyncIterator[pb.StatementResult]:
        """One statement's answer as Session and ExecuteStream send it: its rows
        a batch at a time as they are fetched (or relayed), ``more`` on every
        message but the last, which has the outcome (or the error that ended
        the statement). The statement runs until its last batch is out; what
        the session holds is one message's worth of rows."""
        try:
            # Over a relaying backend the engine's statements are relayed as the
            # MySQL listener relays them (the same COM_QUERY payload); the FE's run here.
            result = await session.execute(sql, raw=bytes((COM_QUERY,)) + sql.encode("utf-8", "surrogateescape"))
            if result.relay is None and result.more is None:
                last = statement_result(result, session.query_id)
            else:
                last = pb.StatementResult(query_id=session.query_id)  # the parts' last replaces it
                parts = (
                    self._relayed(session, result.relay) if result.relay is not None else self._batches(session, result)
                )
                try:
                    async for message in parts:
                        if message.more:
                            yield message
                        else:
                            last = message
                finally:
                    await parts.aclose()  # the client went away: the statement stops
        except SqlError as e:
            last = pb.StatementResult(error=sql_error(e), query_id=session.query_id)
        except Exception as e:  # a bug of ours: log it, answer 1105, keep the session (as over MySQL)
            log.exception("statement failed on gRPC session %d", session.id)
            internal = SqlError(errors.UNKNOWN_ERROR, f"internal error: {e!r}")
            last = pb.StatementResult(error=sql_error(internal), query_id=session.query_id)
        self.sessions.answered(session)  # its answer's last message is the next one out
        yield last

    async def _batches(self, session: Session, result: Result) -> AsyncGenerator[pb.StatementResult, None]:
        """An embedded backend's streamed result (``Result.more``): a message per batch.
        The columns' types are read from the first batch's rows."""
        more, result.more = result.more, None
        assert more is not None
        query_id = session.query_id
        try:
            wire = result.wire_columns
            if wire is not None:
                yield pb.StatementResult(
                    columns=_wire_columns(wire), rows=_wire_rows(wire, result.rows), query_id=query_id, more=True
                )
            else:
                yield pb.StatementResult(
                    columns=_columns(result.columns, result.rows), rows=_rows(result.rows), query_id=query_id, more=True
                )
            result.rows = []
            async for batch in more:
                rows = _wire_rows(wire, batch) if wire is not None else _rows(batch)
                yield pb.StatementResult(rows=rows, query_id=query_id, more=True)
        finally:
            await more.aclose()
        yield pb.StatementResult(
            affected_rows=result.affected_rows, warnings=_warnings(result.warnings), query_id=query_id
        )

    async def _relayed(
        self, session: Session, chunks: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[pb.StatementResult, None]:
        """A relayed statement's answer (the server's packets, as the MySQL listener
        would write them), decoded chunk by chunk into messages of rows: nothing
        is held whole. An interrupt follows the relay's rule: the server's answer
        decides (its 1317 becomes the FE's, naming who killed it)."""
        decoder = RowDecoder(deprecate_eof=bool(CLIENT_CAPABILITIES & CLIENT_DEPRECATE_EOF))
        query_id = session.query_id
        columns_sent = False
        pending: list[tuple[bytes | None, ...]] = []
        size = 0

        def message(rows: list[tuple[bytes | None, ...]], more: bool) -> pb.StatementResult:
            nonlocal columns_sent
            wire = decoder.columns or []
            columns = [] if columns_sent else _wire_columns(wire)
            columns_sent = columns_sent or decoder.columns is not None
            return pb.StatementResult(columns=columns, rows=_wire_rows(wire, rows), query_id=query_id, more=more)

        try:
            async for chunk in chunks:
                rows = decoder.feed(chunk)
                if not rows:
                    continue
                pending.extend(rows)
                size += len(chunk)
                start = 0
                while len(pending) - start >= STREAM_ROWS:
                    yield message(pending[start : start + STREAM_ROWS], True)
                    start += STREAM_ROWS
                del pending[:start]
                if size >= STREAM_BYTES and pending:
                    yield message(pending, True)
                    pending = []
                if not pending:
                    size = 0
        finally:
            await chunks.aclose()
        if decoder.error is not None:
            code, state, text = decoder.error
            raise SqlError(code, text, state or None)
        if not decoder.done:
            raise SqlError(errors.SERVER_LOST, "the backend's answer ended early")
        last = message(pending, False)
        last.affected_rows = decoder.affected_rows
        if decoder.warnings:
            last.warnings.extend(_warnings(await self._backend_warnings(session, decoder.warnings)))
        yield last

    @staticmethod
    async def _backend_warnings(session: Session, count: int) -> list[SqlWarning]:
        """The server's warnings of the statement just relayed (its SHOW WARNINGS)."""
        try:
            shown = await session.backend.execute("SHOW WARNINGS", None)
        except SqlError as e:
            log.warning("session %d: its warnings are unknown (%s)", session.id, e.message)
            return [SqlWarning("Warning", 0, "")] * count
        return [SqlWarning(_text(r[0]), int(r[1]), _text(r[2])) for r in shown.rows]

    async def Session(
        self, requests: AsyncIterator[pb.SessionRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SessionResponse]:
        try:
            first = await asyncio.wait_for(requests.__anext__(), HELLO_TIMEOUT)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the session must start with a hello")
        if first.WhichOneof("msg") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a hello")
        hello = first.hello
        user = await self._login(hello.user, hello.password, context)
        if user is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"Access denied for user '{hello.user}'")
        assert user is not None
        killed = asyncio.Event()
        session = await self._open(user, context, killed, hello.database, hello.password)
        try:
            me = self.sessions.fe.address
            yield pb.SessionResponse(welcome=pb.Welcome(connection_id=session.id, fe=me, server_version="fecluster"))
            kill_wait = asyncio.ensure_future(killed.wait())
            try:
                while True:
                    read = asyncio.ensure_future(requests.__anext__())
                    await asyncio.wait({read, kill_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if kill_wait.done():
                        read.cancel()
                        break
                    try:
                        request = read.result()
                    except StopAsyncIteration:
                        return
                    if request.WhichOneof("msg") != "sql":
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT, "expected a statement, got a second hello"
                        )
                    async for message in self._stream(session, request.sql):
                        yield pb.SessionResponse(result=message)
                    if session.killed_by is not None:
                        break
            finally:
                kill_wait.cancel()
            await context.abort(grpc.StatusCode.ABORTED, f"connection {session.id} was closed {session.killed_by}")
        finally:
            await self.sessions.close(session)


class _Health(health.aio.HealthServicer):
    """The standard health service, plus ``fecluster.Lease``: SERVING if Redis answers
    this FE (a peer whose lease is overdue asks before fencing itself).

    The check is unauthenticated, so it costs Redis nothing per request: a
    lease renewal or a PING that succeeded within the last ``renew_interval / 4``
    answers it; past that, one PING, shared by the checks that arrive
    meanwhile: at most one per ``renew_interval / 4`` whatever the rate. The
    answer is at most TTL/12 old, and a peer asks from TTL/2 after its own
    last renewal, so an outage that began before that renewal is never
    hidden (the peers' renewals are at most TTL/3 apart). A fenced FE
    answers UNAVAILABLE at once (the asker reads it as "no answer": it acts
    for no server id)."""

    def __init__(self, membership: Membership) -> None:
        super().__init__()
        self._membership = membership
        self._ping: asyncio.Future[bool] | None = None  # the last PING, or the one in flight
        self._ping_at = float("-inf")
        self.pings = 0  # PINGs sent for checks, for tests and /metrics

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> Any:
        if request.service == LEASE_HEALTH:
            membership = self._membership
            if membership.fenced:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "fenced")
            fresh = await self.redis_answers()
            status = health_pb2.HealthCheckResponse.SERVING if fresh else health_pb2.HealthCheckResponse.NOT_SERVING
            return health_pb2.HealthCheckResponse(status=status)
        return await super().Check(request, context)

    async def redis_answers(self) -> bool:
        membership = self._membership
        now = time.monotonic()
        fresh = membership.renew_interval / 4
        if now - membership.last_renew < fresh:
            return True
        if self._ping is None or now - self._ping_at >= fresh:
            self._ping_at = now
            self.pings += 1
            self._ping = asyncio.ensure_future(self._ping_once(membership.renew_interval / 4))
        return await asyncio.shield(self._ping)

    async def _ping_once(self, timeout: float) -> bool:
        try:
            return await self._membership.redis_answers(timeout)
        except TimeoutError:  # fenced meanwhile
            return False


class GrpcListener:
    def __init__(
        self, config: Config, sessions: SessionTable, router: Router, throttle: LoginThrottle | None = None
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.router = router
        self.throttle = throttle
        self.server: grpc.aio.Server | None = None
        self.health = _Health(router.membership)

    def _bind(self) -> grpc.aio.Server:
        cfg = self.config
        server = grpc.aio.server(
            interceptors=[SecretInterceptor(cfg.cluster_secret)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                # Peers keep channels and a kill stream open and ping them every
                # 10 s: never answer that with GOAWAY "too many pings".
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        pb_grpc.add_PeerServicer_to_server(PeerService(self.sessions), server)
        pb_grpc.add_FrontendServicer_to_server(FrontendService(self.sessions, self.router, self.throttle), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            pb.DESCRIPTOR.services_by_name["Peer"].full_name,
            pb.DESCRIPTOR.services_by_name["Frontend"].full_name,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        creds = tls.server_credentials(cfg)
        address = f"{cfg.bind_host}:{cfg.grpc_port}"
        port = server.add_insecure_port(address) if creds is None else server.add_secure_port(address, creds)
        if port == 0:
            raise OSError(f"cannot bind gRPC port {address}")
        return server

    async def start(self) -> None:
        self.server = self._bind()
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop_accepting(self) -> None:
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1.0)
