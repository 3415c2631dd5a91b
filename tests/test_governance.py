"""Governing sessions across the cluster, on 3 real FE processes: KILL USER,
kill reasons, statement and idle timeouts, trace ids."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.support import Cluster, Fe, Running, error_code, fails, wait_for, wait_running


def _user(fe: Fe, prefix: str = "u") -> str:
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    fe.query(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    return name


@contextlib.contextmanager
def _connections(*pairs: tuple[Fe, str]) -> Iterator[list[pymysql.Connection]]:
    conns = [fe.connect(user, "pw" if user != "root" else "") for fe, user in pairs]
    try:
        yield conns
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


def _error(outcome: object) -> tuple[int | None, str]:
    assert isinstance(outcome, pymysql.err.MySQLError), outcome
    return error_code(outcome), str(outcome.args[1])


# ---------------------------------------------------------------- KILL USER


def test_kill_query_user_reaches_every_fe_and_says_how_many(cluster3: Cluster) -> None:
    fe1, fe2, fe3 = cluster3.fes
    bob = _user(fe1)
    with _connections((fe1, bob), (fe2, bob), (fe3, bob), (fe2, bob), (fe3, "root")) as conns:
        runs = [Running(c, "SELECT SLEEP(30)") for c in conns[:3]]
        for fe, conn in zip((fe1, fe2, fe3), conns[:3], strict=True):
            wait_running(fe, conn.thread_id())
        idle, root = conns[3], conns[4]
        with root.cursor() as cur:
            killed = cur.execute(f"KILL QUERY USER '{bob}'")
        assert killed == 3  # affected rows: the statements interrupted (the idle session has none)
        for run in runs:
            code, message = _error(run.join())
            assert code == 1317
            assert message == f"Query execution was interrupted by KILL QUERY from root@127.0.0.1 via FE {fe3.address}"
        assert fe2.query("SELECT 1") and idle.ping() is None  # KILL QUERY leaves the connections


def test_kill_connection_user_spares_the_requesters_own_session(cluster3: Cluster) -> None:
    fe1, fe2, fe3 = cluster3.fes
    bob = _user(fe1)
    with _connections((fe1, bob), (fe2, bob), (fe3, bob)) as (a, b, mine):
        with mine.cursor() as cur:
            assert cur.execute(f"KILL CONNECTION USER '{bob}'") == 2
        for conn in (a, b):
            assert fails(conn, "SELECT 1")[0] in (2013, 2006)
        with mine.cursor() as cur:
            cur.execute("SELECT 1")
        wait_for(lambda: {r[1] for r in fe3.query("SHOW PROCESSLIST")} & {a.thread_id(), b.thread_id()} == set(),
                 5, what="the killed sessions to leave the processlist")  # fmt: skip


def test_kill_user_of_someone_else_needs_admin_priv(cluster3: Cluster) -> None:
    fe1, fe2, _ = cluster3.fes
    bob, alice = _user(fe1), _user(fe1)
    with _connections((fe1, bob), (fe2, alice)) as (bob_conn, alice_conn):
        run = Running(alice_conn, "SELECT SLEEP(30)")
        wait_running(fe2, alice_conn.thread_id())
        assert fails(bob_conn, f"KILL QUERY USER '{alice}'")[0] == 1095
        assert alice_conn.thread_id() in {r[1] for r in fe2.query("SHOW PROCESSLIST") if r[7] == "Query"}
        with fe1.connect() as root, root.cursor() as cur:
            assert cur.execute(f"KILL QUERY USER {alice}") == 1
        assert error_code(run.join()) == 1317


@pytest.mark.slow  # seconds of real waiting: left to CI, out of the quick loop
def test_kill_user_with_a_stopped_fe_warns_and_kills_the_rest(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster(2, peer_timeout=1)
    fe1, fe2 = cluster.fes
    bob = _user(fe1)
    with _connections((fe1, bob), (fe2, bob)) as (a, b):
        run = Running(a, "SELECT SLEEP(30)")
        wait_running(fe1, a.thread_id())
        from tests.support import stopped

        with stopped(fe2), fe1.connect() as root, root.cursor() as cur:
            assert cur.execute(f"KILL QUERY USER '{bob}'") == 1
            cur.execute("SHOW WARNINGS")
            warnings = cur.fetchall()
        assert error_code(run.join()) == 1317
        assert len(warnings) == 1 and fe2.address in warnings[0][2], warnings
        del b


# ---------------------------------------------------------------- timeouts


@pytest.mark.slow  # several seconds of waiting: CI runs it, iteration does not
def test_set_global_query_timeout_on_one_fe_times_out_a_statement_on_another(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster(2)
    fe1, fe2 = cluster.fes
    fe1.query("SET GLOBAL query_timeout = 1")
    with contextlib.closing(fe2.connect()) as conn:
        assert fe2.query("SELECT @@query_timeout") == ((1,),)
        start = time.monotonic()
        code, message = fails(conn, "SELECT SLEEP(10)")
        elapsed = time.monotonic() - start
    assert code == 3024
    assert message == "Query execution was interrupted, maximum statement execution time exceeded (query_timeout = 1 s)"
    assert 0.9 < elapsed < 3  # generous: the timer itself fires within milliseconds
    with contextlib.closing(fe2.connect("root")) as conn, conn.cursor() as cur:
        cur.execute("SET query_timeout = 0")  # a session's own value shadows the cluster's
        cur.execute("SELECT SLEEP(1.5)")
    assert fails(fe2.connect(), "SET GLOBAL query_timeout = 'x'")[0] == 1231


def test_set_global_needs_admin_priv(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    bob = _user(fe)
    with contextlib.closing(fe.connect(bob, "pw")) as conn:
        assert fails(conn, "SET GLOBAL query_timeout = 1")[0] == 1227


def test_max_execution_time_and_the_hint_end_statements_with_3024(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("SET max_execution_time = 300")
        start = time.monotonic()
        code, message = fails(conn, "SELECT SLEEP(5)")
        assert code == 3024 and "(max_execution_time = 300 ms)" in message
        assert time.monotonic() - start < 2
        with conn.cursor() as cur:
            cur.execute("SET max_execution_time = 0")
        code, message = fails(conn, "SELECT /*+ MAX_EXECUTION_TIME(200) */ SLEEP(5)")
        assert code == 3024 and "(MAX_EXECUTION_TIME hint = 200 ms)" in message
        # a heavy query in the backend is interrupted the same way
        code, _ = fails(
            conn,
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
            "SELECT /*+ MAX_EXECUTION_TIME(300) */ COUNT(*) FROM c",
        )
        assert code == 3024
        with conn.cursor() as cur:
            cur.execute("SELECT 1")  # the session goes on


@pytest.mark.slow  # several seconds of waiting: CI runs it, iteration does not
def test_idle_session_past_wait_timeout_is_told_4031_and_closed(fe: Fe) -> None:
    conn = fe.connect()
    own = conn.thread_id()
    with conn.cursor() as cur:
        cur.execute("SET wait_timeout = 1")
    sock: socket.socket = conn._sock  # type: ignore[attr-defined]
    sock.settimeout(5)
    start = time.monotonic()
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    assert 1 <= time.monotonic() - start < 4
    assert data[3] == 0 and data[4] == 0xFF and int.from_bytes(data[5:7], "little") == 4031, data
    assert b"because of inactivity" in data and b"(wait_timeout = 1 s)" in data
    assert own not in {r[1] for r in fe.query("SHOW PROCESSLIST")}
    conn.close()


@pytest.mark.slow  # several seconds of waiting: CI runs it, iteration does not
def test_processlist_time_of_an_idle_session_counts_its_idle_time(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as conn:
        own = conn.thread_id()

        def idle_for() -> int:
            return next(r[8] for r in fe.query("SHOW PROCESSLIST") if r[1] == own)

        assert wait_for(lambda: idle_for() >= 2, 5, what="Time to count the idle seconds")


# ---------------------------------------------------------------- trace ids


def test_trace_id_shows_in_information_schema_and_kills_from_any_fe(cluster3: Cluster) -> None:
    fe1, fe2, fe3 = cluster3.fes
    trace = f"job-{uuid.uuid4().hex[:8]}"
    with contextlib.closing(fe1.connect()) as victim:
        with victim.cursor() as cur:
            cur.execute(f"SET session_context = 'trace_id:{trace}'")
        rows = fe2.query(f"SELECT ID, TRACE_ID, FE FROM information_schema.processlist WHERE TRACE_ID = '{trace}'")
        assert rows == ((victim.thread_id(), trace, fe1.address),)
        assert len(fe2.query("SHOW PROCESSLIST")[0]) == 14  # SHOW PROCESSLIST keeps the seed's columns
        run = Running(victim, "SELECT SLEEP(30)")
        wait_running(fe3, victim.thread_id())
        fe3.query(f"KILL QUERY '{trace}'")
        code, message = _error(run.join())
        assert code == 1317 and f"via FE {fe3.address}" in message
    # the trace id leaves the registry with its session
    wait_for(lambda: fails(fe2.connect(), f"KILL QUERY '{trace}'")[0] == 1097, 5, what="the trace id to be gone")


def test_unknown_trace_id_gets_1097(fe: Fe) -> None:
    assert fails(fe.connect(), "KILL QUERY 'no-such-trace'") == (1097, "Unknown query id: no-such-trace")


@pytest.mark.parametrize("sql", ["KILL USER", "KILL QUERY USER ''", "KILL HARD QUERY USER"])
def test_bad_kill_user_statements(fe: Fe, sql: str) -> None:
    assert fails(fe.connect(), sql)[0] == 1064


def test_killing_sleep_with_an_alias_answers_1317(cluster3: Cluster) -> None:
    """It gave 1105 ("user-defined function raised exception"): the SLEEP ran
    in SQLite, and its interruption's error replaced the KILL's."""
    fe1, fe2, _ = cluster3.fes
    with contextlib.closing(fe1.connect()) as victim:
        run = Running(victim, "SELECT SLEEP(60) AS x")
        wait_running(fe2, victim.thread_id())
        fe2.query(f"KILL QUERY {victim.thread_id()}")
        assert _error(run.join())[0] == 1317


# ---------------------------------------------------------------- per-user connection limits


def _try_login(fe: Fe, user: str) -> pymysql.Connection | int:
    try:
        conn = fe.connect(user, "pw")
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return conn
    except pymysql.err.MySQLError as e:
        return error_code(e) or -1


def test_ten_concurrent_logins_on_three_fes_give_exactly_the_limit(cluster3: Cluster) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fe1 = cluster3.fes[0]
    name = f"lim{uuid.uuid4().hex[:6]}"
    fe1.query(f"CREATE USER '{name}' IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 3")
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(lambda i: _try_login(cluster3.fes[i % 3], name), range(10)))
    try:
        admitted = [o for o in outcomes if not isinstance(o, int)]
        assert len(admitted) == 3 and sorted(o for o in outcomes if isinstance(o, int)) == [1203] * 7, outcomes
        code, message = fails_login(cluster3.fes[1], name)
        assert (code, message) == (1203, f"User {name} already has more than 'max_user_connections' active connections")
        admitted[0].close()  # a slot comes back when a session ends
        wait_for(lambda: not isinstance(_keep(_try_login(fe1, name), admitted), int), 5, what="the freed slot")
    finally:
        for conn in admitted:
            with contextlib.suppress(Exception):
                conn.close()


def _keep(outcome: pymysql.Connection | int, into: list[pymysql.Connection]) -> pymysql.Connection | int:
    if not isinstance(outcome, int):
        into.append(outcome)
    return outcome


def fails_login(fe: Fe, user: str) -> tuple[int | None, str]:
    try:
        conn = fe.connect(user, "pw")
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except pymysql.err.MySQLError as e:
        return error_code(e), str(e.args[1])
    conn.close()
    raise AssertionError(f"{user} logged in")


def test_set_property_alter_user_and_the_cluster_default(cluster3: Cluster) -> None:
    fe1, fe2, _ = cluster3.fes
    bob = _user(fe1)
    fe1.query(f"SET PROPERTY FOR '{bob}' 'max_user_connections' = '1'")
    with contextlib.closing(fe1.connect(bob, "pw")):
        assert fails_login(fe2, bob)[0] == 1203
        fe2.query(f"ALTER USER '{bob}' WITH MAX_USER_CONNECTIONS 2")
        with contextlib.closing(fe2.connect(bob, "pw")):
            assert fails_login(fe1, bob)[0] == 1203
    assert fails(fe1.connect(bob, "pw"), f"SET PROPERTY FOR '{bob}' 'max_user_connections' = '5'")[0] == 1227


def test_admins_keep_one_reserved_slot(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster(1)
    fe = cluster.fes[0]
    fe.query("CREATE USER ops IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 1")
    fe.query("GRANT ADMIN_PRIV ON *.*.* TO ops")
    fe.query("SET GLOBAL max_user_connections = 1")  # the cluster default, for users without their own
    bob = _user(fe)
    with contextlib.closing(fe.connect("ops", "pw")), contextlib.closing(fe.connect("ops", "pw")):
        assert fails_login(fe, "ops")[0] == 1203  # the limit, plus one for an admin
    with contextlib.closing(fe.connect(bob, "pw")):
        assert fails_login(fe, bob)[0] == 1203


@pytest.mark.slow
def test_a_dead_fes_slots_come_back_when_its_lease_expires(make_cluster) -> None:  # type: ignore[no-untyped-def]
    import signal

    cluster = make_cluster(2, lease_ttl=3)
    fe1, fe2 = cluster.fes
    fe1.query("CREATE USER carol IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 1")
    held = fe1.connect("carol", "pw")
    assert fails_login(fe2, "carol")[0] == 1203
    fe1.signal(signal.SIGKILL)
    start = time.monotonic()
    conn = wait_for(lambda: not isinstance(c := _try_login(fe2, "carol"), int) and c, 15, what="carol's slot")
    assert time.monotonic() - start < 10  # the lease (3 s) and one membership tick
    conn.close()
    del held


# ---------------------------------------------------------------- the kill audit


@pytest.mark.slow
def test_one_users_flood_of_denied_kills_is_one_entry_and_evicts_nobody_else(cluster3: Cluster) -> None:
    """11,000 `KILL 1` by a non-admin evicted every earlier entry, root's included
    (one stream capped by count). Now each requester has a stream of their own,
    and repeated denials on one target are one entry with a count."""
    fe1, fe2, _ = cluster3.fes
    mallory = _user(fe1, "mal")
    with contextlib.closing(fe1.connect()) as victim, contextlib.closing(fe1.connect()) as root_conn:
        vid = victim.thread_id()
        with root_conn.cursor() as cur:
            cur.execute(f"KILL QUERY {vid}")  # root's entry, before the flood
        with contextlib.closing(fe2.connect(mallory, "pw")) as m:
            for _ in range(300):
                assert fails(m, f"KILL QUERY {vid}")[0] == 1095

        def audit(where: str) -> tuple[tuple[Any, ...], ...]:
            return fe1.query(f"SHOW KILL AUDIT WHERE {where} LIMIT 50")

        roots = wait_for(lambda: audit(f"Requester = 'root' AND Target = '{vid}'"), 5, what="root's entry")
        assert roots[0][7] == "ok"
        flood = wait_for(lambda: len(audit(f"Requester = '{mallory}'")) == 2 and audit(f"Requester = '{mallory}'"),
                         20, what="the first denial, then the aggregate")  # fmt: skip
        assert all(e[7].startswith("1095") for e in flood) and sorted(int(e[9]) for e in flood) == [1, 299], flood
        assert {e[5] for e in flood} == {"root"}  # the target's user, as the owner named it
        assert {e[2] for e in flood} == {fe2.address}  # received on fe2
