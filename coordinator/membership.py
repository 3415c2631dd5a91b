"""This FE's place in the cluster: its server-id lease, its FE record, the
cached view of the other FEs, and keeping the registry true to reality across
Redis restarts and outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any

from coordinator.peers import start_eagerly
from coordinator.redis_client import REDIS_ERRORS
from coordinator.registry import FeRecord, LiveConnection, Quarantined, Registry

log = logging.getLogger("fecluster.membership")

RETRY_S = 0.2
"""While Redis is away, how often the lease is tried again (and the event subscription):
an FE re-claims its server id within this of Redis coming back (docs/fencing.md)."""
NEW_REGISTRY_GRACE_S = 0.5
"""An FE that finds no registry marker waits this long before taking a server id: if
Redis came back empty, a live FE re-claims its own id (and starts the quarantine)
within RETRY_S plus a round trip."""


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
        on_fenced: Callable[[], Coroutine[Any, Any, None]] | None = None,  # run eagerly: a coroutine
    ) -> None:
        self.registry = registry
        self.record = record
        self.ttl_ms = int(lease_ttl * 1000)
        self.renew_interval = lease_ttl / 3
        self.token = secrets.token_hex(16)
        # Live FEs by server id: those with a lease, and those whose lease is gone but
        # that are not proven dead yet (death needs evidence: see _reap).
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
        self.fence_deadline = lease_ttl * 5 / 6
        self.ask_after = lease_ttl / 2  # a renewal this late: ask the peers whether Redis answers them
        self.last_renew = time.monotonic()
        self.fenced_since: float | None = None
        self.fenced_seconds_total = 0.0
        # Until when the peers' word that Redis is away for them too lets this FE serve past
        # its deadline (nobody can take the id); None: no such word in this overdue period.
        self._outage_until: float | None = None
        self._on_fenced = on_fenced
        self._fence_task: asyncio.Task[None] | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._fencing: set[asyncio.Future[None]] = set()
        # Asks the peers whether Redis answers them now: True (some peer reaches
        # it), False (every peer that answered does not), None (no peer answered).
        self.witness: Callable[[], Awaitable[bool | None]] | None = None
        # Asks one FE (its gRPC address) whether it is up, bounded by the timeout given: True/False
        # (it answered; whether Redis answers it), None (no answer). Death needs evidence: an FE
        # whose lease is gone is purged, and its id taken, only if it does not answer.
        self.peer_answers: Callable[[str, float], Awaitable[bool | None]] | None = None
        self.peer_timeout = 2.0  # the node sets its --peer-timeout
        self._reaping: dict[int, asyncio.Task[None]] = {}
        self._answered_at: dict[int, float] = {}  # lapsed FEs that answered: not asked again for a while

    @property
    def server_id(self) -> int:
        return self.record.server_id

    async def start(self, timeout: float) -> None:
        """Lease a server id; waits for Redis up to ``timeout`` seconds (and out a quarantine)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sent = time.monotonic()
                sid = await self._acquire()
                break
            except Quarantined as q:
                log.warning("registry quarantine (Redis came back empty): taking a server id in %.2fs", q.seconds)
                await asyncio.sleep(q.seconds)
            except REDIS_ERRORS as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot lease a server id from Redis: {e}") from e
                log.warning("waiting for Redis to lease a server id: %s", e)
                await asyncio.sleep(0.5)
        self.last_renew = sent
        self.record = replace(self.record, server_id=sid)
        self.registry.server_id = sid
        await self.registry.put_fe(self.record)
        await self._refresh_view()
        self.redis_ok = True
        log.info("leased server id %d as %s", sid, self.record.address)
        self._arm_deadline()
        self._task = asyncio.create_task(self._run(), name="membership")
        self._listener = asyncio.create_task(self._listen(), name="registry-events")
        self._fence_task = asyncio.create_task(self._watch_fence(), name="lease-fence")

    async def _acquire(self) -> int:
        """A new server id. Raises Quarantined while a lost registry's quarantine runs. A
        registry without its marker is either new or lost with no live FE back yet: wait
        NEW_REGISTRY_GRACE_S so live FEs re-claim their ids (and start the quarantine) first."""
        if await self.registry.claim_state() < 0:
            log.info(
                "no registry marker in Redis (a new cluster, or Redis came back empty): waiting %.1fs for "
                "live FEs to re-claim their server ids",
                NEW_REGISTRY_GRACE_S,
            )
            await asyncio.sleep(NEW_REGISTRY_GRACE_S)
        return await self.registry.acquire_lease(self.token, self.ttl_ms, holder_alive=self._holder_alive)

    async def _holder_alive(self, record: FeRecord) -> bool:
        """Evidence for taking a lapsed server id: does the FE that holds it answer?"""
        if self.peer_answers is None or record.address == self.record.address:
            return False
        try:
            async with asyncio.timeout(self.peer_timeout):
                answer = await self.peer_answers(record.address, self.peer_timeout)
        except TimeoutError:
            answer = None
        if answer is not None:
            log.info(
                "server id %d's lease is gone but its FE %s answers: not taking it", record.server_id, record.address
            )
        return answer is not None

    def mark_dirty(self) -> None:
        """A registry write failed: serve from caches (no more waiting on Redis)
        and rewrite this FE's rows as soon as Redis answers again."""
        self._needs_sync = True
        self.redis_ok = False
        self._wake.set()

    async def stop(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        tasks = [t for t in (self._task, self._listener, self._fence_task, *self._reaping.values()) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py's pubsub can take its time to notice a cancel: never hang a shutdown on it.
            await asyncio.wait(tasks, timeout=2)
        try:
            # Only while the lease is still ours: if another FE holds the id now, the rows are its.
            await self.registry.purge_dead(self.server_id, self.token)
            await self.registry.release_lease(self.server_id, self.token)
        except REDIS_ERRORS as e:
            log.warning("could not release server id %d: %s", self.server_id, e)

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
            # cancel from stop() when the event is set in the same turn.
            # While Redis is away, try every RETRY_S: the first FE back re-claims its id
            # (and starts the quarantine if Redis came back empty) within that.
            interval = self.renew_interval if self.redis_ok else min(self.renew_interval, RETRY_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
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
            elif state in (2, 3):
                log.warning(
                    "registry lost server id %d's lease (Redis restarted?); re-registering%s",
                    self.server_id,
                    "; the registry was lost: quarantine of one TTL for new server ids" if state == 3 else "",
                )
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
            await self._refresh_view()
            if not self.redis_ok:
                log.info("Redis is reachable again; registry re-synchronised")
                await self._on_registry_event("")
            else:
                await self._on_registry_event("globals")  # cheap, and catches a lost message
                if await self.registry.users_version() != self.registry.users_acked:
                    await self._on_registry_event("users")  # a "users" message was lost: a writer waits for us
            self.redis_ok = True
        except REDIS_ERRORS as e:
            if self.redis_ok:
                log.warning("Redis unreachable, serving from cached membership: %s", e)
            self.redis_ok = False

    # ------------------------------------------------------------ the view of the other FEs

    async def _refresh_view(self) -> None:
        """Read the FE records. One whose lease is gone stays in the view until it is proven
        dead (it does not answer its peers): a Redis outage lapses every lease at once, and
        the FEs behind them serve on and re-register themselves."""
        records, leased = await self.registry.fes()
        view: dict[int, FeRecord] = {}
        addresses = {r.address for sid, r in records.items() if sid in leased} | {self.record.address}
        for sid, record in records.items():
            if sid in leased or sid == self.server_id:
                view[sid] = record
            elif record.address in addresses:
                # Another live server id is at that address: this record is a ghost of a past run.
                self._reap_soon(sid, record, ask=False)
            else:
                view[sid] = record
                self._reap_soon(sid, record, ask=True)
        self.members = view

    def _reap_soon(self, sid: int, record: FeRecord, *, ask: bool) -> None:
        answered = self._answered_at.get(sid)
        if ask and answered is not None and time.monotonic() - answered < self.renew_interval / 2:
            return
        if sid not in self._reaping:
            task = asyncio.create_task(self._reap(sid, record, ask), name=f"reap-{sid}")
            self._reaping[sid] = task
            task.add_done_callback(lambda _t: self._reaping.pop(sid, None))

    async def _reap(self, sid: int, record: FeRecord, ask: bool) -> None:
        """Purge a lapsed FE's record and rows (its backend threads are killed through
        ``Registry.on_purged``) only if it does not answer within the peer timeout; the
        purge itself happens only if its lease is still gone and its rows untouched."""
        try:
            if ask and self.peer_answers is not None:
                try:
                    async with asyncio.timeout(self.peer_timeout):
                        answer = await self.peer_answers(record.address, self.peer_timeout)
                except TimeoutError:
                    answer = None
                if answer is not None:
                    if len(self._answered_at) > 4096:
                        self._answered_at.clear()  # bounded: at worst some FEs are asked once more
                    self._answered_at[sid] = time.monotonic()
                    log.info(
                        "server id %d (%s): lease gone but it answers; alive, waiting for it to re-register",
                        sid,
                        record.address,
                    )
                    return
            purged = await self.registry.purge_dead(sid)
            if purged is not None:
                self.members.pop(sid, None)
                log.warning(
                    "server id %d (%s) is dead (lease gone%s): purged its record and %d rows",
                    sid,
                    record.address,
                    ", no answer" if ask else ", its address serves another server id",
                    len(purged),
                )
        except asyncio.CancelledError:
            raise
        except REDIS_ERRORS as e:
            log.debug("could not reap server id %d: %r", sid, e)
        except Exception:
            log.exception("reaping server id %d failed", sid)

    # ------------------------------------------------------------ fencing

    @property
    def fenced(self) -> bool:
        """True while this FE must not act for its server id (no sessions, no KILLs). By the
        clock too, from the 5/6 TTL deadline, so neither a late watchdog nor a busy loop
        can stretch the window (the deadline timer closes the sessions at the same moment)."""
        if self.fenced_since is not None:
            return True
        return self._past_deadline(time.monotonic())

    def _past_deadline(self, now: float) -> bool:
        if now - self.last_renew < self.fence_deadline:
            return False
        return self._outage_until is None or now >= self._outage_until

    async def redis_answers(self, timeout: float) -> bool:
        """What this FE tells a peer that asks (``fecluster.Lease``): does Redis answer a PING
        now? A fenced FE does not answer at all (the caller's deadline passes): it acts for no
        server id, so a peer may treat it as dead, purge its rows and reuse its id."""
        if self.fenced:
            await asyncio.sleep(max(timeout, self.peer_timeout) * 4)  # the caller gave up long before
            raise TimeoutError("fenced")
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
        self._outage_until = None  # a new overdue period needs a new word from the peers
        if self.fenced_since is not None:
            took = time.monotonic() - self.fenced_since
            self.fenced_seconds_total += took
            self.fenced_since = None
            log.warning("lease regained: serving again as server id %d after %.2fs fenced", self.server_id, took)
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        """A loop timer at the fence deadline (last_renew + 5/6 TTL, or the end of the peers'
        outage word): it fences whatever the watchdog task is doing. asyncio runs due timers
        before the tasks that I/O woke in the same turn, so after a loop stall the sessions are
        closed before any of them runs another step."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        when = self.last_renew + self.fence_deadline
        if self._outage_until is not None:
            when = max(when, self._outage_until)
        self._deadline_timer = asyncio.get_running_loop().call_at(when, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline_timer = None
        if self.fenced_since is not None:
            return
        if not self._past_deadline(time.monotonic()):
            self._arm_deadline()  # renewed, or the peers confirmed an outage, meanwhile
            return
        self._fence("by the deadline timer")

    def _fence(self, why: str) -> None:
        """Stop acting for the server id now: sessions closed, logins and KILLs refused."""
        if self.fenced_since is not None:
            return
        self.fenced_since = time.monotonic()
        self._outage_until = None
        log.error(
            "FENCED: no lease renewal for %.2fs (fence after %.2fs, deadline %.2fs, TTL %.2fs; %s): "
            "server id %d may be taken by another FE; closing all sessions, refusing logins and KILLs "
            "until Redis answers",
            self.fenced_since - self.last_renew,
            self.fence_after,
            self.fence_deadline,
            self.ttl_ms / 1000,
            why,
            self.server_id,
        )
        if self._on_fenced is not None:
            # Eagerly: the sessions are closed in this very step, not one loop turn later.
            closing = start_eagerly(self._on_fenced())
            self._fencing.add(closing)
            closing.add_done_callback(self._fenced_done)

    def _fenced_done(self, closing: asyncio.Future[None]) -> None:
        self._fencing.discard(closing)
        if not closing.cancelled() and closing.exception() is not None:
            log.error("closing the sessions of a fenced FE failed", exc_info=closing.exception())

    async def _ask_peers(self) -> bool | None:
        if self.witness is None:
            return None
        try:
            return await self.witness()
        except Exception:  # noqa: BLE001 - no answer
            return None

    async def _watch_fence(self) -> None:
        """Fence this FE once no renewal has succeeded for ``fence_after`` seconds and a
        peer reaches Redis (or none answers), unless the peers say Redis is away for them too
        (then nobody can take the id). The peers are asked from TTL/2 on, so their word is in
        well before the deadline (last_renew + 5/6 TTL); the deadline timer fences by the
        clock should this task run late."""
        outage_logged = False
        while True:
            now = time.monotonic()
            since = now - self.last_renew
            if self.fenced_since is not None or since < self.ask_after:
                outage_logged = False
                if self.fenced_since is None and since >= self.renew_interval * 1.2:
                    self._wake.set()  # a renewal is late: retry now rather than a whole interval later
                late = min(self.renew_interval * 1.2, self.ask_after) - since
                await asyncio.sleep(late if late > 0 else min(0.05, self.renew_interval / 4))
                continue
            self._wake.set()
            # Our own renewal and the peers' view of Redis, side by side, bounded so that an
            # answer is in before the deadline (a margin of TTL/30 for the loop); while the
            # peers say Redis is away for all there is time to wait for slow peers.
            deadline = self.last_renew + self.fence_deadline
            if self._outage_until is not None and now < self._outage_until:
                budget = self.peer_timeout
            else:
                budget = min(self.peer_timeout, max(0.05, deadline - now - self.renew_interval / 10))
            renewal = asyncio.create_task(self._renew_now(budget))
            asking = asyncio.create_task(self._ask_peers())
            ends = now + budget
            renewed_before = self.last_renew
            peers_see_redis: bool | None = None
            pending: set[asyncio.Task[Any]] = {renewal, asking}
            retried = False
            while pending and self.last_renew == renewed_before:
                done, pending = await asyncio.wait(
                    pending, timeout=max(0.0, ends - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break  # the budget is spent
                if asking in done:
                    peers_see_redis = asking.result()
                    if peers_see_redis is False:
                        break  # Redis is away for them too: decided (our renewal goes on by itself)
                    if peers_see_redis is True:
                        # A peer reaches Redis: we are cut off, unless our own renewal lands in a
                        # moment (Redis just came back). Wait a little, not the budget.
                        ends = min(ends, time.monotonic() + self.renew_interval / 4)
                if peers_see_redis is True and renewal.done() and not retried and self.last_renew == renewed_before:
                    # Ours failed while theirs reach Redis: an outage for all may just have ended
                    # between the two (tests/test_fencing_clock.py). One more try in that moment.
                    retried = True
                    renewal = asyncio.create_task(self._renew_now(max(0.05, ends - time.monotonic())))
                    pending.add(renewal)
            asking.cancel()
            if self.last_renew != renewed_before or self.fenced_since is not None:
                continue  # renewed (by this round or the tick), or fenced by the deadline timer
            if peers_see_redis is False:
                # Redis is away for every peer that answered: serve on until the next round's answer.
                self._outage_until = time.monotonic() + self.renew_interval / 2 + self.peer_timeout + 0.1
                self._arm_deadline()
                if not outage_logged:
                    log.warning(
                        "lease overdue, but Redis is away for the peers too: nobody can take server id %d; serving on",
                        self.server_id,
                    )
                    outage_logged = True
                await asyncio.sleep(self.renew_interval / 4)
                continue
            if self._outage_until is not None:
                # The peers' earlier word of an outage for all no longer holds: back to the deadline.
                self._outage_until = None
                self._arm_deadline()
                if self.fenced_since is not None:
                    continue
            wait = self.last_renew + self.fence_after - time.monotonic()
            if wait > 0:
                # Not overdue enough to fence yet: renew meanwhile and ask again at fence_after.
                await asyncio.sleep(min(wait, self.renew_interval / 4))
                continue
            self._fence(f"peers reach Redis: {'yes' if peers_see_redis else 'no answer'}")

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
        if state in (2, 3) and self._on_registry_lost is not None:
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
        """Our lease is held by another FE: stop acting for the old id at once (fenced: its ids
        may name the other FE's sessions by now), then take a new one, waiting out a quarantine."""
        old = self.server_id
        log.error(
            "server id %d is now held by another FE; closing this FE's sessions so no two "
            "connections share an id, and taking a new server id",
            old,
        )
        self._fence(f"server id {old} is held by another FE")
        while True:
            try:
                new = await self._acquire()
                break
            except Quarantined as q:
                log.warning("registry quarantine: taking a new server id in %.2fs", q.seconds)
                await asyncio.sleep(q.seconds)
        log.error("continuing as server id %d (was %d)", new, old)
        self.record = replace(self.record, server_id=new)
        self.registry.server_id = new
        await self._on_server_id_lost(old, new)

    async def refresh(self, timeout: float) -> dict[int, FeRecord]:
        """Re-read the live FEs (bounded); on a Redis error keep the cached view
        and switch to degraded mode. Returns the view, this FE included."""
        if self.redis_ok:
            try:
                async with asyncio.timeout(timeout):
                    await self._refresh_view()
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
            # Redis went away (or restarted): renew now, and keep trying every RETRY_S, so this
            # FE re-claims its server id within RETRY_S of Redis coming back (docs/fencing.md).
            self._wake.set()
            await asyncio.sleep(RETRY_S)
