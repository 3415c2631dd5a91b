"""A dead FE's backend threads are found and killed without the registry (issue 21 item 4).

Real redis-server, real FE processes, a private mariadbd. The orphan is checked in the
server's own processlist. Redis is stopped and restarted EMPTY while the FE is SIGKILLed,
so no registry row names the dead FE's sessions: only the backend's own marks
(``frontend/orphans.py``) can find them. And the other side: no live FE's backend thread
is ever killed, through a Redis outage longer than the TTL, an empty restart, or the loss
of an FE's lock connection. Run with -s for the figures.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from frontend import procs
from frontend.orphans import lock_prefix, owner_lock, session_lock
from tests.mariadb import MariaDB
from tests.support import Cluster, Running, error_code, new_cluster, wait_for

pytestmark = pytest.mark.slow
TTL = 3.0
# The sweep kills a thread listed by every sweep (every TTL/3) for one TTL; a few TTLs is the bound.
BOUND_S = 4 * TTL
OUTAGE_S = 5.0  # longer than the TTL: every lease lapses
KILL_LOG = "killing backend thread"


@pytest.fixture
def redis_server() -> Iterator[procs.RedisServer]:
    server = procs.start_redis()  # no persistence: a restart is empty
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(redis_server: procs.RedisServer, backend_mariadb: MariaDB) -> Iterator[Callable[[int], Cluster]]:
    made: list[Cluster] = []

    def make(n: int) -> Cluster:
        c = new_cluster(
            redis_server.url,
            n,
            lease_ttl=TTL,
            peer_timeout=1.0,
            backend=f"mysql://fesvc:svc-pw@127.0.0.1:{backend_mariadb.port}",
        )
        made.append(c)
        return c

    yield make
    for c in made:
        for fe in c.fes:
            if fe.alive():
                print(f"----- {fe.name} -----\n{fe.logs()[-3000:]}")
        c.stop()


@pytest.fixture
def db(backend_mariadb: MariaDB) -> Iterator[str]:
    name = f"o{uuid.uuid4().hex[:8]}"
    backend_mariadb.query(f"CREATE DATABASE {name}")
    backend_mariadb.query(f"CREATE TABLE {name}.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
    backend_mariadb.query(f"INSERT INTO {name}.t VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)")
    yield name
    with contextlib.suppress(Exception):
        backend_mariadb.query(f"DROP DATABASE {name}")


@contextlib.contextmanager
def held_on_server(server: MariaDB, db: str, row: int) -> Iterator[pymysql.Connection]:
    """``row`` locked by a transaction straight on the server (not through any FE)."""
    holder = server.connect()
    try:
        holder.autocommit(False)
        with holder.cursor() as cur:
            cur.execute(f"SELECT * FROM {db}.t WHERE id = {row} FOR UPDATE")
        yield holder
    finally:
        holder.close()


def _thread_running(server: MariaDB, text: str) -> int | None:
    """The server thread whose statement contains ``text``, if any (the server's own processlist)."""
    for tid, _user, command, _time, _state, info in server.threads():
        if command == "Query" and info and text in str(info):
            return int(tid)
    return None


def _exists(server: MariaDB, thread: int) -> bool:
    return any(int(row[0]) == thread for row in server.threads())


def _locks(server: MariaDB, prefix: str, thread: int) -> tuple[Any, Any]:
    """(the holder of the session mark, the holder of the owner lock) of ``thread``."""
    rows = server.query(
        f"SELECT IS_USED_LOCK('{session_lock(prefix, thread)}'), IS_USED_LOCK('{owner_lock(prefix, thread)}')"
    )
    return rows[0][0], rows[0][1]


def _marked(server: MariaDB, prefix: str, thread: int) -> bool:
    mark, owner = _locks(server, prefix, thread)
    return mark == thread and owner is not None and owner != thread


def _restart_empty(redis_server: procs.RedisServer) -> None:
    redis_server.proc = procs.start_redis(redis_server.port, redis_server.dir, redis_server.extra).proc


def _one(conn: pymysql.Connection, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    return rows[0][0] if rows else None


def test_a_dead_fes_backend_statement_is_killed_after_redis_came_back_empty(
    cluster: Callable[[int], Cluster], redis_server: procs.RedisServer, backend_mariadb: MariaDB, db: str
) -> None:
    server = backend_mariadb
    c = cluster(2)
    fe1, fe2 = c.fes
    prefix = lock_prefix(c.name)
    with held_on_server(server, db, 2), contextlib.closing(fe2.connect(database=db)) as victim:
        # One long UPDATE on FE2: it locks row 1, then waits for row 2 (innodb_lock_wait_timeout: 50 s).
        # The server never notices that the client of a lock wait went away.
        marker = f"orphan-{db}"
        Running(victim, f"UPDATE /* {marker} */ t SET v = v + 1 WHERE id IN (1, 2)")
        thread = wait_for(lambda: _thread_running(server, marker), 10, what="the UPDATE on the backend")
        assert _marked(server, prefix, thread), (_locks(server, prefix, thread), server.threads())
        with contextlib.closing(fe1.connect(database=db)) as writer:
            write = Running(writer, f"UPDATE /* w-{db} */ t SET v = v + 10 WHERE id = 1")
            wait_for(lambda: _thread_running(server, f"w-{db}"), 10, what="the writer waiting for row 1")

            procs.stop(redis_server.proc, 5)
            fe2.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            _restart_empty(redis_server)
            fe2.proc.wait(10)
            assert victim.thread_id() not in c.registry_ids()  # no registry row names the dead FE's session
            assert _thread_running(server, marker) == thread  # the server itself does not notice

            wait_for(lambda: not _exists(server, thread), BOUND_S, 0.05, what="the dead FE's UPDATE to be killed")
            gone = time.monotonic() - killed_at
            outcome = write.join(BOUND_S)
            through = write.finished_at - killed_at
            assert error_code(outcome) is None, outcome
            print(f"\nSIGKILL + empty Redis (TTL {TTL:.0f}s): the orphan was killed {gone:.2f}s after the "
                  f"SIGKILL, the writer on FE1 got through {through:.2f}s after it")  # fmt: skip
            assert through < BOUND_S
            # The dead FE's UPDATE was rolled back: row 1 has the writer's change alone.
            assert _one(writer, "SELECT v FROM t WHERE id = 1") == 10
    assert f"{KILL_LOG} {thread} " in fe1.logs()


def test_no_live_fes_backend_thread_is_killed_through_an_outage_and_an_empty_restart(
    cluster: Callable[[int], Cluster], redis_server: procs.RedisServer, backend_mariadb: MariaDB, db: str
) -> None:
    server = backend_mariadb
    c = cluster(2)
    prefix = lock_prefix(c.name)
    sessions = [fe.connect(database=db) for fe in c.fes]
    waiters = [fe.connect(database=db) for fe in c.fes]
    try:
        # On every FE: a session inside a transaction that updated its own row (idle, locks held) ...
        threads: list[int] = []
        for i, conn in enumerate(sessions, 1):
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(f"UPDATE t SET v = v + 1 WHERE id = {i}")
        with held_on_server(server, db, 5):
            # ... and one running a statement that waits on the server for the whole test.
            running = [Running(w, f"SELECT /* wait-{i}-{db} */ * FROM t WHERE id = 5 FOR UPDATE")
                       for i, w in enumerate(waiters, 1)]  # fmt: skip
            for i in range(1, len(c.fes) + 1):
                threads.append(wait_for(lambda i=i: _thread_running(server, f"wait-{i}-{db}"), 10, what="a wait"))
            assert all(_marked(server, prefix, t) for t in threads)
            live = {conn.thread_id() for conn in sessions + waiters}
            for fe in c.fes:  # every FE has seen every other one (its witnesses) before Redis goes away
                wait_for(lambda fe=fe: live <= {r[1] for r in fe.query("SHOW PROCESSLIST")}, 5, what="the full view")

            procs.stop(redis_server.proc, 5)
            end = time.monotonic() + OUTAGE_S
            while time.monotonic() < end:
                for i, conn in enumerate(sessions, 1):
                    assert _one(conn, f"SELECT v FROM t WHERE id = {i}") == 1
                time.sleep(0.2)
            _restart_empty(redis_server)
            # Time for every sweep of every FE to act, were it wrong: CONFIRM is one TTL.
            end = time.monotonic() + 3 * TTL
            while time.monotonic() < end:
                for i, conn in enumerate(sessions, 1):
                    assert _one(conn, f"SELECT v FROM t WHERE id = {i}") == 1
                time.sleep(0.2)
            assert all(r.thread.is_alive() for r in running)  # still waiting: nobody killed them
            assert all(_exists(server, t) and _marked(server, prefix, t) for t in threads)
        for r in running:
            assert error_code(r.join(10)) is None
        for i, conn in enumerate(sessions, 1):
            with conn.cursor() as cur:
                cur.execute(f"UPDATE t SET v = v + 1 WHERE id = {i}")
                cur.execute("COMMIT")
            assert server.query(f"SELECT v FROM {db}.t WHERE id = {i}") == ((2,),)
    finally:
        for conn in sessions + waiters:
            conn.close()
    for fe in c.fes:
        assert KILL_LOG not in fe.logs(), fe.name


def test_a_live_fe_that_loses_its_lock_connection_keeps_its_sessions(
    cluster: Callable[[int], Cluster], backend_mariadb: MariaDB, db: str
) -> None:
    server = backend_mariadb
    c = cluster(2)
    prefix = lock_prefix(c.name)
    fe2 = c.fes[1]
    with contextlib.closing(fe2.connect(database=db)) as victim:
        with held_on_server(server, db, 5):
            run = Running(victim, f"SELECT /* keep-{db} */ * FROM t WHERE id = 5 FOR UPDATE")
            thread = wait_for(lambda: _thread_running(server, f"keep-{db}"), 10, what="the statement on the backend")
            assert _marked(server, prefix, thread)
            lock_conn = _locks(server, prefix, thread)[1]
            server.query(f"KILL {int(lock_conn)}")  # an operator kills FE2's lock connection: its owner locks are free
            lost_at = time.monotonic()
            wait_for(
                lambda: (owner := _locks(server, prefix, thread)[1]) is not None and owner != lock_conn,
                TTL,
                0.02,
                what="FE2 to re-take its owner locks",
            )
            print(f"\nFE2's lock connection killed: owner locks re-taken {time.monotonic() - lost_at:.2f}s later")
            time.sleep(2 * TTL)  # FE1's sweeps saw the thread unclaimed for a while: it must not act on that
            assert _exists(server, thread) and run.thread.is_alive()
        assert error_code(run.join(10)) is None  # the row is free: the statement completes, on its own thread
    assert KILL_LOG not in c.fes[0].logs()
