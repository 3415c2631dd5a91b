"""The cluster registry in Redis: server-id leases, FE records, connections,
users and the kill audit stream.

Every key of a cluster shares the hash tag ``{<cluster>}`` so multi-key
operations stay in one slot on Redis Cluster, and one Redis can hold several
clusters side by side::

    fecluster:{c}:lease:<sid>     string  lease token, PX ttl
    fecluster:{c}:fes             hash    sid -> FE record (json)
    fecluster:{c}:conns           hash    connection id -> connection record (json)
    fecluster:{c}:fe-conns:<sid>  set     connection ids owned by that server id
    fecluster:{c}:user-conns:<u>  set     connection ids of that user (per-user limits)
    fecluster:{c}:users           hash    user name -> user record (json)
    fecluster:{c}:audit:<user>    stream  one entry per KILL by that requester (coordinator.audit)
    fecluster:{c}:audit-requesters set    who has an audit stream
    fecluster:{c}:globals         hash    variable name -> value (json): SET GLOBAL
    fecluster:{c}:traces          hash    trace id -> connection id (SET session_context)
    fecluster:{c}:events          pub/sub invalidation messages ("users", "globals")
    fecluster:{c}:registry        string  marker: set by the first lease script and kept by every one
                                          after; missing means this Redis never held the cluster, or lost it
    fecluster:{c}:quarantine      string  PX ttl: set when an FE re-takes its lease and finds the registry
                                          lost; while it exists nobody takes a server id not already its own
    fecluster:{c}:users-version   int     bumped by every user-table write, in the same script
    fecluster:{c}:users-loaded    hash    sid -> the users-version that FE has loaded (its acknowledgement)

This module is the only one that knows these names and the only one (with
``coordinator.redis_client``, which makes the client) that talks to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT

from coordinator.ids import MAX_SERVER_ID, server_id_of
from coordinator.users import UserRecord

# KEYS: lease, marker, quarantine, fes; ARGV: token, ttl ms, server id.
# GET == token -> PEXPIRE (1); missing -> SET again (2); missing, and the
# registry lost (no marker, or no record of ours) -> SET again and start the
# quarantine, so live FEs re-claim their ids before anyone takes a new one (3);
# held by someone else -> 0. The marker is written in the same step as the lease.
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('SET', KEYS[2], '1')
  end
  return 1
elseif not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  local lost = redis.call('EXISTS', KEYS[2]) == 0 or redis.call('HEXISTS', KEYS[4], ARGV[3]) == 0
  redis.call('SET', KEYS[2], '1')
  if lost then
    redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[2])
    return 3
  end
  return 2
end
return 0
"""

# KEYS: marker, quarantine. Before taking a new server id: the quarantine's
# remaining ms if one runs (> 0); -1 if the marker was missing (written now:
# a new cluster, or a registry lost that no live FE has noticed yet); 0 otherwise.
_CLAIM_STATE = """
local q = redis.call('PTTL', KEYS[2])
if q > 0 then
  return q
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], '1')
  return -1
end
return 0
"""

# KEYS: lease, quarantine, fes; ARGV: token, ttl ms, server id, the FE record
# expected ('' none). Take a free id unless a quarantine runs: {1, ''} taken;
# {0, ''} leased by someone; {2, record} its lease is gone but another record
# is there (the caller asks that FE, then claims with it expected); {-1, ms left}.
_CLAIM = """
local q = redis.call('PTTL', KEYS[2])
if q > 0 then
  return {-1, tostring(q)}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, ''}
end
local prior = redis.call('HGET', KEYS[3], ARGV[3]) or ''
if prior ~= ARGV[4] then
  return {2, prior}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, ''}
"""

# KEYS: users, users-version; ARGV: name, record json, only_new (1/0).
# The write and the version bump are one step: a version names one table.
_PUT_USER = """
if ARGV[3] == '1' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
    return 0
  end
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('INCR', KEYS[2])
"""

_DELETE_USER = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
return redis.call('INCR', KEYS[2])
"""

# KEYS: users-loaded; ARGV: server id, version. Acknowledgements only move forward.
_ACK_USERS = """
local v = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if v < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""

_DROP_IF_EQUAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

# A login of a user with a connection limit: counted only if under it.
_ADMIT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 1 then
  return 1
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class FeRecord:
    server_id: int
    address: str  # host:grpc_port, the value of the processlist FE column
    mysql_address: str
    started_at: float
    version: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> FeRecord:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class ConnectionRecord:
    id: int
    fe: str
    server_id: int
    user: str
    host: str
    login_time: str
    catalog: str
    db: str
    protocol: str = "mysql"
    trace_id: str = ""
    backend_thread: int = 0  # the session's backend connection (MySQL thread id), 0 if none
    backend_host: str = ""  # that connection's host (host:port): thread ids are each host's own

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ConnectionRecord:
        # Fields a newer FE added are ignored: FEs of two versions share a registry during a rolling upgrade.
        return cls(**{k: v for k, v in json.loads(raw).items() if k in _CONNECTION_FIELDS})


_CONNECTION_FIELDS = frozenset(ConnectionRecord.__dataclass_fields__)


class LiveConnection(Protocol):
    """A live session as the registry sees it."""

    id: int

    def record(self) -> ConnectionRecord: ...


class Keys:
    def __init__(self, cluster: str) -> None:
        self.prefix = f"fecluster:{{{cluster}}}"
        self.fes = f"{self.prefix}:fes"
        self.conns = f"{self.prefix}:conns"
        self.users = f"{self.prefix}:users"
        self.audit_requesters = f"{self.prefix}:audit-requesters"
        self.events = f"{self.prefix}:events"
        self.globals = f"{self.prefix}:globals"
        self.traces = f"{self.prefix}:traces"
        self.marker = f"{self.prefix}:registry"
        self.quarantine = f"{self.prefix}:quarantine"
        self.users_version = f"{self.prefix}:users-version"
        self.users_loaded = f"{self.prefix}:users-loaded"

    def lease(self, server_id: int) -> str:
        return f"{self.prefix}:lease:{server_id}"

    def fe_conns(self, server_id: int) -> str:
        return f"{self.prefix}:fe-conns:{server_id}"

    def audit_of(self, requester: str) -> str:
        return f"{self.prefix}:audit:{requester}"

    def user_conns(self, user: str) -> str:
        return f"{self.prefix}:user-conns:{user}"


def _group(records: Iterable[ConnectionRecord], key: Callable[[ConnectionRecord], str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for record in records:
        grouped.setdefault(key(record), []).append(record.id)
    return grouped


def _by_server_id(conn_ids: Iterable[int]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for conn_id in conn_ids:
        grouped.setdefault(server_id_of(conn_id) or 0, []).append(conn_id)
    return grouped


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Quarantined(Exception):
    """The registry was found lost moments ago: live FEs re-claim their server ids
    first, and nobody takes a new one for ``seconds`` more."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"registry quarantine: {seconds:.2f}s left")
        self.seconds = seconds


class Registry:
    """Typed access to one cluster's keys. Raises redis errors to the caller,
    which decides how to degrade (see ``coordinator.membership``)."""

    def __init__(self, redis: aioredis.Redis, cluster: str = "default") -> None:
        self.redis = redis
        self.keys = Keys(cluster)
        self._renew = redis.register_script(_RENEW)
        self._claim_state = redis.register_script(_CLAIM_STATE)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._admit = redis.register_script(_ADMIT)
        self._put_user = redis.register_script(_PUT_USER)
        self._delete_user = redis.register_script(_DELETE_USER)
        self._ack_users = redis.register_script(_ACK_USERS)
        # Told the rows of a dead FE's connections as they are purged (the FE
        # kills their backend threads: the registry knows no backend).
        self.on_purged: Callable[[list[ConnectionRecord]], None] | None = None
        # The server id this FE holds (kept by Membership): acknowledgements name it.
        self.server_id = 0
        self.users_acked = 0  # the users-version this FE last acknowledged

    # ------------------------------------------------------------ leases

    async def claim_state(self) -> float:
        """Before taking a new server id: seconds of quarantine left (> 0); -1.0 if
        this Redis held no registry (the marker is written now: a new cluster, or a
        registry lost that no live FE has re-claimed yet); 0.0 otherwise."""
        ms = int(await self._claim_state(keys=[self.keys.marker, self.keys.quarantine]))
        return -1.0 if ms < 0 else ms / 1000

    async def acquire_lease(
        self,
        token: str,
        ttl_ms: int,
        preferred: int | None = None,
        *,
        holder_alive: Callable[[FeRecord], Awaitable[bool]] | None = None,
    ) -> int:
        """Take a free server id and clear whatever a dead previous holder left.

        An id whose lease is gone but whose FE record remains is taken only if
        ``holder_alive`` says that FE does not answer (death needs evidence: its
        lease may have lapsed in a Redis outage while it serves on). Raises
        ``Quarantined`` while a lost registry's quarantine runs."""
        candidates = list(range(1, MAX_SERVER_ID + 1))
        random.shuffle(candidates)
        if preferred:
            candidates.insert(0, preferred)
        keys = self.keys
        for server_id in candidates:
            expected = ""
            while True:
                status, extra = await self._claim(
                    keys=[keys.lease(server_id), keys.quarantine, keys.fes], args=[token, ttl_ms, server_id, expected]
                )
                status, extra = int(status), _s(extra)
                if status == -1:
                    raise Quarantined(int(extra) / 1000)
                if status != 2:
                    break
                if not extra:  # the record went meanwhile: claim it as a free id
                    expected = ""
                    continue
                # The id's lease is gone but its FE left a record: taken only if that FE is dead.
                if holder_alive is not None and await holder_alive(FeRecord.from_json(extra)):
                    break
                expected = extra  # claim it unless the record changed meanwhile
            if status == 1:
                await self.purge_dead(server_id, token)
                return server_id
        raise RuntimeError(f"no free server id: all {MAX_SERVER_ID} are leased")

    async def renew_lease(self, server_id: int, token: str, ttl_ms: int) -> int:
        """1 renewed, 2 re-taken after the key vanished, 3 re-taken and the registry
        was lost (a quarantine starts), 0 held by another FE."""
        keys = self.keys
        return int(
            await self._renew(
                keys=[keys.lease(server_id), keys.marker, keys.quarantine, keys.fes], args=[token, ttl_ms, server_id]
            )
        )

    async def release_lease(self, server_id: int, token: str) -> None:
        await self._release(keys=[self.keys.lease(server_id)], args=[token])

    async def lease_alive(self, server_id: int) -> bool:
        return bool(await self.redis.exists(self.keys.lease(server_id)))

    # ------------------------------------------------------------ FEs

    async def put_fe(self, record: FeRecord) -> None:
        await self.redis.hset(self.keys.fes, str(record.server_id), record.to_json())

    async def fes(self) -> tuple[dict[int, FeRecord], set[int]]:
        """Every FE record, and the server ids whose lease is alive. Purges nothing:
        a record whose lease is gone may be an FE that serves on (see Membership)."""
        raw = await self.redis.hgetall(self.keys.fes)
        records = {int(_s(k)): FeRecord.from_json(v) for k, v in raw.items()}
        if not records:
            return {}, set()
        sids = sorted(records)
        alive = await self.redis.mget([self.keys.lease(s) for s in sids])
        return records, {sid for sid, lease in zip(sids, alive, strict=True) if lease is not None}

    async def live_fes(self) -> dict[int, FeRecord]:
        """FE records whose lease is alive."""
        records, leased = await self.fes()
        return {sid: r for sid, r in records.items() if sid in leased}

    async def purge_server(self, server_id: int) -> None:
        """Remove a server id's FE record and every connection (and trace id) it registered."""
        set_key = self.keys.fe_conns(server_id)
        members = [int(_s(m)) for m in await self.redis.smembers(set_key)]
        records = await self._records(members)
        pipe = self.redis.pipeline(transaction=False)
        self._forget(pipe, members, records)
        pipe.delete(set_key)
        pipe.hdel(self.keys.fes, str(server_id))
        await pipe.execute()
        if self.on_purged is not None and records:
            self.on_purged(records)

    async def purge_dead(self, server_id: int, lease_token: str | None = None) -> list[ConnectionRecord] | None:
        """Purge a server id's record and rows only if its lease is still gone (or, with
        ``lease_token``, held by that token) and nobody wrote its rows meanwhile, in one
        transaction: an FE that re-took its lease, or is writing rows, is alive. Returns the
        purged rows (handed to ``on_purged``), or None if it did not purge."""
        lease_key, set_key = self.keys.lease(server_id), self.keys.fe_conns(server_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(lease_key, set_key)
                holder = await pipe.get(lease_key)
                if (holder is not None and lease_token is None) or (
                    lease_token is not None and (holder is None or _s(holder) != lease_token)
                ):
                    return None
                members = [int(_s(m)) for m in await pipe.smembers(set_key)]
                raw = await pipe.hmget(self.keys.conns, [str(i) for i in members]) if members else []
                records = [ConnectionRecord.from_json(r) for r in raw if r is not None]
                pipe.multi()
                self._forget(pipe, members, records)
                pipe.delete(set_key)
                pipe.hdel(self.keys.fes, str(server_id))
                await pipe.execute()
            except WatchError:
                return None
        if self.on_purged is not None and records:
            self.on_purged(records)
        return records

    # ------------------------------------------------------------ connections

    def _remember(self, pipe: Pipeline, records: Iterable[ConnectionRecord]) -> None:
        records = list(records)
        if not records:
            return
        pipe.hset(self.keys.conns, mapping={str(r.id): r.to_json() for r in records})
        for sid, ids in _by_server_id(r.id for r in records).items():
            pipe.sadd(self.keys.fe_conns(sid), *ids)
        for user, ids in _group(records, lambda r: r.user).items():
            pipe.sadd(self.keys.user_conns(user), *ids)
        traces: dict[FieldT, EncodableT] = {r.trace_id: r.id for r in records if r.trace_id}
        if traces:
            pipe.hset(self.keys.traces, mapping=traces)

    def _forget(self, pipe: Pipeline, conn_ids: Iterable[int], records: Iterable[ConnectionRecord]) -> None:
        """Drop connections: their rows and set memberships; what a record
        names (user, trace id) is dropped only if it is known."""
        conn_ids = list(conn_ids)
        if not conn_ids:
            return
        pipe.hdel(self.keys.conns, *map(str, conn_ids))
        for sid, ids in _by_server_id(conn_ids).items():
            pipe.srem(self.keys.fe_conns(sid), *ids)
        records = list(records)
        for user, ids in _group(records, lambda r: r.user).items():
            pipe.srem(self.keys.user_conns(user), *ids)
        for record in records:
            if record.trace_id:
                self._queue_drop_trace(pipe, record.trace_id, record.id)

    def _queue_drop_trace(self, pipe: Pipeline, trace_id: str, conn_id: int) -> None:
        """Queue the drop of ``trace_id`` if it still names ``conn_id``. A registered
        script called with a pipeline as client is a coroutine (redis.asyncio) that
        queues nothing until awaited; EVAL queues at once on either kind of pipeline."""
        pipe.eval(_DROP_IF_EQUAL, 1, self.keys.traces, trace_id, str(conn_id))

    async def _records(self, conn_ids: Iterable[int]) -> list[ConnectionRecord]:
        conn_ids = list(conn_ids)
        if not conn_ids:
            return []
        raw = await self.redis.hmget(self.keys.conns, [str(i) for i in conn_ids])
        return [ConnectionRecord.from_json(r) for r in raw if r is not None]

    async def apply_connection_changes(
        self, changes: Mapping[int, tuple[ConnectionRecord, bool]], dropped_traces: Mapping[str, int] | None = None
    ) -> None:
        """One pipeline for a batch of connects ``(record, True)`` and
        disconnects ``(record, False)``, and trace ids that live sessions gave
        up (each dropped only if it still names that session)."""
        pipe = self.redis.pipeline(transaction=False)
        self._remember(pipe, (r for r, live in changes.values() if live))
        gone = [r for r, live in changes.values() if not live]
        self._forget(pipe, (r.id for r in gone), gone)
        for trace_id, conn_id in (dropped_traces or {}).items():
            self._queue_drop_trace(pipe, trace_id, conn_id)
        await pipe.execute()

    async def admit_connection(self, user: str, conn_id: int, limit: int) -> bool:
        """Count ``conn_id`` among ``user``'s sessions if they are fewer than
        ``limit``, atomically (one script: exact under concurrent logins on
        every FE)."""
        return bool(await self._admit(keys=[self.keys.user_conns(user)], args=[limit, conn_id]))

    async def sync_connections(
        self, server_id: int, live: Callable[[], Mapping[int, LiveConnection]], *, rewrite_all: bool = False
    ) -> int:
        """Make the registry hold exactly this FE's live connections: drop the
        rows of ended ones, add missing ones (all of them with ``rewrite_all``).
        ``live`` is read after Redis answers, so nothing that happened while we
        waited is undone; records are built only for the rows written.
        Returns how many rows it had to fix."""
        set_key = self.keys.fe_conns(server_id)
        registered = {int(_s(m)) for m in await self.redis.smembers(set_key)}
        sessions = live()
        stale = registered - sessions.keys()
        missing = sessions.keys() if rewrite_all else sessions.keys() - registered
        if not stale and not missing:
            return 0
        stale_records = await self._records(stale)
        sessions = live()  # read again: the HMGET above was a wait
        stale -= sessions.keys()
        pipe = self.redis.pipeline(transaction=False)
        self._forget(pipe, stale, [r for r in stale_records if r.id in stale])
        self._remember(pipe, (sessions[i].record() for i in missing if i in sessions))
        await pipe.execute()
        return len(stale) + (0 if rewrite_all else len(missing))

    # ------------------------------------------------------------ users

    async def user(self, name: str) -> UserRecord | None:
        raw = await self.redis.hget(self.keys.users, name)
        return None if raw is None else UserRecord.from_json(name, raw)

    async def users(self) -> dict[str, UserRecord]:
        raw = await self.redis.hgetall(self.keys.users)
        return {_s(k): UserRecord.from_json(_s(k), v) for k, v in raw.items()}

    async def users_versioned(self) -> tuple[dict[str, UserRecord], int]:
        """The whole user table and the users-version it is, read in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.users)
        pipe.get(self.keys.users_version)
        raw, version = await pipe.execute()
        return {_s(k): UserRecord.from_json(_s(k), v) for k, v in raw.items()}, int(version or 0)

    async def users_version(self) -> int:
        return int(await self.redis.get(self.keys.users_version) or 0)

    async def put_user(self, user: UserRecord, *, only_new: bool = False) -> int:
        """Write a user (``only_new``: only if absent) and bump the users-version in the
        same step; announce it. Returns the new version, 0 if nothing was written."""
        version = int(
            await self._put_user(
                keys=[self.keys.users, self.keys.users_version], args=[user.name, user.to_json(), int(only_new)]
            )
        )
        if version:
            await self.redis.publish(self.keys.events, "users")
        return version

    async def delete_user(self, name: str) -> int:
        """The new users-version, 0 if there was no such user."""
        version = int(await self._delete_user(keys=[self.keys.users, self.keys.users_version], args=[name]))
        if version:
            await self.redis.publish(self.keys.events, "users")
        return version

    async def ack_users(self, version: int) -> None:
        """This FE has loaded the user table of ``version`` (the writer waits for it)."""
        if self.server_id:
            await self._ack_users(keys=[self.keys.users_loaded], args=[self.server_id, version])
        self.users_acked = version

    async def users_not_loaded(self, version: int) -> dict[int, tuple[FeRecord, int]]:
        """Live FEs (record and lease) that have not acknowledged ``version`` yet, with
        their lease's remaining ms: by then each has loaded it, or is fenced or dead."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.fes)
        pipe.hgetall(self.keys.users_loaded)
        raw_fes, raw_loaded = await pipe.execute()
        loaded = {int(_s(k)): int(v) for k, v in raw_loaded.items()}
        behind = {
            sid: FeRecord.from_json(v)
            for k, v in raw_fes.items()
            if loaded.get(sid := int(_s(k)), 0) < version and sid != self.server_id
        }
        if not behind:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for sid in behind:
            pipe.pttl(self.keys.lease(sid))
        ttls = await pipe.execute()
        return {sid: (record, int(ms)) for (sid, record), ms in zip(behind.items(), ttls, strict=True) if int(ms) > 0}

    # ------------------------------------------------------------ cluster variables

    async def cluster_variables(self) -> dict[str, Any]:
        raw = await self.redis.hgetall(self.keys.globals)
        return {_s(k): json.loads(v) for k, v in raw.items()}

    async def set_cluster_variable(self, name: str, value: Any) -> None:
        await self.redis.hset(self.keys.globals, name, json.dumps(value))
        await self.redis.publish(self.keys.events, "globals")

    # ------------------------------------------------------------ trace ids

    async def trace_owner(self, trace_id: str) -> int | None:
        """The connection that set this trace id last, if any (the owner re-checks)."""
        raw = await self.redis.hget(self.keys.traces, trace_id)
        return None if raw is None else int(raw)

    # ------------------------------------------------------------ audit

    async def audit_kills(self, entries: Sequence[Mapping[str, str]], per_requester: int, retention_s: float) -> None:
        """Append kill audit entries, each to its requester's stream (capped at
        ``per_requester`` entries, trimmed by age): one flood evicts only its own."""
        pipe = self.redis.pipeline(transaction=False)
        oldest = f"{int((time.time() - retention_s) * 1000)}-0"
        for requester in {e["requester"] for e in entries}:
            pipe.sadd(self.keys.audit_requesters, requester)
        for entry in entries:
            key = self.keys.audit_of(entry["requester"])
            fields: dict[FieldT, EncodableT] = {k: v for k, v in entry.items()}
            pipe.xadd(key, fields, maxlen=per_requester, approximate=True)
        for requester in {e["requester"] for e in entries}:
            pipe.xtrim(self.keys.audit_of(requester), minid=oldest, approximate=True)
        await pipe.execute()

    async def audit_entries(self, count: int = 100) -> list[dict[str, str]]:
        """The newest ``count`` entries across every requester's stream."""
        requesters = sorted(_s(r) for r in await self.redis.smembers(self.keys.audit_requesters))
        if not requesters:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for requester in requesters:
            pipe.xrevrange(self.keys.audit_of(requester), count=count)
        merged = [
            (_s(eid), {_s(k): _s(v) for k, v in fields.items()})
            for stream in await pipe.execute()
            for eid, fields in stream
        ]
        merged.sort(key=lambda e: tuple(int(p) for p in e[0].split("-")), reverse=True)
        return [fields | {"entry_id": eid} for eid, fields in merged[:count]]

    # ------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[str]:
        """Invalidation messages from every FE, from the moment of subscribing
        (the caller reloads what it caches right after the first yield: ``""``)."""
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self.keys.events)
            yield ""
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield _s(message["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


def _row(entry: ConnectionRecord | LiveConnection) -> ConnectionRecord:
    return entry if isinstance(entry, ConnectionRecord) else entry.record()


class ConnectionWriter:
    """Connects and disconnects reach Redis in the background, coalesced into
    one pipeline per batch: nothing on the handshake path waits for Redis, a
    burst of thousands of connects is a handful of round trips, and the Redis
    connection pool is never exhausted. Changes wait ``coalesce`` seconds to
    gather (``flush`` cuts the wait short); a connection that comes and goes
    within one batch is never written at all, and the batch's Redis round trip
    never lands on a handshake still in progress. A failed batch is not
    retried: the caller's ``on_error`` schedules a full re-sync from the live
    sessions."""

    def __init__(self, registry: Registry, on_error: Callable[[BaseException], None], coalesce: float = 0.0) -> None:
        self.registry = registry
        self._on_error = on_error
        self.coalesce = coalesce
        # A row, or the live connection to take it from when the batch is written
        # (most connections that come and go are never asked for one); state:
        # "new", "changed" or "gone".
        self._pending: dict[int, tuple[ConnectionRecord | LiveConnection, str]] = {}
        self._dropped_traces: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._now = asyncio.Event()  # a flush is waiting: write without gathering more
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registry-writer")

    def add(self, record: ConnectionRecord | LiveConnection, new: bool = True, urgent: bool = False) -> None:
        """A new connection's row, or (``new=False``) a live one's changed row.
        ``urgent``: write without waiting for the coalescing window (a session
        holding a user-limit slot: its row is what lets a survivor free the slot
        should this FE die)."""
        pending = self._pending.get(record.id)
        self._pending[record.id] = (record, "new" if new or (pending and pending[1] == "new") else "changed")
        self._kick(urgent)

    def remove(self, record: ConnectionRecord | LiveConnection, written: bool = False) -> None:
        """A connection ended; ``written``: something of it is in Redis already
        (its user-limit slot), so the removal must go out even if its row did
        not, and at once (the slot is free only when it is written)."""
        pending = self._pending.get(record.id)
        if pending is not None and pending[1] == "new" and not written:
            del self._pending[record.id]  # came and went before it was written: nothing to write
        else:
            self._pending[record.id] = (record, "gone")
        self._kick(written)

    def drop_trace(self, trace_id: str, conn_id: int) -> None:
        self._dropped_traces[trace_id] = conn_id
        self._kick()

    def _kick(self, urgent: bool = False) -> None:
        self._idle.clear()
        self._wake.set()
        if urgent:
            self._now.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.coalesce and not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.coalesce):
                        await self._now.wait()
            self._now.clear()
            self._wake.clear()
            await self._write_pending()
            if not self._pending and not self._dropped_traces:
                self._idle.set()

    async def _write_pending(self) -> None:
        """One batch out. Its own frame: the batch (a burst's thousands of rows) is
        freed once written, not held by the loop until the next change comes."""
        batch = {i: (_row(entry), state != "gone") for i, (entry, state) in self._pending.items()}
        self._pending = {}
        traces, self._dropped_traces = self._dropped_traces, {}
        if batch or traces:
            try:
                await self.registry.apply_connection_changes(batch, traces)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure means: re-sync later
                self._on_error(e)

    async def flush(self, timeout: float) -> None:
        """Wait until every change so far has been written (or failed), without
        waiting for the coalescing window to end."""
        if not self._idle.is_set():
            self._now.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def close(self, timeout: float = 2.0) -> None:
        if self._task is None:
            return
        await self.flush(timeout)
        self._task.cancel()
        await asyncio.wait([self._task], timeout=timeout)
