"""One routing function per operation: act locally, or dial the owner and
forward with the caller's identity (the owner checks privileges)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import server_id_of, server_id_of_query
from coordinator.membership import REDIS_ERRORS, Membership
from coordinator.pb import fecluster_pb2 as pb
from coordinator.pb import fecluster_pb2_grpc as pb_grpc
from coordinator.registry import FeRecord

log = logging.getLogger("fecluster.routing")

SECRET_HEADER = "x-fecluster-secret"
LEASE_HEALTH = "fecluster.Lease"  # health service name: SERVING if Redis answers that FE now


class LocalSessions(Protocol):
    """What the router needs from the FE it runs in."""

    async def kill_local(self, target: pb.KillTarget, requester: str, requester_fe: str) -> None: ...

    async def list_local(self, requester: str) -> list[pb.ProcessRow]: ...


@dataclass
class FeFailure:
    fe: str
    message: str


class PeerUnreachable(Exception):
    """A peer call that did not complete; ``code`` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name} {details}".strip())
        self.code = code


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
        self._call: grpc.aio.StreamStreamCall | None = None
        self._sent: dict[grpc.aio.StreamStreamCall, set[int]] = {}  # request ids written, per call
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None

    def _open(self) -> grpc.aio.StreamStreamCall:
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

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
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
            reply = await health.Check(
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


def _unreachable(fe: str, e: grpc.aio.AioRpcError) -> str:
    return f"FE {fe} did not answer: {e.code().name} {e.details() or ''}".strip()


class Router:
    def __init__(
        self,
        membership: Membership,
        local: LocalSessions,
        channels: PeerChannels,
        *,
        peer_timeout: float,
        audit: Callable[[dict[str, object]], Awaitable[None]] | None = None,
    ) -> None:
        self.membership = membership
        self.local = local
        self.channels = channels
        self.peer_timeout = peer_timeout
        self._audit = audit
        self._background: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()  # KILLs received here, by outcome (for /metrics)

    @property
    def me(self) -> FeRecord:
        return self.membership.record

    # ------------------------------------------------------------ KILL

    async def kill(self, target: pb.KillTarget, requester: str) -> str:
        """Kill a connection or query anywhere in the cluster; returns the owner FE.

        Raises SqlError with the owner's code (1094/1095/1097) or 1105 when
        the owner does not answer within the peer deadline.
        """
        owner: FeRecord | None = None
        outcome = "ok"
        try:
            owner = await self._owner(target)
            if owner.server_id == self.me.server_id:
                await self.local.kill_local(target, requester, self.me.address)
            else:
                await self._peer_kill(owner, target, requester)
            return owner.address
        except SqlError as e:
            outcome = f"{e.code} {e.message}"
            raise
        except BaseException as e:
            outcome = f"failed {e!r}"
            raise
        finally:
            self.outcomes[outcome.split(" ", 1)[0]] += 1
            self._record(target, requester, owner, outcome)

    async def _owner(self, target: pb.KillTarget) -> FeRecord:
        if target.WhichOneof("target") == "query_id":
            qid = target.query_id
            sid = server_id_of_query(qid)
            owner = (self._member(sid) or await self._refresh_member(sid)) if sid is not None else None
            if owner is None:
                raise errors.unknown_query(qid)
            return owner
        conn_id = target.connection_id
        sid = server_id_of(conn_id)
        if sid is None:
            raise errors.unknown_thread(conn_id)
        # The id names its owner's server id, and a live server id names one FE
        # (an FE that loses its id closes its sessions): no per-KILL registry
        # read. An FE not in the cached membership is looked up once.
        owner = self._member(sid) or await self._refresh_member(sid)
        if owner is None:
            raise errors.unknown_thread(conn_id)
        return owner

    async def _refresh_member(self, sid: int) -> FeRecord | None:
        if not self.membership.redis_ok:
            return None
        try:
            async with asyncio.timeout(self.peer_timeout):
                self.membership.members = await self.membership.registry.live_fes()
        except REDIS_ERRORS as e:
            log.warning("membership refresh failed: %s", e)
            self.membership.mark_dirty()
        return self.membership.members.get(sid)

    def _member(self, sid: int) -> FeRecord | None:
        if sid == self.me.server_id:
            return self.me
        return self.membership.members.get(sid)

    async def _peer_kill(self, owner: FeRecord, target: pb.KillTarget, requester: str) -> None:
        not_after = int((time.time() + self.peer_timeout * 3 / 4) * 1000)  # see PeerKillRequest in the proto
        request = pb.PeerKillRequest(
            requester=requester, requester_fe=self.me.address, target=target, not_after_unix_ms=not_after
        )
        try:
            reply = await self.channels.kill_stream(owner.address).kill(request, self.peer_timeout)
        except PeerUnreachable as e:
            if e.code == grpc.StatusCode.UNAVAILABLE and not await self._lease_alive(owner.server_id):
                # The owner is gone and so are its connections.
                raise (
                    errors.unknown_query(target.query_id)
                    if target.query_id
                    else errors.unknown_thread(target.connection_id)
                ) from e
            raise SqlError(errors.UNKNOWN_ERROR, f"KILL not delivered: FE {owner.address} did not answer: {e}") from e
        if reply.HasField("error"):
            raise SqlError(reply.error.code, reply.error.message)

    async def _lease_alive(self, sid: int) -> bool:
        """True unless Redis says the server id's lease is gone (unknown counts as alive)."""
        if not self.membership.redis_ok:
            return True
        registry = self.membership.registry
        try:
            async with asyncio.timeout(self.peer_timeout):
                return bool(await registry.redis.exists(registry.keys.lease(sid)))
        except REDIS_ERRORS:
            return True

    def _record(self, target: pb.KillTarget, requester: str, owner: FeRecord | None, outcome: str) -> None:
        if self._audit is None or not self.membership.redis_ok:
            return
        entry: dict[str, object] = {
            "time": datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            "requester": requester,
            "received_on": self.me.address,
            "target": target.query_id or target.connection_id,
            "kind": "QUERY" if target.kind == pb.KILL_QUERY else "CONNECTION",
            "owner": owner.address if owner else "",
            "outcome": outcome,
        }
        task = asyncio.create_task(self._audit(entry))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------ PROCESSLIST

    async def processlist(
        self, requester: str, *, local_only: bool = False
    ) -> tuple[list[pb.ProcessRow], list[FeFailure]]:
        """Rows of every live FE (asked in parallel), ordered by Id, plus the FEs that did not answer."""
        if local_only:
            return sorted(await self.local.list_local(requester), key=_by_id), []
        members = await self._live_members()
        results = await asyncio.gather(*(self._list_one(fe, requester) for fe in members.values()))
        rows: list[pb.ProcessRow] = []
        failures: list[FeFailure] = []
        for result in results:
            if isinstance(result, FeFailure):
                failures.append(result)
            else:
                rows.extend(result)
        rows.sort(key=_by_id)
        return rows, failures

    async def _live_members(self) -> dict[int, FeRecord]:
        if self.membership.redis_ok:
            try:
                async with asyncio.timeout(self.peer_timeout):
                    members = await self.membership.registry.live_fes()
                self.membership.members = members
            except REDIS_ERRORS as e:
                log.warning("membership refresh failed, using the cached view: %s", e)
                self.membership.mark_dirty()
        members = dict(self.membership.members)
        members[self.me.server_id] = self.me
        await self.channels.forget_except({m.address for m in members.values()})
        return members

    async def _list_one(self, fe: FeRecord, requester: str) -> list[pb.ProcessRow] | FeFailure:
        if fe.server_id == self.me.server_id:
            return await self.local.list_local(requester)
        try:
            reply = await self.channels.stub(fe.address).List(
                pb.PeerListRequest(requester=requester), timeout=self.peer_timeout, metadata=self.channels.metadata
            )
        except grpc.aio.AioRpcError as e:
            return FeFailure(fe.address, _unreachable(fe.address, e))
        except Exception as e:
            log.exception("processlist from %s failed", fe.address)
            return FeFailure(fe.address, f"FE {fe.address} failed: {e!r}")
        return list(reply.rows)

    async def close(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.channels.close()


def _by_id(row: pb.ProcessRow) -> int:
    return row.id
