"""This FE's place in the cluster: its server-id lease, its FE record, the
cached view of the other FEs, and keeping the registry true to reality across
Redis restarts and outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from coordinator.redis_client import REDIS_ERRORS
from coordinator.registry import FeRecord, LiveConnection, Registry

log = logging.getLogger("fecluster.membership")


class Membership:
    def __init__(
        self,
        registry: Registry,
        record: FeRecord,
        *,
        lease_ttl: float,
        live_connections: Callable[[], Mapping[int, LiveConnection]],
        on_server_id_lost: Callable[[int, int], Awaitable[None]],
        on_registry_event: Callable[[str], Awaitable[None]],
        on_registry_lost: Callable[[], Awaitable[None]] | None = None,
        on_fenced: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.registry = registry
        self.record = record
        self.ttl_ms = int(lease_ttl * 1000)
        self.renew_interval = lease_ttl / 3
        self.token = secrets.token_hex(16)
        self.members: dict[int, FeRecord] = {}
        self.redis_ok = False
        self._live_connections = live_connections
        self._on_server_id_lost = on_server_id_lost
        self._on_registry_event = on_registry_event
        self._on_registry_lost = on_registry_lost
        self._needs_sync = False
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Fencing (docs/fencing.md): the monotonic time a renewal that succeeded
        # was *sent*; Redis set the lease's PX expiry after that moment, so the
        # lease outlives last_renew + TTL. Fence well before that.
        self.fence_after = lease_ttl - self.renew_interval
        self.last_renew = time.monotonic()
        self.fenced_since: float | None = None
        self.fenced_seconds_total = 0.0
        self._outage = False  # the peers confirmed Redis is away for them too
        self._on_fenced = on_fenced
        self._fence_task: asyncio.Task[None] | None = None
        # Asks the peers whether Redis answers them now: True (some peer reaches
        # it), False (every peer that answered does not), None (no peer answered).
        self.witness: Callable[[], Awaitable[bool | None]] | None = None
        self.peer_timeout = 2.0  # the node sets its --peer-timeout

    @property
    def server_id(self) -> int:
        return self.record.server_id

    async def start(self, timeout: float) -> None:
        """Lease a server id; waits for Redis up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sent = time.monotonic()
                sid = await self.registry.acquire_lease(self.token, self.ttl_ms)
                break
            except REDIS_ERRORS as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot lease a server id from Redis: {e}") from e
                log.warning("waiting for Redis to lease a server id: %s", e)
                await asyncio.sleep(0.5)
        self.last_renew = sent
        self.record = replace(self.record, server_id=sid)
        await self.registry.put_fe(self.record)
        self.members = await self.registry.live_fes()
        self.redis_ok = True
        log.info("leased server id %d as %s", sid, self.record.address)
        self._task = asyncio.create_task(self._run(), name="membership")
        self._listener = asyncio.create_task(self._listen(), name="registry-events")
        self._fence_task = asyncio.create_task(self._watch_fence(), name="lease-fence")

    def mark_dirty(self) -> None:
        """A registry write failed: serve from caches (no more waiting on Redis)
        and rewrite this FE's rows as soon as Redis answers again."""
        self._needs_sync = True
        self.redis_ok = False
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._listener, self._fence_task) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py's pubsub can take its time to notice a cancel: never hang a shutdown on it.
            await asyncio.wait(tasks, timeout=2)
        try:
            await self.registry.purge_server(self.server_id)
            await self.registry.release_lease(self.server_id, self.token)
        except REDIS_ERRORS as e:
            log.warning("could not release server id %d: %s", self.server_id, e)

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
            # cancel from stop() when the event is set in the same turn.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.renew_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("membership tick failed")

    async def tick(self) -> None:
        try:
            sent = time.monotonic()
            state = await self.registry.renew_lease(self.server_id, self.token, self.ttl_ms)
            if state == 0:
                await self._take_new_server_id()
            elif state == 2:
                log.warning("registry lost server id %d's lease (Redis restarted?); re-registering", self.server_id)
                if self._on_registry_lost is not None:
                    await self._on_registry_lost()
            self._renewed(sent)
            if state != 1 or not self.redis_ok or self._needs_sync:
                await self._resync()
            else:
                # Anti-entropy, every tick: a write that was sent while Redis
                # stalled can land after the re-sync; this puts it right within
                # one renew interval. One SMEMBERS when nothing is wrong.
                fixed = await self.registry.sync_connections(self.server_id, self._live_connections)
                if fixed:
                    log.info("registry had %d stale or missing rows of this FE; fixed", fixed)
            self.members = await self.registry.live_fes()
            if not self.redis_ok:
                log.info("Redis is reachable again; registry re-synchronised")
                await self._on_registry_event("")
            else:
                await self._on_registry_event("globals")  # cheap, and catches a lost message
            self.redis_ok = True
        except REDIS_ERRORS as e:
            if self.redis_ok:
                log.warning("Redis unreachable, serving from cached membership: %s", e)
            self.redis_ok = False

    # ------------------------------------------------------------ fencing

    @property
    def fenced(self) -> bool:
        """True while this FE must not act for its server id (no sessions, no KILLs). By the
        clock too, from 11/12 TTL, so a watchdog that runs late cannot stretch the window."""
        if self.fenced_since is not None:
            return True
        overdue = time.monotonic() - self.last_renew >= self.fence_after + self.renew_interval * 3 / 4
        return overdue and not self._outage

    async def redis_answers(self, timeout: float) -> bool:
        """What this FE tells a peer that asks before fencing itself: does Redis answer a PING now?"""
        try:
            async with asyncio.timeout(timeout):
                await self.registry.ping()
        except REDIS_ERRORS:
            return False
        return True

    def fenced_seconds(self) -> float:
        """Seconds spent fenced, including a fence in progress (for /metrics)."""
        current = time.monotonic() - self.fenced_since if self.fenced_since is not None else 0.0
        return self.fenced_seconds_total + current

    def _renewed(self, sent: float) -> None:
        """A lease call sent at monotonic ``sent`` succeeded: Redis holds the lease until at least sent + TTL."""
        self.last_renew = max(self.last_renew, sent)
        if self.fenced_since is not None:
            took = time.monotonic() - self.fenced_since
            self.fenced_seconds_total += took
            self.fenced_since = None
            log.warning("lease regained: serving again as server id %d after %.2fs fenced", self.server_id, took)

    async def _watch_fence(self) -> None:
        """Fence this FE once no renewal has succeeded for ``fence_after`` seconds,
        unless the peers say Redis is away for them too (then nobody can take the id)."""
        outage_logged = False
        while True:
            since = time.monotonic() - self.last_renew
            if self.fenced_since is not None or since < self.fence_after:
                outage_logged = self._outage = False
                if self.fenced_since is None and since >= self.renew_interval * 1.2:
                    self._wake.set()  # a renewal is late: retry now rather than a whole interval later
                late = self.renew_interval * 1.2 - since
                await asyncio.sleep(late if late > 0 else min(0.05, self.renew_interval / 4))
                continue
            self._wake.set()
            # Our own renewal and the peers' view of Redis, side by side: the first check must end
            # well before the TTL; in an outage of Redis for all there is time to wait for slow peers.
            budget = self.peer_timeout if outage_logged else self.renew_interval / 2
            renewal = asyncio.create_task(self._renew_now(budget))
            peers_see_redis = None
            if self.witness is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(budget):
                        peers_see_redis = await self.witness()
            if await renewal:
                continue
            if peers_see_redis is False:
                self._outage = True
                if not outage_logged:
                    log.warning(
                        "lease overdue, but Redis is away for the peers too: nobody can take server id %d; serving on",
                        self.server_id,
                    )
                    outage_logged = True
                await asyncio.sleep(self.renew_interval / 4)
                continue
            self.fenced_since = time.monotonic()
            self._outage = False
            log.error(
                "FENCED: no lease renewal for %.2fs (fence after %.2fs, TTL %.2fs; peers reach Redis: %s): "
                "server id %d may be taken by another FE; closing all sessions, refusing logins and KILLs "
                "until Redis answers",
                self.fenced_since - self.last_renew,
                self.fence_after,
                self.ttl_ms / 1000,
                "yes" if peers_see_redis else "no answer",
                self.server_id,
            )
            if self._on_fenced is not None:
                await self._on_fenced()

    async def _renew_now(self, timeout: float) -> bool:
        """One renewal of our own lease, beside the tick (which may be stuck behind slower
        registry calls); True if the lease is ours now."""
        try:
            async with asyncio.timeout(timeout):
                sent = time.monotonic()
                state = await self.registry.renew_lease(self.server_id, self.token, self.ttl_ms)
        except REDIS_ERRORS:
            return False
        if state == 0:
            return False  # taken: fence now; the tick takes a new server id
        if state == 2 and self._on_registry_lost is not None:
            log.warning("registry lost server id %d's lease (Redis restarted?); re-registering", self.server_id)
            self._needs_sync = True
            await self._on_registry_lost()
        self._renewed(sent)
        return True

    async def _resync(self) -> None:
        self._needs_sync = False
        await self.registry.put_fe(self.record)
        await self.registry.sync_connections(self.server_id, self._live_connections, rewrite_all=True)

    async def _take_new_server_id(self) -> None:
        old = self.server_id
        new = await self.registry.acquire_lease(self.token, self.ttl_ms)
        log.error(
            "server id %d is now held by another FE; closing this FE's sessions so no two "
            "connections share an id, continuing as server id %d",
            old,
            new,
        )
        self.record = replace(self.record, server_id=new)
        await self._on_server_id_lost(old, new)

    async def refresh(self, timeout: float) -> dict[int, FeRecord]:
        """Re-read the live FEs (bounded); on a Redis error keep the cached view
        and switch to degraded mode. Returns the view, this FE included."""
        if self.redis_ok:
            try:
                async with asyncio.timeout(timeout):
                    self.members = await self.registry.live_fes()
            except REDIS_ERRORS as e:
                log.warning("membership refresh failed, using the cached view: %s", e)
                self.mark_dirty()
        return {**self.members, self.server_id: self.record}

    async def _listen(self) -> None:
        """Reload what another FE changed (users, cluster variables) as soon as
        it says so (pub/sub, reconnecting); the first event after each
        subscribe, "", covers what changed meanwhile."""
        while True:
            try:
                async for event in self.registry.events():
                    await self._on_registry_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                log.debug("event subscription dropped: %s", e)
            await asyncio.sleep(self.renew_interval)
