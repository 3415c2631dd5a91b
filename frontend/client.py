"""A small typed gRPC client for fecluster FEs (what the CLI and tests use).

with Client("127.0.0.1:9020", "root", "") as fe:
    rows, failures = fe.processlist()
    with fe.session() as s:
        s.execute("SELECT 1")
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
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

    def execute(self, sql: str) -> StatementResult:
        with self._lock:
            self._requests.put(pb.SessionRequest(sql=sql))
            return _result(self._next().result)

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
        """One statement in a short-lived session (user administration and the like)."""
        return _result(self.stub.Execute(pb.ExecuteRequest(sql=sql), metadata=self._metadata, timeout=self.timeout))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
