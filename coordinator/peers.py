"""Transport to the other FEs: long-lived gRPC channels and one kill stream
per peer. No routing decisions here (see ``coordinator.routing``)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.pb import fecluster_pb2 as pb
from coordinator.pb import fecluster_pb2_grpc as pb_grpc

T = TypeVar("T")

SECRET_HEADER = "x-fecluster-secret"
LEASE_HEALTH = "fecluster.Lease"  # health service name: SERVING if Redis answers that FE now


def start_eagerly(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run ``coro`` up to its first suspension now, in the caller's loop step
    (what Python 3.12's eager tasks do), and finish it in a Task from there.
    A peer's KILL reaches ``kill_query`` in the step its message arrived in,
    not one loop turn later. The result is a future either way."""
    try:
        first = coro.send(None)
    except StopIteration as done:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.set_result(done.value)
        return future
    except Exception as e:  # noqa: BLE001 - handed over as the future's outcome
        future = asyncio.get_running_loop().create_future()
        future.set_exception(e)
        return future
    return asyncio.ensure_future(_Resumed(coro, first))


class _Resumed:
    """A started coroutine, awaitable once: what it waits on first is handed
    to the awaiting task, then every send and throw is passed through."""

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting = self._coro, self._first
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # noqa: BLE001 - a cancel, passed on to the coroutine
                try:
                    waiting = coro.throw(e)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration as done:
                    return done.value


class PeerUnreachable(Exception):
    """A peer call that did not complete; ``code`` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name} {details}".strip())
        self.code = code


# One peer's KILL stream: kill requests out, their results back.
_KillCall = grpc.aio.StreamStreamCall[pb.PeerKillRequest, pb.KillResult]


class KillStream:
    """One long-lived ``Peer.KillStream`` to one FE; requests are matched to
    replies by request_id. A broken stream fails what is in flight and is
    reopened by the next kill.

    Writes go through one writer task: grpc cancels the whole call when a
    pending ``write()`` is cancelled, and a KILL statement can itself be
    killed mid-call; that must not take the other kills on the stream down."""

    def __init__(self, stub: pb_grpc.PeerStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.KillResult]] = {}
        self._outbox: asyncio.Queue[pb.PeerKillRequest] = asyncio.Queue()
        self._call: _KillCall | None = None
        self._sent: dict[_KillCall, set[int]] = {}  # request ids written, per call
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None

    def _open(self) -> _KillCall:
        if self._call is None or self._call.done():
            self._call = self._stub.KillStream(metadata=self._metadata)
            reader = asyncio.create_task(self._read(self._call))
            self._tasks.add(reader)
            reader.add_done_callback(self._tasks.discard)
        return self._call

    async def _write(self) -> None:
        while True:
            request = await self._outbox.get()
            future = self._pending.get(request.request_id)
            if future is None or future.done():
                continue  # its caller gave up already
            call = self._open()
            self._sent.setdefault(call, set()).add(request.request_id)
            try:
                await call.write(request)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as e:
                if not future.done():
                    future.set_exception(PeerUnreachable(grpc.StatusCode.UNAVAILABLE, f"the kill stream broke: {e!r}"))

    async def _read(self, call: _KillCall) -> None:
        failure = PeerUnreachable(grpc.StatusCode.UNAVAILABLE, "the kill stream ended")
        try:
            async for reply in call:
                future = self._pending.get(reply.request_id)
                if future is not None and not future.done():
                    future.set_result(reply)
        except grpc.aio.AioRpcError as e:
            failure = PeerUnreachable(e.code(), e.details() or "")
        except asyncio.CancelledError:
            failure = PeerUnreachable(grpc.StatusCode.CANCELLED, "the kill stream was closed")
        if self._call is call:
            self._call = None
        # Fail only what was sent on this call: a request already written to a
        # newer stream may well have been carried out.
        for request_id in self._sent.pop(call, set()):
            future = self._pending.get(request_id)
            if future is not None and not future.done():
                future.set_exception(failure)

    async def kill(self, request: pb.PeerKillRequest, timeout: float) -> pb.KillResult:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        request.request_id = next(self._ids)
        future: asyncio.Future[pb.KillResult] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = future
        self._outbox.put_nowait(request)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise PeerUnreachable(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {timeout:g}s") from None
        finally:
            self._pending.pop(request.request_id, None)
            for sent in self._sent.values():
                sent.discard(request.request_id)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        if self._call is not None:
            self._call.cancel()
        tasks = [t for t in (self._writer, *self._tasks) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=1)


class PeerChannels:
    """Long-lived channels (and kill streams) to the other FEs: no connection setup per kill."""

    def __init__(self, credentials: grpc.ChannelCredentials | None, secret: str) -> None:
        self._credentials = credentials
        self._metadata = ((SECRET_HEADER, secret),)
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.PeerStub]] = {}
        self._streams: dict[str, KillStream] = {}

    def stub(self, address: str) -> pb_grpc.PeerStub:
        entry = self._stubs.get(address)
        if entry is None:
            options = [
                ("grpc.keepalive_time_ms", 10_000),  # notice a peer that vanished without a FIN
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.enable_retries", 0),
                # A peer that was down or cut off is dialled again within a second
                # once it is back (the default backoff grows to 120 s).
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1_000),
            ]
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials, options=options)
            else:
                channel = grpc.aio.insecure_channel(address, options=options)
            entry = self._stubs[address] = (channel, pb_grpc.PeerStub(channel))
        return entry[1]

    def kill_stream(self, address: str) -> KillStream:
        stream = self._streams.get(address)
        if stream is None:
            stream = self._streams[address] = KillStream(self.stub(address), self._metadata)
        return stream

    async def forget_except(self, addresses: set[str]) -> None:
        """Close channels and streams to FEs that left the cluster (pods come and go)."""
        gone = [a for a in self._stubs if a not in addresses]
        for address in gone:
            stream = self._streams.pop(address, None)
            if stream is not None:
                await stream.close()
            channel, _ = self._stubs.pop(address)
            await channel.close()

    async def reaches_redis(self, address: str, timeout: float) -> bool | None:
        """Ask a peer whether Redis answers it (health service ``fecluster.Lease``); None: no answer."""
        self.stub(address)
        health = health_pb2_grpc.HealthStub(self._stubs[address][0])
        try:
            # The stubs leave out the methods the generated HealthStub sets in __init__ (Check, Watch).
            reply: health_pb2.HealthCheckResponse = await health.Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=LEASE_HEALTH), timeout=timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError:
            return None
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._streams.values()), return_exceptions=True)
        self._streams.clear()
        channels = [c for c, _ in self._stubs.values()]
        self._stubs.clear()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
