"""One routing function per operation: act locally, or dial the owner and
forward with the caller's identity (the owner checks privileges)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import grpc

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import server_id_of, server_id_of_query
from coordinator.membership import Membership
from coordinator.pb import fecluster_pb2 as pb
from coordinator.peers import PeerChannels, PeerUnreachable
from coordinator.redis_client import REDIS_ERRORS
from coordinator.registry import FeRecord

log = logging.getLogger("fecluster.routing")


class LocalSessions(Protocol):
    """What the router needs from the FE it runs in."""

    async def kill_local(self, request: pb.PeerKillRequest) -> pb.KillResult: ...

    async def list_local(self, requester: str, where: str = "") -> list[pb.ProcessRow]: ...


@dataclass
class FeFailure:
    fe: str
    message: str


@dataclass
class KillOutcome:
    owner: str  # the owner FE's address ("every FE" for KILL USER)
    killed: int  # sessions (or running statements) hit
    failures: list[FeFailure] = field(default_factory=list)  # KILL USER: FEs that did not answer
    target_user: str = ""  # whose session it was, as the owner named it (the user of KILL USER)


def _unreachable(fe: str, e: grpc.aio.AioRpcError) -> str:
    return f"FE {fe} did not answer: {e.code().name} {e.details() or ''}".strip()


def _killed(reply: pb.KillResult) -> int:
    """How many the owner's answer says it hit; its error raised."""
    if reply.HasField("error"):
        raise SqlError(reply.error.code, reply.error.message)
    return reply.killed


def _describe(target: pb.KillTarget) -> str:
    which = target.WhichOneof("target")
    if which == "user":
        return f"USER {target.user}"
    return str(getattr(target, which)) if which else ""


class Router:
    def __init__(
        self,
        membership: Membership,
        local: LocalSessions,
        channels: PeerChannels,
        *,
        peer_timeout: float,
        audit: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self.membership = membership
        self.local = local
        self.channels = channels
        self.peer_timeout = peer_timeout
        self._audit = audit
        self.outcomes: Counter[str] = Counter()  # KILLs received here, by outcome (for /metrics)
        # Death needs evidence (docs/fencing.md): the membership asks an FE whose lease is gone
        # whether it answers before purging it or taking its server id. Wired here, where the
        # channels are, so every router's membership has it.
        membership.peer_answers = channels.reaches_redis

    @property
    def me(self) -> FeRecord:
        return self.membership.record

    # ------------------------------------------------------------ KILL

    async def kill(self, target: pb.KillTarget, requester: str, requester_host: str = "") -> KillOutcome:
        """Kill a connection, query, trace id's statement or a user's sessions
        anywhere in the cluster: act locally, or forward to the owner with the
        requester's identity (the owner checks privileges).

        Raises SqlError with the owner's code (1094/1095/1097) or 1105 when
        the owner does not answer within the peer deadline.
        """
        request = pb.PeerKillRequest(
            requester=requester,
            requester_fe=self.me.address,
            requester_host=requester_host,
            target=target,
            issued_at_us=time.time_ns() // 1000,  # statements that begin later are never hit
        )
        owner: FeRecord | None = None
        outcome = "ok"
        local = False
        target_user = target.user  # KILL USER names it; for any other target the owner does
        try:
            if target.WhichOneof("target") == "user":
                result = await self._kill_everywhere(request)
                local = True
            elif target.WhichOneof("target") == "trace_id":
                result = await self._kill_trace(request)
                target_user = result.target_user
                local = True
            else:
                owner = await self._owner(target)
                local = owner.server_id == self.me.server_id
                if local:
                    reply = await self.local.kill_local(request)
                else:
                    reply = await self._peer_kill(owner, request)
                target_user = reply.target_user  # also on a refusal (1095)
                result = KillOutcome(owner.address, _killed(reply), target_user=target_user)
        except SqlError as e:
            outcome = f"{e.code} {e.message}"
            raise
        except BaseException as e:
            outcome = f"failed {e!r}"
            raise
        finally:
            self.outcomes[outcome.split(" ", 1)[0]] += 1
            self._record(request, owner, outcome, target_user)
        if local:
            # Let the victim's 1317 go out before our own OK. Outside the try:
            # a session that killed itself is cancelled here, and its KILL
            # was carried out all the same (the audit says "ok").
            await asyncio.sleep(0)
        return result

    async def _kill_everywhere(self, request: pb.PeerKillRequest) -> KillOutcome:
        """KILL ... USER: every live FE at once; each owner checks privileges
        per session. FEs that do not answer are reported, not hidden."""
        members = await self._live_members()

        async def one(fe: FeRecord) -> int | FeFailure | SqlError:
            try:
                if fe.server_id == self.me.server_id:
                    return _killed(await self.local.kill_local(request))
                own = pb.PeerKillRequest()
                own.CopyFrom(request)  # each kill stream stamps its own request_id
                return _killed(await self._peer_kill(fe, own))
            except SqlError as e:
                if e.code == errors.UNKNOWN_ERROR:
                    return FeFailure(fe.address, e.message)
                return e

        results = await asyncio.gather(*(one(fe) for fe in members.values()))
        refused = [r for r in results if isinstance(r, SqlError)]
        failures = [r for r in results if isinstance(r, FeFailure)]
        killed = sum(r for r in results if isinstance(r, int))
        if refused and not killed and len(refused) + len(failures) == len(results):
            raise refused[0]  # e.g. 1095: a non-admin named another user
        return KillOutcome("every FE", killed, failures, request.target.user)

    async def _kill_trace(self, request: pb.PeerKillRequest) -> KillOutcome:
        """KILL QUERY '<trace_id>': trace ids are names users choose, so several
        sessions, of several users, on several FEs may hold one. Every live FE
        is asked at once; each owner acts on the requester's own sessions with
        that id, or on all of them for an admin. 1097 when no session the
        requester may act on holds it (1105 when that cannot be known because
        an FE did not answer)."""
        members = await self._live_members()

        async def one(fe: FeRecord) -> pb.KillResult | FeFailure:
            try:
                if fe.server_id == self.me.server_id:
                    return await self.local.kill_local(request)
                own = pb.PeerKillRequest()
                own.CopyFrom(request)
                return await self._peer_kill(fe, own)
            except SqlError as e:
                if e.code == errors.UNKNOWN_QUERY:  # it died meanwhile, and its sessions with it
                    return pb.KillResult(owner_fe=fe.address)
                return FeFailure(fe.address, e.message)

        results = await asyncio.gather(*(one(fe) for fe in members.values()))
        replies = [r for r in results if isinstance(r, pb.KillResult) and not r.HasField("error")]
        failures = [r for r in results if isinstance(r, FeFailure)]
        users = sorted({u for r in replies if r.target_user for u in r.target_user.split(",")})
        if not users:
            if failures:
                raise SqlError(errors.UNKNOWN_ERROR, f"KILL not delivered: {failures[0].message}")
            raise errors.unknown_query(request.target.trace_id)
        return KillOutcome("every FE", sum(r.killed for r in replies), failures, ",".join(users))

    async def _owner(self, target: pb.KillTarget) -> FeRecord:
        which = target.WhichOneof("target")
        if which == "query_id":
            qid = target.query_id
            sid = server_id_of_query(qid)
            owner = (self._member(sid) or await self._refresh_member(sid)) if sid is not None else None
            if owner is None:
                raise errors.unknown_query(qid)
            return owner
        if which == "trace_id":
            # Trace ids are chosen by users: no server id in them. The registry
            # says which connection set it last; its owner re-checks.
            conn_id = await self._trace_owner(target.trace_id)
            sid = server_id_of(conn_id) if conn_id is not None else None
            owner = (self._member(sid) or await self._refresh_member(sid)) if sid is not None else None
            if owner is None:
                raise errors.unknown_query(target.trace_id)
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

    async def _trace_owner(self, trace_id: str) -> int | None:
        try:
            async with asyncio.timeout(self.peer_timeout):
                return await self.membership.registry.trace_owner(trace_id)
        except REDIS_ERRORS as e:
            self.membership.mark_dirty()
            raise SqlError(errors.UNKNOWN_ERROR, f"KILL by trace id needs the registry (Redis): {e!r}") from e

    async def _refresh_member(self, sid: int) -> FeRecord | None:
        if not self.membership.redis_ok:
            return None
        return (await self.membership.refresh(self.peer_timeout)).get(sid)

    def _member(self, sid: int) -> FeRecord | None:
        if sid == self.me.server_id:
            return self.me
        return self.membership.members.get(sid)

    async def _peer_kill(self, owner: FeRecord, request: pb.PeerKillRequest) -> pb.KillResult:
        target = request.target
        # A KILL held up by a partition and delivered after we answered 1105
        # must not be carried out: the owner refuses it after this moment.
        request.not_after_unix_ms = int((time.time() + self.peer_timeout * 3 / 4) * 1000)
        try:
            reply = await self.channels.kill_stream(owner.address).kill(request, self.peer_timeout)
        except PeerUnreachable as e:
            if e.code == grpc.StatusCode.UNAVAILABLE and not await self._lease_alive(owner.server_id):
                # The owner is gone and so are its connections.
                if target.WhichOneof("target") == "user":
                    return pb.KillResult(owner_fe=owner.address, target_user=target.user)
                raise (
                    errors.unknown_query(target.query_id or target.trace_id)
                    if target.query_id or target.trace_id
                    else errors.unknown_thread(target.connection_id)
                ) from e
            raise SqlError(errors.UNKNOWN_ERROR, f"KILL not delivered: FE {owner.address} did not answer: {e}") from e
        return reply  # an error in it is the owner's answer (see _killed)

    async def _lease_alive(self, sid: int) -> bool:
        """True unless Redis says the server id's lease is gone (unknown counts as alive)."""
        if not self.membership.redis_ok:
            return True
        try:
            async with asyncio.timeout(self.peer_timeout):
                return await self.membership.registry.lease_alive(sid)
        except REDIS_ERRORS:
            return True

    def _record(self, request: pb.PeerKillRequest, owner: FeRecord | None, outcome: str, target_user: str) -> None:
        if self._audit is None:
            return
        target = request.target
        entry: dict[str, object] = {
            "time": datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            "requester": request.requester,
            "requester_host": request.requester_host,
            "received_on": self.me.address,
            "target": _describe(target),
            "target_user": target_user,
            "kind": "QUERY" if target.kind == pb.KILL_QUERY else "CONNECTION",
            "owner": owner.address if owner else ("every FE" if target.user else ""),
            "outcome": outcome,
        }
        self._audit(entry)  # queued: written in the background, kept while Redis is away

    # ------------------------------------------------------------ fencing

    async def peers_reach_redis(self) -> bool | None:
        """True if Redis answers some peer now, False if it answers none of the peers
        that answered (Redis is away for all), None if no peer answered."""
        me = self.membership.server_id
        peers = [m.address for sid, m in self.membership.members.items() if sid != me]
        answers = await asyncio.gather(*(self.channels.reaches_redis(a, self.peer_timeout) for a in peers))
        if any(a is True for a in answers):
            return True
        return False if any(a is False for a in answers) else None

    # ------------------------------------------------------------ PROCESSLIST

    async def processlist(
        self, requester: str, *, local_only: bool = False, where: str = ""
    ) -> tuple[list[pb.ProcessRow], list[FeFailure]]:
        """Rows of every live FE (asked in parallel), ordered by Id, plus the FEs that
        did not answer. ``where`` (an information_schema.processlist condition) is
        evaluated by each owner, so only matching rows cross the network."""
        if local_only:
            return sorted(await self.local.list_local(requester, where), key=_by_id), []
        members = await self._live_members()
        results = await asyncio.gather(*(self._list_one(fe, requester, where) for fe in members.values()))
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
        members = await self.membership.refresh(self.peer_timeout)
        await self.channels.forget_except({m.address for m in members.values()})
        return members

    async def _list_one(self, fe: FeRecord, requester: str, where: str) -> list[pb.ProcessRow] | FeFailure:
        if fe.server_id == self.me.server_id:
            return await self.local.list_local(requester, where)
        try:
            reply = await self.channels.stub(fe.address).List(
                pb.PeerListRequest(requester=requester, where=where),
                timeout=self.peer_timeout,
                metadata=self.channels.metadata,
            )
        except grpc.aio.AioRpcError as e:
            return FeFailure(fe.address, _unreachable(fe.address, e))
        except Exception as e:
            log.exception("processlist from %s failed", fe.address)
            return FeFailure(fe.address, f"FE {fe.address} failed: {e!r}")
        return list(reply.rows)

    async def close(self) -> None:
        await self.channels.close()


def _by_id(row: pb.ProcessRow) -> int:
    return row.id
