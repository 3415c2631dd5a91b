"""Several backend hosts behind one ``--backend`` (issue 25): three private
``mariadbd`` servers stand in for the FEs of a MySQL-protocol cluster (their
thread ids overlap: each counts from low numbers), two fecluster FEs in front.
Every check reads each server's own ``information_schema.processlist``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from coordinator.registry import Keys
from frontend.mysql_backend import HEALTH_INTERVAL, BackendAddress, MysqlBackend
from tests.haproxy import HAProxy, haproxy_binary
from tests.mariadb import MariaDB
from tests.support import Cluster, Fe, Running, error_code, new_cluster, wait_for

# Three private mariadbd per module (~15 s to start): left to CI, out of the quick loop (-m "not slow").
pytestmark = pytest.mark.slow


def _mariadb() -> MariaDB:
    try:
        return MariaDB("fesvc", "svc-pw")
    except FileNotFoundError as e:
        pytest.skip(f"no MariaDB server binary: {e}")


@pytest.fixture(scope="module")
def servers() -> Iterator[list[MariaDB]]:
    started: list[MariaDB] = []
    try:
        for _ in range(3):
            started.append(_mariadb())
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def hosts_cluster(redis_url: str, servers: list[MariaDB]) -> Iterator[Cluster]:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    cluster = new_cluster(redis_url, 2, backend=f"mysql://root@{hosts}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _sleeping(server: MariaDB, marker: str, seconds: int = 30) -> dict[int, int]:
    """The server's own processlist: victim number -> thread id, for statements ``SLEEP(30) AS `<marker>N```."""
    rows = server.query(
        "SELECT ID, INFO FROM information_schema.processlist"
        f" WHERE INFO LIKE 'SELECT SLEEP({seconds}) AS `{marker}%' AND ID <> CONNECTION_ID()"
    )
    return {int(str(info).split(marker, 1)[1].split("`", 1)[0]): int(tid) for tid, info in rows}


def _port(conn: pymysql.Connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")  # relayed: answered by the session's own backend host
        return int(cur.fetchall()[0][0])


def _drop(conn: pymysql.Connection) -> None:
    """Close a connection even while another thread waits in it for a statement's
    answer (PyMySQL's ``close()`` alone then blocks until the statement ends)."""
    with contextlib.suppress(Exception):
        if conn._sock is not None:
            conn._sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        conn.close()


def test_the_url_lists_every_host() -> None:
    a = BackendAddress.parse("mysql://svc:p%40w@10.0.0.1:9030,10.0.0.2:9030,[::1]:9031?shared_users=0")
    assert [x.address for x in a.each()] == ["10.0.0.1:9030", "10.0.0.2:9030", "[::1]:9031"]
    assert (a.user, a.password, a.shared_users, a.address) == ("svc", "p@w", False, "10.0.0.1:9030")
    one = BackendAddress.parse("mysql://svc@db")
    assert (one.each()[0].address, one.hosts, one.shared_users) == ("db:3306", (), True)
    for bad in ("mysql://svc@h:1,h:1", "mysql://svc@h:x", "mysql://svc@"):
        with pytest.raises(ValueError):
            BackendAddress.parse(bad)


def test_thirty_sessions_spread_and_each_kill_stops_exactly_its_statement(
    hosts_cluster: Cluster, servers: list[MariaDB]
) -> None:
    fe1, fe2 = hosts_cluster.fes
    victims = [fe1.connect(read_timeout=60) for _ in range(30)]
    try:
        ports = [_port(c) for c in victims]  # opened one after another: fewest sessions first
        assert sorted(ports.count(s.port) for s in servers) == [10, 10, 10]
        runs = [Running(c, f"SELECT SLEEP(30) AS `v{i}`") for i, c in enumerate(victims)]
        placed: dict[int, tuple[MariaDB, int]] = {}

        def all_running() -> bool:
            placed.clear()
            for server in servers:
                placed.update({i: (server, tid) for i, tid in _sleeping(server, "v").items()})
            return len(placed) == 30

        wait_for(all_running, 10, what="30 statements running on the backends")
        for i, (server, _) in placed.items():
            assert server.port == ports[i]  # each statement runs on its session's own host
        tids = [tid for _, tid in placed.values()]
        overlap = len(tids) - len(set(tids))  # the same thread id on several hosts
        with contextlib.closing(fe2.connect()) as killer, killer.cursor() as cur:
            for i, conn in enumerate(victims):
                started = time.monotonic()
                cur.execute(f"KILL QUERY {conn.thread_id()}")  # over fe2: routed to fe1, then to the host
                assert error_code(runs[i].join()) == 1317
                server, tid = placed[i]
                wait_for(lambda s=server, t=tid: t not in _sleeping(s, "v").values(), 5, what=f"v{i} to stop")
                elapsed = time.monotonic() - started
                left = {j for s in servers for j in _sleeping(s, "v")}
                assert left == set(range(i + 1, 30)), f"KILL of v{i} disturbed others"
                assert elapsed < 5
        for conn in victims[:3]:  # the sessions go on, on the same host
            assert _port(conn) == ports[victims.index(conn)]
        print(f"thread ids shared between hosts: {overlap}")
    finally:
        for conn in victims:
            with contextlib.suppress(Exception):
                conn.close()


def _through(lb: HAProxy) -> pymysql.Connection:
    return pymysql.connect(
        host="127.0.0.1", port=lb.port, user="root", password="", ssl_disabled=True, autocommit=True,
        connect_timeout=10, read_timeout=60,
    )  # fmt: skip


def _owners(cluster: Cluster, conns: list[pymysql.Connection]) -> list[Fe]:
    """The fecluster FE each connection landed on, as the cluster's processlist names it (the FE column)."""
    by_address = {fe.address: fe for fe in cluster.fes}
    fe_of = {int(i): str(fe) for i, fe in cluster.fes[0].query("SELECT ID, FE FROM information_schema.processlist")}
    return [by_address[fe_of[c.thread_id()]] for c in conns]


def test_thirty_sessions_through_haproxy_each_killed_from_the_other_fe(
    hosts_cluster: Cluster, servers: list[MariaDB]
) -> None:
    """The issue's setup end to end: clients reach the two fecluster FEs only
    through HAProxy (round robin); each KILL QUERY is sent on a connection to
    the FE the victim is not on, and each host's own processlist shows that
    exactly that statement stopped while the 29 others (on all three hosts) run on."""
    if haproxy_binary() is None:
        pytest.skip("no haproxy binary (Debian: apt-get install haproxy)")
    fe1, fe2 = hosts_cluster.fes
    victims: list[pymysql.Connection] = []
    killers: list[pymysql.Connection] = []
    held = "SELECT ID FROM information_schema.processlist WHERE BACKEND_HOST IS NOT NULL"
    wait_for(lambda: not fe1.query(held), 10, what="earlier tests' sessions to have left their hosts")
    with HAProxy([fe1.mysql_port, fe2.mysql_port]) as lb:
        try:
            victims += [_through(lb) for _ in range(30)]
            on = _owners(hosts_cluster, victims)
            assert (on.count(fe1), on.count(fe2)) == (15, 15)  # round robin
            ports = [_port(c) for c in victims]
            for fe in (fe1, fe2):  # each FE spreads its own sessions over the hosts
                mine = [p for p, owner in zip(ports, on, strict=True) if owner is fe]
                assert sorted(mine.count(s.port) for s in servers) == [5, 5, 5]
            while len({fe.name for fe in _owners(hosts_cluster, killers)}) < 2:  # a killer on each FE, also via HAProxy
                assert len(killers) < 6, "HAProxy sent every killer to one FE"
                killers.append(_through(lb))
            killer_on = {fe.name: k for k, fe in zip(killers, _owners(hosts_cluster, killers), strict=True)}
            runs = [Running(c, f"SELECT SLEEP(30) AS `h{i}`") for i, c in enumerate(victims)]
            placed: dict[int, tuple[MariaDB, int]] = {}

            def all_running() -> bool:
                placed.clear()
                for server in servers:
                    placed.update({i: (server, tid) for i, tid in _sleeping(server, "h").items()})
                return len(placed) == 30

            wait_for(all_running, 10, what="30 statements running on the backends")
            for i, (server, _) in placed.items():
                assert server.port == ports[i]
            tids = [tid for _, tid in placed.values()]
            print(f"thread ids shared between hosts: {len(tids) - len(set(tids))}")
            for i, conn in enumerate(victims):
                other = fe2 if on[i] is fe1 else fe1
                with killer_on[other.name].cursor() as cur:
                    cur.execute(f"KILL QUERY {conn.thread_id()}")  # routed to the victim's FE, then to its host
                assert error_code(runs[i].join()) == 1317
                server, tid = placed[i]
                wait_for(lambda s=server, t=tid: t not in _sleeping(s, "h").values(), 5, what=f"h{i} to stop")
                still = {s.port: _sleeping(s, "h") for s in servers}  # each host's own list
                assert {j for left in still.values() for j in left} == set(range(i + 1, 30)), f"KILL of h{i}"
                for j in range(i + 1, 30):  # the very same threads, on their hosts
                    assert still[placed[j][0].port][j] == placed[j][1]
            assert [_port(c) for c in victims] == ports  # every session goes on, on its host
        finally:
            for conn in victims + killers:
                _drop(conn)


def test_a_failed_host_loses_its_sessions_and_a_recovered_one_takes_new_ones(
    hosts_cluster: Cluster, servers: list[MariaDB]
) -> None:
    fe1, _ = hosts_cluster.fes
    dead = servers[1]
    conns = [fe1.connect(read_timeout=60) for _ in range(6)]
    try:
        ports = [_port(c) for c in conns]
        on_dead = [c for c, p in zip(conns, ports, strict=True) if p == dead.port]
        others = [c for c, p in zip(conns, ports, strict=True) if p != dead.port]
        assert on_dead and others
        running = Running(on_dead[0], "SELECT SLEEP(30)")
        wait_for(
            lambda: (
                dead.query("SELECT COUNT(*) FROM information_schema.processlist WHERE INFO = 'SELECT SLEEP(30)'")[0][0]
                == 1
            ),
            10,
        )
        assert dead.proc is not None
        killed_at = time.monotonic()
        os.kill(dead.proc.pid, signal.SIGKILL)
        dead.proc.wait(10)
        dead.proc = None
        outcome: Any = running.join()
        assert error_code(outcome) == 2013
        assert running.finished_at - killed_at < HEALTH_INTERVAL + 1
        assert str(dead.port) in str(outcome.args[1])  # the message names the host
        for conn in on_dead[1:]:  # idle on the dead host: lost too, at their next statement
            with pytest.raises(pymysql.err.OperationalError) as lost:
                _port(conn)
            assert error_code(lost.value) == 2013
        assert {_port(c) for c in others} <= {s.port for s in servers if s is not dead}  # undisturbed
        fresh = [fe1.connect() for _ in range(6)]
        conns += fresh
        assert dead.port not in {_port(c) for c in fresh}  # new sessions avoid it
        dead.start_again()
        back = time.monotonic()

        def lands_on_it() -> bool:
            conn = fe1.connect()
            conns.append(conn)
            return _port(conn) == dead.port

        wait_for(lands_on_it, 3 * HEALTH_INTERVAL + 2, interval=0.2, what="a new session on the restarted host")
        print(f"restarted host took a session after {time.monotonic() - back:.2f}s")
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        if dead.proc is None:
            dead.start_again()


def test_orphans_are_killed_on_their_own_host(servers: list[MariaDB]) -> None:
    """``kill_threads`` gets (host, thread) pairs: each on its own host; a bare
    thread id with several hosts is not sent (it could be a stranger's)."""
    a, b = servers[0], servers[2]
    conn_a, conn_b = a.connect(read_timeout=30), b.connect(read_timeout=30)
    run_a, run_b = Running(conn_a, "SELECT SLEEP(20)"), Running(conn_b, "SELECT SLEEP(20)")
    try:
        backend = MysqlBackend(f"mysql://root@127.0.0.1:{a.port},127.0.0.1:{b.port}")

        async def kill() -> None:
            await backend.kill_threads([conn_a.thread_id()])  # no host: nothing happens
            await backend.kill_threads([(f"127.0.0.1:{b.port}", conn_b.thread_id())])

        asyncio.run(kill())
        backend.shutdown()
        assert error_code(run_b.join()) == 2013
        time.sleep(0)  # nothing to wait for: a's statement must still run
        assert run_a.thread.is_alive()
        assert (
            a.query(f"SELECT COUNT(*) FROM information_schema.processlist WHERE ID = {conn_a.thread_id()}")[0][0] == 1
        )
    finally:
        for conn in (conn_a, conn_b):
            _drop(conn)  # a's SLEEP(20) runs on: do not wait for it


def test_accounts_are_made_on_every_host_unless_shared(servers: list[MariaDB]) -> None:
    """``?shared_users=0``: each account change on every host; shared (the default): once."""
    from coordinator.users import UserRecord, native_password_hash
    from frontend.backend_accounts import BackendAccounts

    hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    name = f"u{os.getpid()}"

    def accounts(server: MariaDB) -> int:
        return int(server.query(f"SELECT COUNT(*) FROM mysql.user WHERE User = '{name}'")[0][0])

    async def make(url: str) -> None:
        backend = MysqlBackend(url)
        try:
            ba = BackendAccounts(backend)
            await ba.create(UserRecord(name, native_password_hash("pw")))
            assert [accounts(s) for s in servers] == ([1, 1, 1] if "shared_users=0" in url else [1, 0, 0])
            assert await ba.drop(name)
            assert [accounts(s) for s in servers] == [0, 0, 0]
        finally:
            backend.shutdown()

    asyncio.run(make(f"mysql://root@{hosts}?shared_users=0"))
    asyncio.run(make(f"mysql://root@{hosts}"))


def test_kill_query_of_a_finished_query_id_is_ok_as_in_doris(hosts_cluster: Cluster) -> None:
    """Doris's regression suite: the QueryId of a session's last statement, from
    SHOW PROCESSLIST, then KILL QUERY '<it>': OK, nothing happens. An unknown one: 1097."""
    fe1, fe2 = hosts_cluster.fes
    with contextlib.closing(fe1.connect()) as a, contextlib.closing(fe2.connect()) as b:
        with a.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            own = next(r for r in cur.fetchall() if r[0] == "Yes")[10]
            cur.execute(f"KILL QUERY '{own}'")  # its own last statement, from the same session
        with b.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            held = next(r for r in cur.fetchall() if r[1] == a.thread_id())[10]
            cur.execute(f"KILL QUERY '{held}'")  # another session's finished statement, from another FE
            unknown = held[:-1] + ("0" if held[-1] != "0" else "1")
            with pytest.raises(pymysql.err.MySQLError) as e:
                cur.execute(f"KILL QUERY '{unknown}'")
            assert error_code(e.value) == 1097
        assert _port(a)  # undisturbed


def test_information_schema_names_each_sessions_backend_host_and_thread(
    hosts_cluster: Cluster, servers: list[MariaDB]
) -> None:
    fe1, fe2 = hosts_cluster.fes
    with contextlib.closing(fe1.connect()) as a:
        port = _port(a)
        with a.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")  # the FE's id; the backend's own:
            cur.execute("SELECT @@pseudo_thread_id")
            thread = int(cur.fetchall()[0][0])
        rows = fe2.query(
            f"SELECT BACKEND_HOST, BACKEND_THREAD FROM information_schema.processlist WHERE ID = {a.thread_id()}"
        )
        assert rows == ((f"127.0.0.1:{port}", thread),)


def _registered(cluster: Cluster, conn_ids: list[int]) -> dict[int, tuple[str, int]]:
    """The registry rows' (backend_host, backend_thread) of these connections."""
    with contextlib.closing(cluster.redis()) as r:
        raws = r.hmget(Keys(cluster.name).conns, [str(i) for i in conn_ids])
    rows = [json.loads(raw) for raw in raws if raw is not None]
    return {int(row["id"]): (row.get("backend_host", ""), int(row.get("backend_thread", 0))) for row in rows}


def test_a_dead_fes_statements_are_killed_on_every_host_after_its_lease(redis_url: str, servers: list[MariaDB]) -> None:
    """An FE SIGKILLed with statements running on all three hosts: the servers
    do not notice (the sockets stay open), the survivor purges it once its
    lease is gone and kills each backend thread on its own host; the
    survivor's own statements on the same hosts run on."""
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    lease = 2.0
    cluster = new_cluster(redis_url, 2, backend=f"mysql://root@{hosts}?shared_users=0", lease_ttl=lease)
    conns: list[pymysql.Connection] = []
    try:
        doomed, survivor = cluster.fes
        theirs = [doomed.connect(read_timeout=60) for _ in range(6)]
        ours = [survivor.connect(read_timeout=60) for _ in range(3)]
        conns += theirs + ours
        assert sorted(_port(c) for c in theirs) == sorted([s.port for s in servers] * 2)
        assert sorted(_port(c) for c in ours) == sorted(s.port for s in servers)
        for i, c in enumerate(theirs):
            Running(c, f"SELECT SLEEP(60) AS `d{i}`")
        for i, c in enumerate(ours):
            Running(c, f"SELECT SLEEP(60) AS `s{i}`")

        def running(marker: str) -> dict[tuple[int, int], int]:
            """(host port, thread) -> statement number, over every host's own processlist."""
            return {(s.port, tid): i for s in servers for i, tid in _sleeping(s, marker, 60).items()}

        def all_of(marker: str, n: int) -> dict[tuple[int, int], int]:
            wait_for(lambda: len(running(marker)) == n, 10, what=f"{n} statements `{marker}N` running")
            return running(marker)

        doomed_threads, survivor_threads = all_of("d", 6), all_of("s", 3)
        assert {port for port, _ in doomed_threads} == {s.port for s in servers}
        # Each row (with its host and thread) reaches the registry, written in the background.
        ids = [c.thread_id() for c in theirs]
        expected = {(f"127.0.0.1:{port}", tid) for port, tid in doomed_threads}
        wait_for(lambda: set(_registered(cluster, ids).values()) == expected, 5, what="the rows' backend host+thread")
        doomed.signal(signal.SIGKILL)
        doomed.proc.wait(10)
        killed_at = time.monotonic()
        assert running("d") == doomed_threads  # the servers themselves do not notice

        def gone() -> bool:
            return not any(
                s.query(f"SELECT COUNT(*) FROM information_schema.processlist WHERE ID = {tid}")[0][0]
                for s in servers
                for port, tid in doomed_threads
                if s.port == port
            )

        wait_for(gone, lease + 8, interval=0.1, what="the dead FE's backend threads to be killed on every host")
        took = time.monotonic() - killed_at
        assert running("s") == survivor_threads  # the survivor's statements, on the same hosts, undisturbed
        assert _registered(cluster, ids) == {}
        print(f"dead FE's 6 backend threads on 3 hosts killed {took:.2f}s after SIGKILL (lease {lease:g}s)")
    finally:
        for conn in conns:
            _drop(conn)
        cluster.stop()
