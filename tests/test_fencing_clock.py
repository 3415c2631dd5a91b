"""Fencing by its deadline, whatever the event loop was doing (issue 21 item 5), in one loop.

The lease calls of a registry that never answers, and peers whose answers the test
chooses: the membership must be fenced (sessions closed, logins and KILLs refused) by
last_renew + 5/6 TTL, measured on the monotonic clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from coordinator.membership import Membership
from coordinator.registry import FeRecord


class _SilentRedis:
    """A registry whose Redis never answers (a cut network): every lease call hangs."""

    server_id = 0

    async def renew_lease(self, server_id: int, token: str, ttl_ms: int) -> int:
        await asyncio.sleep(3600)
        return 1

    async def ping(self) -> None:
        await asyncio.sleep(3600)


def _membership(ttl: float, fenced: list[float], peer_timeout: float = 2.0) -> Membership:
    async def nothing(*_: object) -> None:
        return None

    async def on_fenced() -> None:
        fenced.append(time.monotonic())

    membership = Membership(
        _SilentRedis(),  # type: ignore[arg-type]
        FeRecord(7, "127.0.0.1:1", "127.0.0.1:2", 0.0, "test"),
        lease_ttl=ttl,
        live_connections=dict,
        on_server_id_lost=nothing,
        on_registry_event=nothing,
        on_fenced=on_fenced,
    )
    membership.peer_timeout = peer_timeout
    return membership


@pytest.fixture
def watchdogs() -> Iterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()


def _serve(membership: Membership, watchdogs: list[asyncio.Task[None]]) -> float:
    """Start the lease's clocks as if a renewal had just succeeded; returns that moment."""
    membership.last_renew = time.monotonic()
    membership._arm_deadline()
    watchdogs.append(asyncio.create_task(membership._watch_fence()))
    return membership.last_renew


async def test_a_slow_peers_false_outage_word_does_not_stretch_the_fence(watchdogs: list[asyncio.Task[None]]) -> None:
    """Issue 21 item 6: a cut FE closed its sessions 4.81 s after its last renewal (TTL 3 s).
    A peer too slow to PING Redis once said "Redis is away for me too"; the next round then
    waited the whole peer timeout for the FE's own (hanging) renewal before fencing. Now the
    FE is fenced by 5/6 TTL whatever its peers said on the way."""
    ttl, fenced = 3.0, []
    membership = _membership(ttl, fenced, peer_timeout=2.0)
    answers = iter([False])  # the first answer: a false outage word; then a peer reaches Redis

    async def witness() -> bool | None:
        return next(answers, True)

    membership.witness = witness
    renewed = _serve(membership, watchdogs)
    async with asyncio.timeout(ttl + 3):
        while not fenced:
            await asyncio.sleep(0.01)
    took = fenced[0] - renewed
    print(f"\nfenced {took:.2f}s after the last renewal (deadline {ttl * 5 / 6:.2f}s)")
    assert membership.fence_after - 0.05 <= took <= ttl * 5 / 6 + 0.1
    assert membership.fenced


async def test_the_deadline_timer_fences_before_any_session_runs_after_a_loop_stall(
    watchdogs: list[asyncio.Task[None]],
) -> None:
    """The loop is busy past the deadline (a long synchronous step): when it runs again, the
    deadline timer closes the sessions before any session task takes another step, and
    logins and KILLs (which read ``fenced``) are refused by the clock even inside the stall."""
    ttl, fenced = 1.2, []
    membership = _membership(ttl, fenced, peer_timeout=0.5)

    async def witness() -> bool | None:
        await asyncio.sleep(3600)  # no peer answers
        return None

    membership.witness = witness
    renewed = _serve(membership, watchdogs)
    seen: list[tuple[bool, int]] = []

    async def session() -> None:
        await asyncio.sleep(0.3)  # due during the stall: wakes in the same loop turn as the timer
        seen.append((membership.fenced, len(fenced)))

    task = asyncio.create_task(session())
    await asyncio.sleep(0.05)
    # A busy loop from 0.05 s to 1.3 s, past the 1.0 s deadline (no await: nothing else runs).
    while time.monotonic() - renewed < ttl * 5 / 6 - 0.01:
        time.sleep(0.005)
    assert not membership.fenced
    while time.monotonic() - renewed < ttl * 5 / 6 + 0.3:
        time.sleep(0.005)
    assert membership.fenced and not fenced  # logins and KILLs are refused by the clock already
    await task
    assert seen == [(True, 1)]  # the sessions were closed before this one ran its next step
    assert fenced[0] - renewed >= ttl * 5 / 6


async def test_a_free_loop_fences_by_the_deadline_when_no_peer_answers(watchdogs: list[asyncio.Task[None]]) -> None:
    ttl, fenced = 1.2, []
    membership = _membership(ttl, fenced, peer_timeout=0.5)

    async def witness() -> bool | None:
        await asyncio.sleep(3600)
        return None

    membership.witness = witness
    renewed = _serve(membership, watchdogs)
    async with asyncio.timeout(ttl + 2):
        while not fenced:
            await asyncio.sleep(0.005)
    assert membership.fence_after - 0.05 <= fenced[0] - renewed <= ttl * 5 / 6 + 0.05


async def test_peers_confirming_an_outage_keep_the_fe_serving_past_the_deadline(
    watchdogs: list[asyncio.Task[None]],
) -> None:
    """Redis away for everyone: nobody can take the id, so the FE serves on (rule 3)."""
    ttl, fenced = 1.2, []
    membership = _membership(ttl, fenced, peer_timeout=0.5)

    async def witness() -> bool | None:
        await asyncio.sleep(0.05)
        return False

    membership.witness = witness
    renewed = _serve(membership, watchdogs)
    while time.monotonic() - renewed < 2 * ttl:
        assert not membership.fenced
        await asyncio.sleep(0.02)
    assert fenced == []


class _StoppedRedis:
    """A Redis that was stopped (connection refused at once) until ``back`` is set."""

    server_id = 0

    def __init__(self) -> None:
        self.back = asyncio.Event()

    async def renew_lease(self, server_id: int, token: str, ttl_ms: int) -> int:
        if not self.back.is_set():
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        return 2  # the lease lapsed meanwhile: re-created

    async def sync_connections(self, *_: object, **__: object) -> int:
        return 0

    async def ping(self) -> None:
        if not self.back.is_set():
            raise ConnectionError("refused")


async def test_the_end_of_a_cluster_wide_outage_fences_no_one(watchdogs: list[asyncio.Task[None]]) -> None:
    """Issue 21 item 3, the race tests/test_outage.py found (1 run in 4): Redis stopped for
    every FE, the peers said so; it came back just after this FE's renewal of the round had
    failed, and a peer's "I reach Redis" then fenced this FE (sessions closed, "peers reach
    Redis: yes") without one more try of its own. Now it tries once more and serves on."""
    ttl, fenced = 3.0, []
    membership = _membership(ttl, fenced)
    redis = _StoppedRedis()
    membership.registry = redis  # type: ignore[assignment]
    rounds = 0

    async def witness() -> bool | None:
        nonlocal rounds
        rounds += 1
        if rounds < 4:
            return False  # Redis is away for the peers too
        # Redis is back for the peers: this FE's renewal of this round has failed already.
        redis.back.set()
        await asyncio.sleep(0.01)
        return True

    membership.witness = witness
    renewed = _serve(membership, watchdogs)
    async with asyncio.timeout(ttl * 3):
        while membership.last_renew == renewed and not fenced:
            await asyncio.sleep(0.01)
    assert not fenced, f"fenced {fenced[0] - renewed:.2f}s after the last renewal, at the outage's end"
    assert membership.last_renew > renewed and not membership.fenced
