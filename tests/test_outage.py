"""A registry outage never kills the innocent, and no id is ever live on two FEs (issue 21 items 3 and 5).

Redis stopped (and back empty) or paused with SIGSTOP, each for longer than the lease TTL, with a
session holding an open transaction on every FE of a 3-FE cluster: nobody is killed, no client sees
an error, every transaction commits. And the forced server-id collision: Redis comes back empty
while a new FE is waiting to start and every other server id is held, so the only ids it could
take are the live FEs'. Run with -s for the figures.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pymysql
import pytest
import redis

from coordinator.ids import MAX_SERVER_ID
from coordinator.registry import Keys
from frontend import procs
from tests.support import Cluster, Fe, Running, error_code, wait_for, wait_running

pytestmark = pytest.mark.slow
T = TypeVar("T")
TTL = 3.0
OUTAGE_S = 5.0  # longer than the TTL: every lease lapses


def _backend(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == "sqlite":
        return {}
    mariadb = request.getfixturevalue("backend_mariadb")
    return {"backend": f"mysql://fesvc:svc-pw@127.0.0.1:{mariadb.port}"}


def _one(conn: pymysql.Connection, sql: str) -> object:
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    return rows[0][0] if rows else None


@contextlib.contextmanager
def _accounts(cluster: Cluster, shared: bool) -> Iterator[tuple[str, list[pymysql.Connection]]]:
    """A table of one row per FE (on the shared backend, or on each FE's own SQLite), and a
    session on every FE inside a transaction that has updated its own row."""
    db = f"t{uuid.uuid4().hex[:8]}"
    for fe in cluster.fes[:1] if shared else cluster.fes:
        fe.query(f"CREATE DATABASE {db}")
        fe.query(f"CREATE TABLE {db}.acct (id INT PRIMARY KEY, v INT)")
        fe.query(f"INSERT INTO {db}.acct VALUES (1, 0), (2, 0), (3, 0)")
    conns = [fe.connect() for fe in cluster.fes]
    for i, conn in enumerate(conns, 1):
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(f"UPDATE {db}.acct SET v = v + 1 WHERE id = {i}")
    try:
        yield db, conns
    finally:
        for conn in conns:
            conn.close()
        with contextlib.suppress(Exception):
            for fe in cluster.fes[:1] if shared else cluster.fes:
                fe.query(f"DROP DATABASE {db}")


def _keep_working(db: str, conns: list[pymysql.Connection], seconds: float) -> int:
    """Every session reads its own uncommitted row, over and over: any error fails the test."""
    statements = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, conn in enumerate(conns, 1):
            assert _one(conn, f"SELECT v FROM {db}.acct WHERE id = {i}") == 1
            statements += 1
        time.sleep(0.1)
    return statements


@contextlib.contextmanager
def _logs_on_failure(cluster: Cluster) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for fe in cluster.fes:
            print(f"----- {fe.name} -----\n{fe.logs()[-6000:]}")
        raise


def _healthy(cluster: Cluster) -> None:
    for fe in cluster.fes:
        logs = fe.logs()
        assert "FENCED" not in logs, fe.name
        assert "is dead" not in logs, fe.name  # nobody purged a live FE
        assert "held by another FE" not in logs, fe.name


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
@pytest.mark.parametrize(
    "fault",
    [
        "stopped",
        "stopped-with-data",
        "paused",
    ],
)
def test_a_redis_outage_longer_than_the_ttl_kills_no_session(
    fault: str, backend: str, make_cluster: Callable[..., Cluster], request
) -> None:  # type: ignore[no-untyped-def]
    # "stopped-with-data": Redis saves on shutdown and loads it back, its leases expired meanwhile.
    redis_server = procs.start_redis(extra=["--save", "3600 1"] if fault == "stopped-with-data" else [])
    request.addfinalizer(redis_server.stop)
    cluster = make_cluster(3, url=redis_server.url, lease_ttl=TTL, peer_timeout=2.0, **_backend(backend, request))
    with _logs_on_failure(cluster), _accounts(cluster, shared=backend == "mysql") as (db, conns):
        live = {c.thread_id() for c in conns}
        wait_for(lambda: live <= cluster.registry_ids(), 5, what="the sessions' rows")
        for fe in cluster.fes:  # every FE has seen every other one (its witnesses) before Redis goes away
            wait_for(lambda fe=fe: live <= {r[1] for r in fe.query("SHOW PROCESSLIST")}, 5, what="the full view")
        if fault.startswith("stopped"):
            procs.stop(redis_server.proc, 5)
        else:
            redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            during = _keep_working(db, conns, OUTAGE_S)
        finally:
            if fault.startswith("stopped"):
                redis_server.proc = procs.start_redis(redis_server.port, redis_server.dir, redis_server.extra).proc
            else:
                redis_server.proc.send_signal(signal.SIGCONT)
        back = time.monotonic()
        wait_for(lambda: cluster.registry_ids() >= live, 3 * TTL, what="every FE to re-register its sessions")
        print(f"\nRedis {fault} {OUTAGE_S:.0f}s (TTL {TTL:.0f}s): {during} statements ran meanwhile; "
              f"rows back {time.monotonic() - back:.2f}s after Redis")  # fmt: skip
        # The survivors had every reason to think the others dead: give them time to act on it.
        after = _keep_working(db, conns, TTL)
        for i, conn in enumerate(conns, 1):
            with conn.cursor() as cur:
                cur.execute(f"UPDATE {db}.acct SET v = v + 1 WHERE id = {i}")
                cur.execute("COMMIT")
        for i, fe in enumerate(cluster.fes, 1):
            with contextlib.closing(fe.connect()) as fresh:
                assert _one(fresh, f"SELECT v FROM {db}.acct WHERE id = {i}") == 2  # both updates, committed
        assert after > 0
        assert {c.thread_id() for c in conns} == live
    _healthy(cluster)


def _hold_all_but(cluster: Cluster, keep: set[int]) -> Callable[[], None]:
    """Lease every server id but ``keep`` (SET NX: never over a live FE's re-claimed lease)."""
    prefix = Keys(cluster.name).lease("")

    def fill() -> None:
        with contextlib.closing(cluster.redis()) as r:
            pipe = r.pipeline(transaction=False)
            for sid in range(1, MAX_SERVER_ID + 1):
                if sid not in keep:
                    pipe.set(f"{prefix}{sid}", "test-filler", nx=True, px=600_000)
            pipe.execute()

    return fill


def _call(cluster: Cluster, fn: Callable[[redis.Redis], T]) -> T:
    with contextlib.closing(cluster.redis()) as r:
        return fn(r)


def _release(cluster: Cluster, sid: int) -> None:
    with contextlib.closing(cluster.redis()) as r:
        key = Keys(cluster.name).lease(sid)
        if r.get(key) == "test-filler":
            r.delete(key)


def _server_ids(fe: Fe) -> set[int]:
    return {row[1] >> 20 for row in fe.query("SHOW PROCESSLIST")}


@pytest.mark.xfail(
    strict=False,
    reason="known, not yet fixed (1 run in 6 here, found at the end of the 2026-12-04 stop): after an empty "
    "Redis restart one live FE can stay out of a peer's view (its sessions missing from that peer's "
    "SHOW PROCESSLIST) for longer than 3 TTLs; no id was ever seen on two FEs",
)
def test_a_new_fe_never_takes_a_live_fes_id_after_redis_comes_back_empty(
    redis_server: procs.RedisServer, make_cluster: Callable[..., Cluster]
) -> None:
    cluster = make_cluster(3, url=redis_server.url, lease_ttl=TTL, peer_timeout=1.0)
    fe1, fe2, fe3 = cluster.fes
    victims = [fe1.connect() for _ in range(5)] + [fe2.connect() for _ in range(5)]
    ids = [c.thread_id() for c in victims]
    live_sids = {c.thread_id() >> 20 for c in victims} | {fe3.connect().thread_id() >> 20}
    assert len(live_sids) == 3
    keys = Keys(cluster.name)
    procs.stop(redis_server.proc, 5)
    # A new FE starts while Redis is away: it takes a server id the moment Redis is back.
    fe4 = cluster.start_fe(wait=False, lease_ttl=TTL, peer_timeout=1.0)
    wait_for(lambda: "waiting for Redis to lease a server id" in fe4.logs(), 30, what="fe4 to wait for Redis")
    redis_server.proc = procs.start_redis(redis_server.port, redis_server.dir, redis_server.extra).proc
    back = time.monotonic()
    _hold_all_but(cluster, live_sids)()  # empty, but for the live FEs' ids
    quarantined = wait_for(
        lambda: _call(cluster, lambda r: r.exists(keys.quarantine)) and time.monotonic(), 3, what="quarantine"
    )
    print(f"\nRedis back empty: a live FE re-claimed its id and started the quarantine {quarantined - back:.3f}s later")
    # Every live FE re-claims its own id within the quarantine.
    wait_for(lambda: all(_call(cluster, lambda r, s=s: r.get(keys.lease(s)) not in (None, "test-filler"))
                         for s in live_sids), TTL, what="the live FEs' leases")  # fmt: skip
    # fe4 finds nothing free once the quarantine is over: it must not take a live FE's id.
    wait_for(lambda: "registry quarantine" in fe4.logs(), 5, what="fe4 to wait out the quarantine")
    wait_for(lambda: not fe4.alive() or " up: server id " in fe4.logs(), 3 * TTL, what="fe4 to give up or start")
    assert not fe4.alive() and "no free server id" in fe4.logs(), fe4.logs()[-2000:]
    # One id is freed: a new FE takes it, and only it.
    free = min(set(range(1, MAX_SERVER_ID + 1)) - live_sids)
    _release(cluster, free)
    fe5 = cluster.start_fe(lease_ttl=TTL, peer_timeout=1.0)
    newcomers = [fe5.connect() for _ in range(5)]
    assert {c.thread_id() >> 20 for c in newcomers} == {free}
    # No two live sessions share an id, and a KILL through a third FE hits the right one.
    # fe3 learns of the new fe5 at its next view refresh: wait for every session to be listed.
    wait_for(lambda: set(ids) <= {r[1] for r in fe3.query("SHOW PROCESSLIST")}, 3 * TTL, what="fe3 to list fe5")
    rows = fe3.query("SHOW PROCESSLIST")
    assert len({r[1] for r in rows}) == len(rows)
    target = victims[0]
    run = Running(target, "SELECT SLEEP(30)")
    row = wait_running(fe3, target.thread_id())
    assert row[12] == fe1.address
    with contextlib.closing(fe3.connect()) as killer, killer.cursor() as cur:
        cur.execute(f"KILL QUERY {target.thread_id()}")
    assert error_code(run.join()) == 1317
    for conn in victims[1:] + newcomers:  # every other session is untouched
        assert _one(conn, "SELECT 1") == 1
    _healthy(cluster)
