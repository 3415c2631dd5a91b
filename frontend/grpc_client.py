"""A small typed gRPC client for fecluster FEs (what the CLI and tests use).

with Client("127.0.0.1:9020", "root", "") as fe:
    rows, failures = fe.processlist()
    with fe.session() as s:
        s.execute("SELECT 1")
        with s.stream("SELECT * FROM big") as rows:  # a large answer, a batch at a time
            for row in rows: ...

A statement's answer may come in several messages (``StatementResult.more``):
``execute`` assembles them into one result, ``stream`` hands the rows on as
they come.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from coordinator.pb import fecluster_pb2 as pb
from coordinator.pb import fecluster_pb2_grpc as pb_grpc

USER_HEADER = "x-fecluster-user"
PASSWORD_HEADER = "x-fecluster-password"


class FeError(Exception):
    """A MySQL error returned by the cluster (code, SQLSTATE, message)."""

    def __init__(self, code: int, sqlstate: str, message: str) -> None:
        super().__init__(f"ERROR {code} ({sqlstate}): {message}")
        self.code = code
        self.sqlstate = sqlstate
        self.message = message

    @classmethod
    def from_pb(cls, e: pb.SqlError) -> FeError:
        return cls(e.code, e.sqlstate, e.message)


@dataclass
class StatementResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    affected_rows: int
    warnings: list[tuple[str, int, str]]
    query_id: str


def _value(v: pb.Value) -> Any:
    kind = v.WhichOneof("kind")
    return None if kind in (None, "null") else getattr(v, kind)


def _result(r: pb.StatementResult) -> StatementResult:
    if r.HasField("error"):
        raise FeError.from_pb(r.error)
    return StatementResult(
        columns=[c.name for c in r.columns],
        rows=[tuple(_value(v) for v in row.values) for row in r.rows],
        affected_rows=r.affected_rows,
        warnings=[(w.level, w.code, w.message) for w in r.warnings],
        query_id=r.query_id,
    )


def _assembled(messages: Iterator[pb.StatementResult]) -> StatementResult:
    """A streamed answer's messages as one result (an error raises FeError)."""
    with RowStream(messages) as stream:
        rows = list(stream)
        return StatementResult(stream.columns, rows, stream.affected_rows, stream.warnings, stream.query_id)


class RowStream:
    """One statement's rows as its messages arrive: iterate for the rows; the
    ``columns`` are known once the first message is in, ``affected_rows``,
    ``warnings`` and ``query_id`` once the iteration ends. An error of the
    statement raises FeError from the iteration (rows before it were real).
    ``close`` (or leaving a with block) reads the rest of the answer unused."""

    def __init__(self, messages: Iterator[pb.StatementResult], done: Callable[[], None] | None = None) -> None:
        self._messages = messages
        self._done = done
        self._ended = False
        self._rows: Iterator[tuple[Any, ...]] = iter(())
        self.columns: list[str] = []
        self.affected_rows = 0
        self.warnings: list[tuple[str, int, str]] = []
        self.query_id = ""
        self.messages = 0  # how many messages the answer came in
        self._first = self._take()

    def _take(self) -> pb.StatementResult | None:
        if self._ended:
            return None
        try:
            message = next(self._messages)
        except StopIteration:
            self._end()
            raise SessionClosed(grpc.StatusCode.CANCELLED, "the answer ended before its last message") from None
        except BaseException:
            self._end()
            raise
        self.messages += 1
        if message.columns and not self.columns:
            self.columns = [c.name for c in message.columns]
        self.query_id = message.query_id or self.query_id
        if not message.more:
            self._end()
            if message.HasField("error"):
                raise FeError.from_pb(message.error)
            self.affected_rows = message.affected_rows
            self.warnings = [(w.level, w.code, w.message) for w in message.warnings]
        return message

    def _end(self) -> None:
        self._ended = True
        if self._done is not None:
            self._done()
            self._done = None

    def batches(self) -> Iterator[list[tuple[Any, ...]]]:
        """The rows a message at a time."""
        message, self._first = self._first, None
        while message is not None:
            yield [tuple(_value(v) for v in row.values) for row in message.rows]
            message = self._take()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for batch in self.batches():
            yield from batch

    def close(self) -> None:
        with contextlib.suppress(FeError):
            while self._take() is not None:
                pass

    def __enter__(self) -> RowStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionClosed(Exception):
    """The server ended the session (``status`` ABORTED after KILL CONNECTION)."""

    def __init__(self, status: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{status.name}: {details}")
        self.status = status
        self.details = details


class ClientSession:
    """One ``Frontend.Session`` stream: one cluster connection."""

    def __init__(self, stub: pb_grpc.FrontendStub, user: str, password: str, database: str = "") -> None:
        self._requests: queue.Queue[pb.SessionRequest | None] = queue.Queue()
        self._requests.put(pb.SessionRequest(hello=pb.Hello(user=user, password=password, database=database)))
        self._call = stub.Session(self._iterate())
        self._lock = threading.Lock()
        welcome = self._next()
        self.connection_id = welcome.welcome.connection_id
        self.fe = welcome.welcome.fe

    def _iterate(self) -> Iterator[pb.SessionRequest]:
        while (item := self._requests.get()) is not None:
            yield item

    def _next(self) -> pb.SessionResponse:
        try:
            return next(self._call)
        except grpc.RpcError as e:
            raise SessionClosed(e.code(), e.details() or "") from None
        except StopIteration:
            raise SessionClosed(grpc.StatusCode.CANCELLED, "the server closed the session") from None

    def _results(self) -> Iterator[pb.StatementResult]:
        while True:
            yield self._next().result

    def execute(self, sql: str) -> StatementResult:
        """The statement's whole answer, however many messages it came in."""
        with self._lock:
            self._requests.put(pb.SessionRequest(sql=sql))
            return _assembled(self._results())

    def stream(self, sql: str) -> RowStream:
        """The statement's rows as they arrive (a large answer in bounded
        memory). The session runs nothing else until the stream is read to its
        end or closed."""
        self._lock.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._lock.release()

        try:
            self._requests.put(pb.SessionRequest(sql=sql))
            return RowStream(self._results(), release)
        except BaseException:
            release()
            raise

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()

    def __enter__(self) -> ClientSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    def __init__(
        self,
        address: str,
        user: str = "root",
        password: str = "",
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.user = user
        self.password = password
        self.timeout = timeout
        self.channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
        self.stub = pb_grpc.FrontendStub(self.channel)

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return ((USER_HEADER, self.user), (PASSWORD_HEADER, self.password))

    def session(self, database: str = "") -> ClientSession:
        return ClientSession(self.stub, self.user, self.password, database)

    def processlist(
        self, *, full: bool = False, local_only: bool = False
    ) -> tuple[list[pb.ProcessRow], list[pb.FeError]]:
        reply = self.stub.ShowProcesslist(
            pb.ShowProcesslistRequest(full=full, local_only=local_only), metadata=self._metadata, timeout=self.timeout
        )
        return list(reply.rows), list(reply.errors)

    def kill(self, target: int | str, *, query: bool = False) -> str:
        """Kill a connection id (or a query id string); returns the owner FE."""
        kind = pb.KILL_QUERY if query else pb.KILL_CONNECTION
        request = (
            pb.KillTarget(query_id=target, kind=pb.KILL_QUERY)
            if isinstance(target, str)
            else pb.KillTarget(connection_id=target, kind=kind)
        )
        reply = self.stub.Kill(request, metadata=self._metadata, timeout=self.timeout)
        if reply.HasField("error"):
            raise FeError.from_pb(reply.error)
        return reply.owner_fe

    def execute(self, sql: str) -> StatementResult:
        """One statement in a short-lived session (user administration and the like), answered in one message."""
        return _result(self.stub.Execute(pb.ExecuteRequest(sql=sql), metadata=self._metadata, timeout=self.timeout))

    def execute_stream(self, sql: str, timeout: float | None = None) -> RowStream:
        """One statement in a short-lived session, its rows as they arrive (``ExecuteStream``)."""
        call = self.stub.ExecuteStream(pb.ExecuteRequest(sql=sql), metadata=self._metadata, timeout=timeout)
        return RowStream(call, call.cancel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
