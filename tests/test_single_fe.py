"""One FE over the MySQL protocol: sessions, users, SHOW PROCESSLIST, KILL (issue 2)."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid

import pymysql
import pytest

from tests.support import SEED_COLUMNS, Cluster, Fe, Running, error_code, fails, kill_during, wait_for, wait_running


def _user(fe: Fe, admin: bool = False) -> tuple[str, str]:
    name, password = f"u{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex[:6]
    fe.query(f"CREATE USER '{name}' IDENTIFIED BY '{password}'")
    if admin:
        fe.query(f"GRANT ADMIN_PRIV ON *.*.* TO '{name}'")
    return name, password


def test_processlist_has_the_seed_columns_and_this_fe(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as c, c.cursor() as cur:
        cur.execute("SHOW PROCESSLIST")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    assert names == SEED_COLUMNS
    mine = [r for r in rows if r[1] == c.thread_id()]
    assert len(mine) == 1
    row = mine[0]
    assert row[0] == "Yes" and [r[0] for r in rows].count("Yes") == 1
    assert row[2] == "root" and row[3].startswith("127.0.0.1:")
    assert time.strptime(row[4], "%Y-%m-%d %H:%M:%S")
    assert row[5] == "internal" and row[7] == "Query" and row[11] == "SHOW PROCESSLIST"
    assert len(row[10]) == 33 and row[10][16] == "-"
    assert row[12] == fe.address and row[13] is None


def test_mariadb_client_prints_the_processlist(fe: Fe) -> None:
    out = subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-P", str(fe.mysql_port), "-u", "root", "--skip-ssl", "-e", "show processlist"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.strip().splitlines()
    assert header.split("\t") == SEED_COLUMNS
    mine = [r.split("\t") for r in rows if r.startswith("Yes")]
    assert len(mine) == 1 and mine[0][12] == fe.address and mine[0][11] == "show processlist"


def test_full_cuts_info_at_100_characters_only_without_full(fe: Fe) -> None:
    long_sql = "SELECT SLEEP(30) /* " + "x" * 150 + " */"
    with contextlib.closing(fe.connect()) as victim, contextlib.closing(fe.connect()) as admin:
        run = Running(victim, long_sql)
        wait_running(fe, victim.thread_id())
        with admin.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            short = next(r for r in cur.fetchall() if r[1] == victim.thread_id())
            cur.execute("SHOW FULL PROCESSLIST")
            full = next(r for r in cur.fetchall() if r[1] == victim.thread_id())
            cur.execute(f"KILL QUERY {victim.thread_id()}")
        assert short[11] == long_sql[:100] and full[11] == long_sql
        assert error_code(run.join()) == 1317


def test_kill_query_interrupts_sleep_and_the_connection_survives(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as victim, contextlib.closing(fe.connect()) as killer:
        outcome, took = kill_during(fe, victim, killer, f"KILL QUERY {victim.thread_id()}")
        assert error_code(outcome) == 1317
        assert "Query execution was interrupted" in str(outcome)
        assert took < 1.0
        with victim.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)


def test_kill_query_interrupts_a_heavy_recursive_query(fe: Fe) -> None:
    heavy = (
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT COUNT(*) FROM c"
    )
    with contextlib.closing(fe.connect()) as victim, contextlib.closing(fe.connect()) as killer:
        outcome, took = kill_during(fe, victim, killer, f"KILL QUERY {victim.thread_id()}", heavy)
        assert error_code(outcome) == 1317
        assert took < 0.5  # milliseconds in practice, not when it would finish


def test_kill_query_of_an_idle_connection_changes_nothing(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as idle, contextlib.closing(fe.connect()) as killer:
        with killer.cursor() as cur:
            cur.execute(f"KILL QUERY {idle.thread_id()}")
        with idle.cursor() as cur:
            cur.execute("SELECT 2")
            assert cur.fetchall() == ((2,),)


def test_kill_connection_closes_it_and_unregisters_it(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    victim, killer = fe.connect(), fe.connect()
    vid = victim.thread_id()
    wait_for(lambda: vid in cluster3.registry_ids(), 2, what="its registry row")  # written within 10 ms
    with killer.cursor() as cur:
        cur.execute(f"KILL CONNECTION {vid}")
    code, _ = fails(victim, "SELECT 1")
    assert code in (2013, 2006)  # lost connection / gone away
    wait_for(lambda: vid not in cluster3.registry_ids(), 5, what="registry row to go")
    killer.close()


def test_kill_connection_while_running_closes_at_once(fe: Fe) -> None:
    """It answered 1317 and then closed, so the CLI and mysqlclient failed two
    statements before reconnecting; MariaDB closes at once (2013)."""
    victim, killer = fe.connect(), fe.connect()
    run = Running(victim, "SELECT SLEEP(30)")
    wait_running(fe, victim.thread_id())
    with killer.cursor() as cur:
        cur.execute(f"KILL {victim.thread_id()}")
    assert error_code(run.join()) == 2013
    killer.close()


def test_killing_your_own_connection(fe: Fe) -> None:
    conn = fe.connect()
    assert fails(conn, f"KILL {conn.thread_id()}") == (1927, "Connection was killed")  # as MariaDB 10.11
    code, _ = fails(conn, "SELECT 1")
    assert code in (2013, 2006)


def test_kill_connection_id_of_yourself_is_audited_as_done(fe: Fe) -> None:
    """It was recorded as "failed CancelledError()": the KILL cancels its own
    statement, and the kill itself was carried out all the same."""
    conn = fe.connect()
    own = conn.thread_id()
    assert fails(conn, "KILL CONNECTION_ID()")[0] == 1927

    def entry() -> tuple[str, ...] | None:
        rows = fe.query("SHOW KILL AUDIT LIMIT 200")
        return next((r for r in rows if r[4] == str(own)), None)

    audited = wait_for(entry, 5, what="the self-kill's audit entry")
    assert audited[7] == "ok" and audited[5] == "root", audited  # Outcome, TargetUser


@pytest.mark.parametrize(
    "sql,code",
    [
        ("KILL 0", 1094),
        ("KILL 99999999999", 1094),
        ("KILL -1", 1094),
        ("KILL abc", 1064),
        ("KILL QUERY 'abc'", 1097),
        ("KILL QUERY '0123456789abcdef-0123456789abcdef'", 1097),
        ("KILL CONNECTION 1048577", 1094),
        ("KILL", 1064),
    ],
)
def test_bad_kill_statements_get_clear_errors(fe: Fe, sql: str, code: int) -> None:
    with contextlib.closing(fe.connect()) as conn:
        assert fails(conn, sql)[0] == code
        with conn.cursor() as cur:  # and the session goes on
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)


def test_messages_match_mysql(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as conn:
        assert fails(conn, "KILL 12345") == (1094, "Unknown thread id: 12345")


def test_privileges_non_owner_gets_1095_root_kills_anyone(fe: Fe) -> None:
    name, password = _user(fe)
    with contextlib.closing(fe.connect()) as root_conn, contextlib.closing(fe.connect(name, password)) as user_conn:
        assert fails(user_conn, f"KILL {root_conn.thread_id()}") == (
            1095,
            f"You are not owner of thread {root_conn.thread_id()}",
        )
        assert fails(user_conn, f"KILL QUERY {root_conn.thread_id()}")[0] == 1095
        assert fails(user_conn, "KILL 1048577")[0] == 1094
        with root_conn.cursor() as cur:  # root's connection is untouched
            cur.execute("SELECT 1")
        # the user sees only their own connection
        with user_conn.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            assert {r[2] for r in cur.fetchall()} == {name}
        # the owner may kill their own other connection; root kills anyone
        with contextlib.closing(fe.connect(name, password)) as second, user_conn.cursor() as cur:
            cur.execute(f"KILL QUERY {second.thread_id()}")
        with root_conn.cursor() as cur:
            cur.execute(f"KILL {user_conn.thread_id()}")
        assert fails(user_conn, "SELECT 1")[0] in (2013, 2006)


def test_admin_priv_grants_and_revokes_the_right_to_kill(fe: Fe) -> None:
    name, password = _user(fe)
    with contextlib.closing(fe.connect()) as victim, contextlib.closing(fe.connect(name, password)) as ops:
        assert fails(ops, f"KILL QUERY {victim.thread_id()}")[0] == 1095
        fe.query(f"GRANT ADMIN_PRIV ON *.*.* TO '{name}'")
        with ops.cursor() as cur:
            cur.execute(f"KILL QUERY {victim.thread_id()}")
            cur.execute("SHOW GRANTS")
            assert "Admin_priv" in cur.fetchall()[0][4]  # Doris's GlobalPrivs column
        fe.query(f"REVOKE ADMIN_PRIV ON *.*.* FROM '{name}'")
        assert fails(ops, f"KILL QUERY {victim.thread_id()}")[0] == 1095


def test_wrong_password_and_unknown_user_get_1045(cluster3: Cluster) -> None:
    fe = cluster3.fes[0]
    name, password = _user(fe)
    before = cluster3.registry_ids()
    for user, pw in ((name, "wrong"), ("nobody-" + name, "x"), (name, "")):
        with pytest.raises(pymysql.err.OperationalError) as e:
            fe.connect(user, pw)
        assert e.value.args[0] == 1045
    assert cluster3.registry_ids() <= before | set()  # nothing registered for refused logins
    with contextlib.closing(fe.connect(name, password)):
        pass


def test_user_administration(fe: Fe) -> None:
    name, password = _user(fe)
    with contextlib.closing(fe.connect()) as root:
        assert fails(root, f"CREATE USER '{name}'")[0] == 1396
        with root.cursor() as cur:
            cur.execute(f"CREATE USER IF NOT EXISTS '{name}'")
            cur.execute(f"SET PASSWORD FOR '{name}' = PASSWORD('new-pw')")
        with pytest.raises(pymysql.err.OperationalError):
            fe.connect(name, password)
        with contextlib.closing(fe.connect(name, "new-pw")) as user:
            assert fails(user, "CREATE USER x1")[0] == 1227
            assert fails(user, "SHOW GRANTS FOR root")[0] == 1227
            with user.cursor() as cur:
                cur.execute("SET PASSWORD = 'own-pw'")
        with contextlib.closing(fe.connect(name, "own-pw")):
            pass
        with root.cursor() as cur:
            cur.execute(f"DROP USER '{name}'")
            cur.execute(f"DROP USER IF EXISTS '{name}'")
        assert fails(root, f"DROP USER '{name}'")[0] == 1396
        with pytest.raises(pymysql.err.OperationalError):
            fe.connect(name, "own-pw")


def test_embedded_backend_runs_mysql_sql(fe: Fe) -> None:
    db = f"d{uuid.uuid4().hex[:8]}"
    with contextlib.closing(fe.connect()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"USE {db}")
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), score DOUBLE)")
        assert cur.execute("INSERT INTO t VALUES (1, 'a', 1.5), (2, 'b', NULL)") == 2
        cur.execute("SELECT id, name, score FROM t ORDER BY id DESC LIMIT 1")
        assert cur.fetchall() == ((2, "b", None),)
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == (("t",),)
        cur.execute("SELECT DATABASE()")
        assert cur.fetchall() == ((db,),)
        cur.execute("SHOW PROCESSLIST")
        assert next(r for r in cur.fetchall() if r[0] == "Yes")[6] == db
    with contextlib.closing(fe.connect(database=db)) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t")
        assert cur.fetchall() == ((2,),)
        assert fails(conn, "SELEC 1")[0] == 1064
        assert fails(conn, "USE nosuchdb")[0] == 1049
        assert fails(conn, f"CREATE DATABASE {db}")[0] == 1007
        cur.execute(f"DROP DATABASE {db}")


def test_information_schema_processlist_gives_the_same_rows(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT ID, USER, FE, CURRENT_CONNECTED FROM information_schema.processlist WHERE ID = %s",
            (conn.thread_id(),),
        )
        assert cur.fetchall() == ((conn.thread_id(), "root", fe.address, "Yes"),)
        cur.execute("SELECT * FROM information_schema.processlist")
        # the seed's 14, then the trace id and the backend connection (host, thread)
        assert [d[0] for d in cur.description][-4:] == ["CLOUD_CLUSTER", "TRACE_ID", "BACKEND_HOST", "BACKEND_THREAD"]
        assert len(cur.description) == 17


def test_registry_holds_exactly_the_live_connections_after_200_connects(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster(1)
    fe = cluster.fes[0]
    keep = []
    for i in range(200):
        conn = fe.connect()
        if i % 10 == 0:
            keep.append(conn)
        else:
            conn.close()
    live = {c.thread_id() for c in keep}
    wait_for(lambda: cluster.registry_ids() == live, 10, what="registry == live connections")
    for c in keep:
        c.close()
    wait_for(lambda: cluster.registry_ids() == set(), 10, what="empty registry")


def test_comments_around_cluster_statements(fe: Fe) -> None:
    with contextlib.closing(fe.connect()) as victim, contextlib.closing(fe.connect()) as killer:
        run = Running(victim, "SELECT SLEEP(30)")
        wait_running(fe, victim.thread_id())
        with killer.cursor() as cur:
            cur.execute(f"/* app=billing */ KILL QUERY {victim.thread_id()} -- from the pool")
            assert error_code(run.join()) == 1317
            cur.execute("SHOW PROCESSLIST # how busy are we")
            assert len(cur.description) == 14


def test_quoted_names_passwords_and_stored_hashes(fe: Fe) -> None:
    suffix = uuid.uuid4().hex[:6]
    fe.query(f"CREATE USER 'o''b{suffix}' IDENTIFIED BY 'p\\'q'")
    with contextlib.closing(fe.connect(f"o'b{suffix}", "p'q")):
        pass
    # IDENTIFIED BY PASSWORD takes the stored hash: this one is PASSWORD('secret')
    fe.query(f"CREATE USER 'h{suffix}' IDENTIFIED BY PASSWORD '*14E65567ABDB5135D0CFD9A70B3032C179A49EE7'")
    with contextlib.closing(fe.connect(f"h{suffix}", "secret")) as conn, conn.cursor() as cur:
        cur.execute("SHOW GRANTS FOR CURRENT_USER()")  # anyone may ask about themselves
        row = cur.fetchall()[0]
        assert row[0] == f"'h{suffix}'@'%'" and row[2] == "Yes" and row[4:8] == (None, None, None, None)


def test_passwords_never_show_in_processlist(fe: Fe) -> None:
    name, _ = _user(fe)
    with contextlib.closing(fe.connect()) as admin, admin.cursor() as cur:
        cur.execute(f"SET PASSWORD FOR '{name}' = PASSWORD('hunter2-{name}')")
        cur.execute("SHOW FULL PROCESSLIST")
        rows = cur.fetchall()
    with contextlib.closing(fe.connect()) as other, other.cursor() as cur:
        cur.execute("SELECT INFO FROM information_schema.processlist")
        infos = [r[0] for r in cur.fetchall()] + [r[11] for r in rows]
    assert not any(f"hunter2-{name}" in (i or "") for i in infos)
    with contextlib.closing(fe.connect(name, f"hunter2-{name}")) as user, user.cursor() as cur:
        cur.execute("SET PASSWORD = 'n3w'")
        with contextlib.closing(fe.connect()) as admin, admin.cursor() as acur:
            acur.execute("SHOW FULL PROCESSLIST")
            info = next(r[11] for r in acur.fetchall() if r[1] == user.thread_id())
    assert info is None  # idle: NULL, not even redacted (redaction of running statements: test_sqltext)


def test_an_idle_sessions_info_is_null(fe: Fe) -> None:
    """Issue 13: root saw bob's finished SELECT '...hunter2' in Info (MariaDB
    shows NULL while a session sleeps)."""
    name, password = _user(fe)
    with contextlib.closing(fe.connect(name, password)) as bob, contextlib.closing(fe.connect()) as root:
        with bob.cursor() as cur:
            cur.execute("SELECT 'my password is hunter2'")
            cur.execute("SELECT 7")  # the immediate path too
        with root.cursor() as cur:
            cur.execute("SHOW FULL PROCESSLIST")
            rows = {r[1]: r for r in cur.fetchall()}
            cur.execute("SELECT ID, COMMAND, INFO FROM information_schema.processlist")
            table = {r[0]: r for r in cur.fetchall()}
        assert rows[bob.thread_id()][7] == "Sleep" and rows[bob.thread_id()][11] is None
        assert table[bob.thread_id()][1:] == ("Sleep", None)
        assert rows[root.thread_id()][11] == "SHOW FULL PROCESSLIST"  # a running statement still shows


def test_node_refuses_to_start_without_a_cluster_secret(redis_url: str) -> None:
    import sys

    from frontend import procs

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "frontend.cli",
            "node",
            "--redis-url",
            redis_url,
            "--mysql-port",
            str(procs.free_port()),
            "--grpc-port",
            str(procs.free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=procs.node_env(),
    )
    assert out.returncode == 2 and "--cluster-secret" in out.stderr


def test_a_bulk_insert_does_not_stall_other_sessions(fe: Fe) -> None:
    db = f"bulk{uuid.uuid4().hex[:6]}"
    values = ", ".join(f"({i}, 'row-{i}-{'x' * 20}')" for i in range(6000))
    with contextlib.closing(fe.connect()) as loader, contextlib.closing(fe.connect()) as other:
        with loader.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"USE {db}")
            cur.execute("CREATE TABLE t (id INT, v VARCHAR(40))")
        run = Running(loader, f"INSERT INTO t VALUES {values}")
        slowest = 0.0
        while run.thread.is_alive():
            start = time.monotonic()
            with other.cursor() as cur:
                cur.execute("SELECT 1")
            slowest = max(slowest, time.monotonic() - start)
        outcome = run.join(60)
        assert not isinstance(outcome, Exception), outcome
        assert slowest < 0.25  # the loader's parse happens off the event loop
        with loader.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM t")
            assert cur.fetchall() == ((6000,),)
            cur.execute(f"DROP DATABASE {db}")
