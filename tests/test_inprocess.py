"""The FE's parts inside the test's own event loop, against a real Redis:
the kill stream, the registry writer, membership states, and whole nodes.
Process-level tests (test_cross_fe, test_faults, ...) stay the end-to-end proof."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping

import grpc
import pymysql
import pytest
import redis.asyncio as aioredis

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import server_id_of
from coordinator.membership import Membership
from coordinator.pb import fecluster_pb2 as pb
from coordinator.pb import fecluster_pb2_grpc as pb_grpc
from coordinator.peers import KillStream, PeerUnreachable
from coordinator.registry import ConnectionRecord, ConnectionWriter, FeRecord, Registry
from frontend import procs
from frontend.node import Node
from tests.support import node_config

# ---------------------------------------------------------------- kill stream


class _Peer(pb_grpc.PeerServicer):
    """A peer that answers kills after ``delay``, or breaks its stream on ``break_on``."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.break_on: int | None = None
        self.streams = 0

    async def KillStream(
        self, requests: AsyncIterator[pb.PeerKillRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.KillResult]:
        self.streams += 1
        async for request in requests:
            if request.target.connection_id == self.break_on:
                await context.abort(grpc.StatusCode.INTERNAL, "peer broke")
            await asyncio.sleep(self.delay)
            yield pb.KillResult(owner_fe="peer", request_id=request.request_id)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[_Peer, KillStream]]:
    servicer = _Peer()
    server = grpc.aio.server()
    pb_grpc.add_PeerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stream = KillStream(pb_grpc.PeerStub(channel), ())
    try:
        yield servicer, stream
    finally:
        await stream.close()
        await channel.close()
        await server.stop(0)


def _kill(conn_id: int) -> pb.PeerKillRequest:
    return pb.PeerKillRequest(requester="root", target=pb.KillTarget(connection_id=conn_id))


async def test_kill_stream_matches_replies_to_requests(peer: tuple[_Peer, KillStream]) -> None:
    servicer, stream = peer
    replies = await asyncio.gather(*(stream.kill(_kill(i), 5) for i in range(1, 51)))
    assert all(r.owner_fe == "peer" for r in replies)
    assert len({r.request_id for r in replies}) == 50
    assert servicer.streams == 1  # one long-lived stream, not a call per kill


async def test_a_broken_stream_fails_what_is_in_flight_and_the_next_kill_reopens_it(
    peer: tuple[_Peer, KillStream],
) -> None:
    servicer, stream = peer
    servicer.break_on = 13
    with pytest.raises(PeerUnreachable) as failed:
        await stream.kill(_kill(13), 5)
    assert failed.value.code == grpc.StatusCode.INTERNAL
    servicer.break_on = None
    reply = await stream.kill(_kill(14), 5)
    assert reply.owner_fe == "peer"
    assert servicer.streams == 2


async def test_a_cancelled_kill_does_not_take_the_stream_down(peer: tuple[_Peer, KillStream]) -> None:
    """A KILL statement can itself be killed mid-call: only its own request goes."""
    servicer, stream = peer
    servicer.delay = 0.3
    slow = asyncio.ensure_future(stream.kill(_kill(1), 5))
    await asyncio.sleep(0.05)
    slow.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await slow
    servicer.delay = 0
    assert (await stream.kill(_kill(2), 5)).owner_fe == "peer"
    assert servicer.streams == 1


async def test_a_peer_that_does_not_answer_gets_deadline_exceeded(peer: tuple[_Peer, KillStream]) -> None:
    servicer, stream = peer
    servicer.delay = 2
    with pytest.raises(PeerUnreachable) as failed:
        await stream.kill(_kill(1), 0.2)
    assert failed.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


# ---------------------------------------------------------------- registry writer


class _RecordingRegistry:
    def __init__(self) -> None:
        self.batches: list[dict[int, tuple[ConnectionRecord, bool]]] = []
        self.fail = False

    async def apply_connection_changes(
        self, changes: Mapping[int, tuple[ConnectionRecord, bool]], dropped_traces: Mapping[str, int] | None = None
    ) -> None:
        self.batches.append(dict(changes))
        if self.fail:
            raise ConnectionError("redis away")


def _record(conn_id: int) -> ConnectionRecord:
    return ConnectionRecord(conn_id, "fe:1", 1, "u", "h", "t", "internal", "")


async def test_connection_writer_coalesces_a_burst_into_one_batch() -> None:
    registry = _RecordingRegistry()
    failures: list[BaseException] = []
    writer = ConnectionWriter(registry, failures.append)  # type: ignore[arg-type]
    writer.start()
    for i in range(1, 1001):
        writer.add(_record(i))
    writer.remove(_record(7))  # a disconnect before the batch went out: neither is written
    await writer.flush(5)
    await writer.close()
    assert len(registry.batches) == 1
    assert len(registry.batches[0]) == 999 and 7 not in registry.batches[0]
    assert failures == []


async def test_connection_writer_keeps_no_row_once_written() -> None:
    """A burst's rows were held by the writer's loop until the next change came (its
    batch a local of the loop): after 5,000 connections closed, ~6,000 records and
    their strings pinned Python's memory arenas (found with tracemalloc; bench.burst)."""

    class Counting:
        written = 0

        async def apply_connection_changes(
            self, changes: Mapping[int, tuple[ConnectionRecord, bool]], _: object
        ) -> None:
            self.written += len(changes)

    registry = Counting()
    writer = ConnectionWriter(registry, lambda e: None)  # type: ignore[arg-type]
    writer.start()
    records = [_record(i) for i in range(1, 101)]
    refs = [weakref.ref(r) for r in records]
    for r in records:
        writer.add(r)
    await writer.flush(5)
    del records, r
    gc.collect()
    try:
        assert registry.written == 100
        assert sum(ref() is not None for ref in refs) == 0
    finally:
        await writer.close()


async def test_connection_writer_reports_a_failed_batch_and_does_not_retry_it() -> None:
    registry = _RecordingRegistry()
    registry.fail = True
    failures: list[BaseException] = []
    writer = ConnectionWriter(registry, failures.append)  # type: ignore[arg-type]
    writer.start()
    writer.add(_record(1))
    await writer.flush(5)
    registry.fail = False
    writer.add(_record(2))
    await writer.flush(5)
    await writer.close()
    assert [type(f) for f in failures] == [ConnectionError]
    assert [sorted(b) for b in registry.batches] == [[1], [2]]  # the caller re-syncs; the writer moves on


# ---------------------------------------------------------------- membership


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[Registry]:
    reg = Registry(aioredis.from_url(redis_url), f"t{uuid.uuid4().hex[:8]}")
    try:
        yield reg
    finally:
        await reg.close()


def _membership(registry: Registry, events: list[str]) -> Membership:
    async def lost(old: int, new: int) -> None:
        events.append(f"lost {old}->{new}")

    async def registry_event(event: str) -> None:
        events.append(f"event {event!r}")

    async def registry_lost() -> None:
        events.append("registry lost")

    return Membership(
        registry,
        FeRecord(0, "127.0.0.1:1", "127.0.0.1:2", 0.0, "test"),
        lease_ttl=30,
        live_connections=dict,
        on_server_id_lost=lost,
        on_registry_event=registry_event,
        on_registry_lost=registry_lost,
    )


async def test_membership_renews_retakes_a_vanished_lease_and_moves_off_a_stolen_one(registry: Registry) -> None:
    events: list[str] = []
    membership = _membership(registry, events)
    await membership.start(timeout=5)
    sid = membership.server_id
    try:
        assert sid > 0 and membership.redis_ok
        await membership.tick()  # renewed: nothing happens
        assert "registry lost" not in events and not any(e.startswith("lost") for e in events)

        await registry.redis.delete(registry.keys.lease(sid))  # Redis lost it
        await membership.tick()
        assert "registry lost" in events and membership.server_id == sid  # re-taken, same id
        assert (await registry.live_fes()).keys() >= {sid}

        await registry.redis.set(registry.keys.lease(sid), "someone-else", px=60_000)  # another FE holds it now
        await membership.tick()
        assert f"lost {sid}->{membership.server_id}" in events and membership.server_id != sid
    finally:
        await membership.stop()
    assert await registry.lease_alive(membership.server_id) is False  # released on stop


async def test_membership_refresh_keeps_the_cached_view_when_redis_fails(registry: Registry) -> None:
    events: list[str] = []
    membership = _membership(registry, events)
    await membership.start(timeout=5)
    try:
        view = await membership.refresh(1)
        assert membership.server_id in view
        membership.members = {4242: FeRecord(4242, "x:1", "x:2", 0.0, "v")}
        broken = Registry(aioredis.from_url(f"redis://127.0.0.1:{procs.free_port()}/0"), "nobody")
        membership.registry, real = broken, membership.registry
        view = await membership.refresh(1)
        assert 4242 in view and not membership.redis_ok  # degraded, cache kept
        membership.registry = real
        await broken.close()
    finally:
        await membership.stop()


# ---------------------------------------------------------------- whole nodes


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[Node, Node]]:
    cluster = f"t{uuid.uuid4().hex[:8]}"
    nodes = [Node(node_config(redis_url, cluster)), Node(node_config(redis_url, cluster))]
    for node in nodes:
        await node.startup()
    try:
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            await node.shutdown()


def _connect(node: Node) -> pymysql.Connection:
    return pymysql.connect(
        host="127.0.0.1", port=node.config.mysql_port, user="root", ssl_disabled=True, autocommit=True
    )


def _query(conn: pymysql.Connection, sql: str) -> tuple[tuple[object, ...], ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


async def test_two_nodes_in_one_loop_kill_across(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    victim = await asyncio.to_thread(_connect, a)
    killer = await asyncio.to_thread(_connect, b)
    try:
        assert server_id_of(victim.thread_id()) == a.membership.server_id
        sleeping = asyncio.ensure_future(asyncio.to_thread(_query, victim, "SELECT SLEEP(30)"))
        async with asyncio.timeout(10):
            while not any(s.running for s in a.sessions.sessions.values()):
                await asyncio.sleep(0.01)
        await asyncio.to_thread(_query, killer, f"KILL QUERY {victim.thread_id()}")
        with pytest.raises(pymysql.err.OperationalError) as interrupted:
            async with asyncio.timeout(10):
                await sleeping
        assert interrupted.value.args[0] == 1317
        rows = await asyncio.to_thread(_query, killer, "SHOW PROCESSLIST")
        assert {r[12] for r in rows} == {a.config.address, b.config.address}  # the FE column names both
    finally:
        victim.close()
        killer.close()


async def test_a_refused_open_gives_the_id_back_and_leaves_no_row(two_nodes: tuple[Node, Node]) -> None:
    """One registration entry point: a session refused at open (unknown
    database) is neither in the table nor in the registry, and its id is reused."""
    a, _ = two_nodes
    root = await a.sessions.user("root")
    assert root is not None
    conn_id = a.sessions.reserve_id()
    with pytest.raises(SqlError) as refused:
        await a.sessions.open(conn_id, root, "127.0.0.1:1", "mysql", lambda: None, database="nope")
    assert refused.value.code == errors.BAD_DB
    assert a.sessions.sessions == {}
    await a.writer.flush(2)
    assert await a.registry.redis.hlen(a.registry.keys.conns) == 0
    assert a.sessions.reserve_id() == conn_id  # given back, not burnt


@pytest.mark.slow
async def test_a_late_kill_query_never_interrupts_the_next_statement(two_nodes: tuple[Node, Node]) -> None:
    """MySQL bug #11790057, widened by routing: a KILL QUERY that reaches the
    owner after its statement ended must not hit the statement that began
    since. Delivery is delayed here (0-4 ms, as a slow network would) while
    the victim runs short statements back to back and another FE kills it
    over and over; every interruption must be of a statement that began
    before its KILL was issued."""
    a, b = two_nodes
    deliver = a.sessions.kill_local
    rng = __import__("random").Random(1190057)

    async def slow_delivery(request: pb.PeerKillRequest) -> pb.KillResult:
        await asyncio.sleep(rng.random() * 0.004)
        return await deliver(request)

    a.sessions.kill_local = slow_delivery  # type: ignore[method-assign]
    hits: list[tuple[int, int]] = []  # (statement start, KILL issue), microseconds
    declined = 0
    victim = await asyncio.to_thread(_connect, a)
    killer = await asyncio.to_thread(_connect, b)
    session = a.sessions.sessions[victim.thread_id()]
    original = session.kill_query

    def recording_kill_query(reason: str = "", issued_at_us: int | None = None) -> bool:
        nonlocal declined
        started = session.started_us
        hit = original(reason, issued_at_us)
        if hit:
            hits.append((started, issued_at_us or 0))
        elif session.running and issued_at_us is not None and started > issued_at_us:
            declined += 1
        return hit

    session.kill_query = recording_kill_query  # type: ignore[method-assign]
    stop = False

    def run_statements() -> int:
        done = 0
        while not stop:
            with contextlib.suppress(pymysql.err.OperationalError):
                _query(victim, "SELECT SLEEP(0.002)")
            done += 1
        return done

    runner = asyncio.ensure_future(asyncio.to_thread(run_statements))
    try:
        for _ in range(1500):
            await asyncio.to_thread(_query, killer, f"KILL QUERY {victim.thread_id()}")
    finally:
        stop = True
        statements = await runner
        victim.close()
        killer.close()
    late = [(s, k) for s, k in hits if s > k]
    assert not late, f"{len(late)} statements that began after their KILL were interrupted"
    assert hits and declined, (len(hits), declined, statements)  # the race really happened both ways


async def test_connection_limits_while_redis_is_away_give_each_fe_its_share(two_nodes: tuple[Node, Node]) -> None:
    """The documented rule: without Redis an FE admits a limited user while its
    own sessions of that user are fewer than ceil(limit / live FEs)."""
    a, _ = two_nodes
    await a.accounts.create("limited", "", False, max_user_connections=3)
    user = await a.sessions.user("limited")
    assert user is not None

    async def away(*args: object) -> bool:
        raise ConnectionError("Redis is away")

    a.registry.admit_connection = away  # type: ignore[method-assign]
    opened = []
    assert len(await a.membership.refresh(1)) == 2  # the share comes from the last view of the FEs
    for _ in range(2):  # ceil(3 / 2 FEs) = 2
        opened.append(await a.sessions.open(a.sessions.reserve_id(), user, "127.0.0.1:1", "mysql", lambda e: None))
    with pytest.raises(SqlError) as refused:
        await a.sessions.open(a.sessions.reserve_id(), user, "127.0.0.1:1", "mysql", lambda e: None)
    assert refused.value.code == errors.USER_LIMIT_REACHED
    for session in opened:
        await a.sessions.close(session)


async def test_kill_audit_keeps_entries_while_redis_is_away_and_writes_them_after() -> None:
    """Kills made while Redis was away were never audited."""
    from coordinator.audit import KillAudit

    written: list[dict[str, str]] = []
    state = {"up": False}

    class Flaky:
        async def audit_kills(self, entries: list[dict[str, str]], per: int, retention: float) -> None:
            if not state["up"]:
                raise ConnectionError("Redis is away")
            written.extend(entries)

    audit = KillAudit(Flaky(), lambda: True)  # type: ignore[arg-type]
    for i in range(3):
        audit.record({"requester": "root", "target": i, "outcome": "ok", "time": i})
    await audit.flush()
    assert written == []  # kept, not lost
    state["up"] = True
    await audit.flush()
    assert [e["target"] for e in written] == ["0", "1", "2"]


async def test_kill_audit_aggregates_denials_per_target_and_target_user() -> None:
    """The aggregated denial keeps the target's user (issue 14 item 8), and a
    denial on another user's session is an entry of its own."""
    from coordinator.audit import KillAudit

    written: list[dict[str, str]] = []

    class Recording:
        async def audit_kills(self, entries: list[dict[str, str]], per: int, retention: float) -> None:
            written.extend(entries)

    audit = KillAudit(Recording(), lambda: True)  # type: ignore[arg-type]
    denied = {"requester": "mallory", "target": "7", "outcome": "1095 You are not owner of thread 7"}
    for _ in range(3):
        audit.record(denied | {"target_user": "bob"})
    audit.record(denied | {"target_user": "carol"})
    await audit.stop()  # ends the aggregation windows
    assert sorted((e["target_user"], e["count"]) for e in written) == [("bob", "1"), ("bob", "2"), ("carol", "1")]


async def test_the_owner_names_the_target_user_also_when_it_refuses(two_nodes: tuple[Node, Node]) -> None:
    """KillResult.target_user: filled by the owner (over the peer stream here),
    on a refusal (1095) as on a kill, and written to the requester's audit entry."""
    a, b = two_nodes
    victim = await asyncio.to_thread(_connect, a)
    entries: list[dict[str, object]] = []
    b.router._audit = entries.append
    try:
        target = pb.KillTarget(connection_id=victim.thread_id(), kind=pb.KILL_QUERY)
        reply = await a.sessions.kill_local(pb.PeerKillRequest(requester="nobody", target=target))
        assert (reply.error.code, reply.target_user) == (errors.NOT_OWNER, "root")
        with pytest.raises(SqlError) as refused:
            await b.router.kill(target, "nobody")
        assert refused.value.code == errors.NOT_OWNER
        outcome = await b.router.kill(target, "root")
        assert (outcome.owner, outcome.target_user) == (a.config.address, "root")
        unknown = pb.KillTarget(connection_id=victim.thread_id() + 1)
        with pytest.raises(SqlError):
            await b.router.kill(unknown, "root")
        by_user = await b.router.kill(pb.KillTarget(user="somebody", kind=pb.KILL_QUERY), "root")
        assert by_user.target_user == "somebody"
        assert [(e["target_user"], str(e["outcome"])[:4]) for e in entries] == [
            ("root", "1095"),
            ("root", "ok"),
            ("", "1094"),
            ("somebody", "ok"),
        ]
    finally:
        victim.close()


async def test_a_processlist_where_is_evaluated_on_each_owner(two_nodes: tuple[Node, Node]) -> None:
    """Only matching rows cross the network: each owner filters its own rows."""
    a, b = two_nodes
    conns = [await asyncio.to_thread(_connect, node) for node in (a, a, b)]
    try:
        target = conns[2].thread_id()
        mine = await b.sessions.list_local("root", f"ID = {target}")
        assert [r.id for r in mine] == [target]
        assert await a.sessions.list_local("root", f"ID = {target}") == []  # not a's: nothing to send
        rows, failures = await a.router.processlist("root", where=f"FE = '{b.config.address}' AND USER = 'root'")
        assert not failures and {r.id for r in rows} == {target}
        rows, _ = await a.router.processlist("root", where="USER = 'nobody'")
        assert rows == []
        text = await asyncio.to_thread(
            _query, conns[0], f"SELECT ID FROM information_schema.processlist WHERE ID = {target}"
        )
        assert text == ((target,),)
    finally:
        for conn in conns:
            conn.close()


async def test_connection_writer_never_writes_a_connection_that_came_and_went() -> None:
    registry = _RecordingRegistry()
    writer = ConnectionWriter(registry, lambda e: None, coalesce=0.05)
    writer.start()
    writer.add(_record(1))
    writer.remove(_record(1))  # within the batch: nothing to write
    writer.add(_record(2))
    writer.remove(_record(2), written=True)  # its limit slot is in Redis: the removal must go out
    await writer.flush(5)
    await writer.close()
    assert registry.batches == [{2: (_record(2), False)}]


async def test_connection_writer_waits_out_its_window_unless_told_not_to() -> None:
    """Rows gather for ``coalesce`` seconds; a row holding a user-limit slot
    (``urgent``), a removal that frees one, and a ``flush`` go out at once."""
    registry = _RecordingRegistry()
    writer = ConnectionWriter(registry, lambda e: None, coalesce=30)
    writer.start()
    writer.add(_record(1))
    await asyncio.sleep(0.05)
    assert registry.batches == []  # still gathering
    writer.add(_record(2), urgent=True)
    await asyncio.sleep(0.05)
    assert registry.batches == [{1: (_record(1), True), 2: (_record(2), True)}]
    writer.remove(_record(2), written=True)
    await asyncio.sleep(0.05)
    assert registry.batches[1:] == [{2: (_record(2), False)}]
    writer.add(_record(3))
    async with asyncio.timeout(1):
        await writer.flush(5)
    assert registry.batches[2:] == [{3: (_record(3), True)}]
    await writer.close()


async def test_a_kill_that_lands_before_sqlite_starts_still_stops_the_statement(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """interrupt() is a no-op for a statement not yet running: a KILL that landed
    while the worker was still queued let a processlist CTE run on (seen once in CI-like runs)."""
    import time

    from frontend.sqlite_backend import SqliteBackend

    backend = SqliteBackend(tmp_path)

    def work(conn):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # the cancel arrives now, before SQLite has run anything
        cte = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000)"
        return conn.execute(f"{cte} SELECT COUNT(*) FROM c").fetchall()

    task = asyncio.ensure_future(backend._in_thread(work))
    await asyncio.sleep(0.05)
    task.cancel()
    start = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 2  # generous: about 0.2 s
    backend.shutdown()


async def test_start_eagerly_runs_the_first_step_now_and_finishes_in_a_task() -> None:
    from coordinator.peers import start_eagerly

    steps: list[str] = []

    async def quick() -> int:
        steps.append("quick")
        return 1

    done = start_eagerly(quick())
    assert steps == ["quick"] and done.done() and done.result() == 1

    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def waits() -> int:
        steps.append("before")
        value = await gate
        steps.append("after")
        return value + 1

    later = start_eagerly(waits())
    assert steps[-1] == "before" and not later.done()  # the first step ran in our step
    gate.set_result(41)
    assert await later == 42 and steps[-1] == "after"

    async def forever() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise

    stuck = start_eagerly(forever())
    await asyncio.sleep(0)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    assert steps[-1] == "cancelled"

    async def fails() -> None:
        raise ValueError("at once")

    failed = start_eagerly(fails())
    assert isinstance(failed.exception(), ValueError)
