"""FEs over a MySQL/MariaDB backend (``--backend mysql://...``): one database
for every FE, the backend's own answers relayed, and every KILL path checked
by the backend's own processlist (``information_schema.processlist`` on the
private MariaDB server), not only by what the client saw."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pymysql
import pymysql.cursors
import pytest

from coordinator.errors import SqlError
from coordinator.registry import Keys
from frontend.grpc_client import Client
from frontend.mysql_backend import MysqlBackend
from tests.mariadb import MariaDB
from tests.support import Cluster, Fe, Running, error_code, fails, new_cluster, wait_for
from tests.tcp_lb import RoundRobin

SERVICE_USER, SERVICE_PASSWORD = "fesvc", "svc-pw"


def _mariadb(tls: tuple[Path, Path] | None = None) -> MariaDB:
    try:
        return MariaDB(SERVICE_USER, SERVICE_PASSWORD, tls=tls)
    except FileNotFoundError as e:
        pytest.skip(f"no MariaDB server binary: {e}")


def _self_signed(directory: Path) -> tuple[Path, Path] | None:
    cert, key = directory / "backend.pem", directory / "backend.key"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "2", "-subj", "/CN=localhost"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key


def backend_url(server: MariaDB) -> str:
    return f"mysql://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    server = _mariadb(_self_signed(tmp_path_factory.mktemp("backend-tls")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mcluster(redis_url: str, mariadb: MariaDB) -> Iterator[Cluster]:
    """Three FEs over the one MariaDB."""
    cluster = new_cluster(redis_url, 3, backend=backend_url(mariadb))
    try:
        yield cluster
    finally:
        cluster.stop()


def service_threads(server: MariaDB) -> list[tuple[Any, ...]]:
    """The FEs' backend connections as the server lists them: (id, user, command, time, state, info)."""
    return server.threads(SERVICE_USER)


def running_on_backend(server: MariaDB, marker: str) -> int | None:
    """The backend thread running a statement containing ``marker``, if any."""
    for row in service_threads(server):
        if row[2] == "Query" and row[5] and marker in str(row[5]):
            return int(row[0])
    return None


def wait_backend_running(server: MariaDB, marker: str, timeout: float = 10) -> int:
    return wait_for(lambda: running_on_backend(server, marker), timeout, what=f"{marker!r} on the backend")


def wait_backend_stopped(server: MariaDB, marker: str, timeout: float) -> float:
    start = time.monotonic()
    wait_for(lambda: running_on_backend(server, marker) is None, timeout, what=f"{marker!r} to stop on the backend")
    return time.monotonic() - start


def thread_exists(server: MariaDB, thread_id: int) -> bool:
    return any(int(row[0]) == thread_id for row in service_threads(server))


def marker_sql(marker: str, seconds: int = 60) -> str:
    return f"SELECT SLEEP({seconds}) AS `{marker}`"


# ------------------------------------------------------------ one database for every FE


def test_ddl_on_one_fe_is_seen_on_the_others_at_once(mcluster: Cluster, mariadb: MariaDB) -> None:
    a, b, c = mcluster.fes
    with (
        contextlib.closing(a.connect()) as ca,
        contextlib.closing(b.connect()) as cb,
        contextlib.closing(c.connect()) as cc,
    ):
        with ca.cursor() as cur:
            cur.execute("CREATE DATABASE shared1")
        with cb.cursor() as cur:
            cur.execute("CREATE TABLE shared1.t (id INT PRIMARY KEY AUTO_INCREMENT, v DECIMAL(10,2))")
            cur.execute("INSERT INTO shared1.t (v) VALUES (1.5), (2.25)")
            assert cur.rowcount == 2
        with cc.cursor() as cur:
            cur.execute("SHOW DATABASES")
            assert ("shared1",) in cur.fetchall()
            cur.execute("USE shared1")
            cur.execute("SHOW TABLES")
            assert cur.fetchall() == (("t",),)
            cur.execute("SELECT id, v FROM t ORDER BY id")
            assert [(r[0], str(r[1])) for r in cur.fetchall()] == [(1, "1.50"), (2, "2.25")]
    assert mariadb.query("SELECT COUNT(*) FROM shared1.t") == ((2,),)
    a.query("DROP DATABASE shared1")
    assert not mariadb.query("SHOW DATABASES LIKE 'shared1'")
    assert fails(c.connect(), "USE shared1")[0] == 1049


def test_behind_a_round_robin_balancer_every_connection_sees_the_same_data(mcluster: Cluster) -> None:
    """Issue 12's first measurement: over SQLite, the second connection got 1049."""
    with RoundRobin([fe.mysql_port for fe in mcluster.fes]) as lb:
        conns = [
            pymysql.connect(host="127.0.0.1", port=lb.port, user="root", autocommit=True, ssl_disabled=True)
            for _ in range(3)
        ]
        try:
            assert sorted(lb.picks) == sorted(fe.mysql_port for fe in mcluster.fes)  # one connection per FE
            with conns[0].cursor() as cur:
                cur.execute("CREATE DATABASE lb1")
                cur.execute("CREATE TABLE lb1.t (id INT)")
            for conn in conns[1:]:
                with conn.cursor() as cur:
                    cur.execute("USE lb1")
                    cur.execute("INSERT INTO t VALUES (1)")
            with conns[0].cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM lb1.t")
                assert cur.fetchall() == ((2,),)
                cur.execute("DROP DATABASE lb1")
        finally:
            for conn in conns:
                conn.close()


def test_the_backends_own_column_metadata_and_ok_fields(mcluster: Cluster, mariadb: MariaDB) -> None:
    fe = mcluster.fes[0]
    fe.query("CREATE DATABASE IF NOT EXISTS meta")
    sql = "SELECT id, big, amount, at, d, note, doc FROM meta.t"
    with contextlib.closing(fe.connect(database="meta")) as conn, conn.cursor() as cur:
        cur.execute("SET sql_mode = ''")  # relayed: the backend's session, not strict
        cur.execute("DROP TABLE IF EXISTS t")
        cur.execute(
            "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, big BIGINT UNSIGNED, amount DECIMAL(12,3), "
            "at DATETIME(3), d DATE, note VARCHAR(20) CHARACTER SET latin1, doc BLOB)"
        )
        cur.execute("INSERT INTO t (big, amount, at, d, note, doc) VALUES (18446744073709551615, 1.5, "
                    "'2024-01-02 03:04:05.678', '2024-02-29', 'x', 'bin')")  # fmt: skip
        assert cur.lastrowid == 1
        cur.execute("INSERT INTO t (big) VALUES (1), (2)")
        assert cur.lastrowid == 2 and cur.rowcount == 2  # the backend's LAST_INSERT_ID: the first of the batch
        cur.execute("INSERT INTO t (note) VALUES ('a long value longer than twenty')")
        assert conn._result.warning_count == 1  # the backend's warning, and SHOW WARNINGS has it
        cur.execute("SHOW WARNINGS")
        assert cur.fetchall()[0][1] == 1265
        cur.execute(sql)
        via_fe = (cur.description, cur.fetchall())
    with contextlib.closing(mariadb.connect()) as direct, direct.cursor() as cur:
        cur.execute(sql)
        assert via_fe == (cur.description, cur.fetchall())


def test_the_grpc_api_over_the_mysql_backend(mcluster: Cluster) -> None:
    with Client(mcluster.fes[2].address) as client, client.session() as s:
        s.execute("CREATE DATABASE IF NOT EXISTS grpc1")
        s.execute("USE grpc1")
        s.execute("CREATE TABLE IF NOT EXISTS t (a INT, b VARCHAR(10), c DOUBLE, d DECIMAL(5,2), e VARBINARY(4))")
        s.execute("DELETE FROM t")
        inserted = s.execute("INSERT INTO t VALUES (1, 'x', 0.5, 1.25, 'ab'), (2, NULL, NULL, NULL, NULL)")
        assert inserted.affected_rows == 2
        result = s.execute("SELECT a, b, c, d, e FROM t ORDER BY a")
        assert result.columns == ["a", "b", "c", "d", "e"]
        assert result.rows == [(1, "x", 0.5, "1.25", b"ab"), (2, None, None, None, None)]


def test_information_schema_is_the_backends_own_for_an_admin(mcluster: Cluster, mariadb: MariaDB) -> None:
    fe = mcluster.fes[0]
    fe.query("CREATE DATABASE IF NOT EXISTS isdb")
    fe.query("CREATE TABLE IF NOT EXISTS isdb.t (amount DECIMAL(12,3) NOT NULL)")
    sql = (
        "SELECT c.data_type, c.numeric_precision, c.numeric_scale, t.engine FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'isdb' AND c.table_name = 't'"
    )
    assert fe.query(sql) == mariadb.query(sql) == (("decimal", 12, 3, "InnoDB"),)
    # Syntax sqlglot does not know is the server's to judge (an admin's statement naming FE words).
    maria_only = "SELECT schema_name FROM information_schema.schemata WHERE schema_name='isdb' LIMIT ROWS EXAMINED 99"
    assert fe.query(maria_only) == mariadb.query(maria_only) == (("isdb",),)
    assert fe.query("SELECT COUNT(*) FROM information_schema.routines") == mariadb.query(
        "SELECT COUNT(*) FROM information_schema.routines"
    )
    ids = {row[0] for row in fe.query("SELECT id FROM information_schema.processlist")}  # still the FE's
    assert all(i >= 1 << 20 for i in ids)  # connection ids of FEs (server id in bits 20..30), not MariaDB's


def test_prepared_statements_over_the_binary_protocol(mcluster: Cluster, mariadb: MariaDB) -> None:
    mysql_connector = pytest.importorskip("mysql.connector")
    fe = mcluster.fes[1]
    fe.query("CREATE DATABASE IF NOT EXISTS prep")
    fe.query("CREATE TABLE IF NOT EXISTS prep.p (id INT PRIMARY KEY, at DATETIME, d DATE, x DOUBLE, s VARCHAR(9))")
    fe.query("REPLACE INTO prep.p VALUES (1, '2024-01-02 03:04:05', '2024-02-29', 2.5, 'abc')")
    rows = []
    for port in (fe.mysql_port, mariadb.port):
        conn = mysql_connector.connect(host="127.0.0.1", port=port, user="root", password="", use_pure=True)
        try:
            cur = conn.cursor(prepared=True)
            cur.execute("SELECT id, at, d, x, s FROM prep.p WHERE id = ?", (1,))
            rows.append(cur.fetchall())
        finally:
            conn.close()
    assert rows[0] == rows[1]


def test_transactions_and_session_variables_are_the_backends(mcluster: Cluster, mariadb: MariaDB) -> None:
    fe = mcluster.fes[2]
    fe.query("CREATE DATABASE IF NOT EXISTS tx")
    fe.query("CREATE TABLE IF NOT EXISTS tx.t (id INT PRIMARY KEY)")
    fe.query("DELETE FROM tx.t")
    with contextlib.closing(fe.connect(database="tx")) as conn, conn.cursor() as cur:
        conn.autocommit(False)
        cur.execute("INSERT INTO t VALUES (1)")
        assert conn.server_status & 1  # SERVER_STATUS_IN_TRANS, from the backend
        assert mariadb.query("SELECT COUNT(*) FROM tx.t") == ((0,),)  # not committed yet
        conn.rollback()
        cur.execute("INSERT INTO t VALUES (2)")
        conn.commit()
        cur.execute("SET sql_mode = 'NO_ENGINE_SUBSTITUTION'")
        cur.execute("SELECT @@sql_mode")
        assert cur.fetchall() == (("NO_ENGINE_SUBSTITUTION",),)
        cur.execute("SET @v = 41")
        cur.execute("SELECT @v + 1")
        assert cur.fetchall() == ((42,),)
        # Mixed: NAMES stays at the FE, sql_mode reaches the backend's session.
        cur.execute("SET NAMES utf8mb4, sql_mode = 'ANSI_QUOTES'")
        assert fails(conn, 'SELECT "a" FROM t')[0] == 1054  # "a" is a column name now, on the backend
        cur.execute("SELECT 'é€😀', CHAR_LENGTH('é€😀')")
        assert cur.fetchall() == (("é€😀", 3),)
    assert mariadb.query("SELECT id FROM tx.t") == ((2,),)


async def test_tls_to_the_backend(mariadb: MariaDB) -> None:
    """``?ssl=1``: the service account may be one that MariaDB admits over TLS only."""
    if mariadb.query("SELECT @@have_ssl")[0][0] != "YES":
        pytest.skip("the private MariaDB has no TLS (no openssl to make a certificate)")
    mariadb.query("CREATE USER IF NOT EXISTS 'tlsonly'@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL")
    mariadb.query("GRANT ALL ON *.* TO 'tlsonly'@'%'")
    plain = MysqlBackend(f"mysql://tlsonly:tls-pw@127.0.0.1:{mariadb.port}")
    secure = MysqlBackend(f"mariadb://tlsonly:tls-pw@127.0.0.1:{mariadb.port}?ssl=1")
    try:
        with pytest.raises(SqlError) as refused:
            await plain.session().execute("SELECT 1", None)
        assert refused.value.code == 1045
        session = secure.session()
        result = await session.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'", None)
        assert result.rows[0][1]  # a cipher: the connection is encrypted
        session.close()
    finally:
        plain.shutdown()
        secure.shutdown()


# ------------------------------------------------------------ KILL stops the backend's work


def _admin(fe: Fe) -> pymysql.Connection:
    return fe.connect()


def test_kill_query_from_another_fe_stops_the_backend_statement(mcluster: Cluster, mariadb: MariaDB) -> None:
    a, b, _ = mcluster.fes
    with contextlib.closing(a.connect()) as victim, contextlib.closing(b.connect()) as killer:
        run = Running(victim, marker_sql("kq1"))
        thread = wait_backend_running(mariadb, "kq1")
        with killer.cursor() as cur:
            cur.execute(f"KILL QUERY {victim.thread_id()}")
        assert error_code(run.join()) == 1317
        wait_backend_stopped(mariadb, "kq1", 2)
        assert thread_exists(mariadb, thread)  # the connection stays, idle, and serves the next statement
        with victim.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID(), 6 * 7")
            assert cur.fetchall() == ((victim.thread_id(), 42),)


def test_kill_connection_kills_the_backend_connection(mcluster: Cluster, mariadb: MariaDB) -> None:
    a, b, _ = mcluster.fes
    victim = a.connect()
    with contextlib.closing(b.connect()) as killer:
        run = Running(victim, marker_sql("kc1"))
        thread = wait_backend_running(mariadb, "kc1")
        with killer.cursor() as cur:
            cur.execute(f"KILL CONNECTION {victim.thread_id()}")
        assert error_code(run.join()) in (2013, 2006)
        wait_for(lambda: not thread_exists(mariadb, thread), 3, what="the backend connection to go")


def test_a_client_gone_mid_statement_has_its_backend_statement_killed(mcluster: Cluster, mariadb: MariaDB) -> None:
    fe = mcluster.fes[0]
    victim = fe.connect()
    Running(victim, marker_sql("gone1"))
    wait_backend_running(mariadb, "gone1")
    sock = victim._sock
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)  # the client goes away (close alone waits for the reading thread)
    assert wait_backend_stopped(mariadb, "gone1", 1.0) < 1.0
    sock.close()


def test_a_statement_timeout_kills_the_backend_statement(mcluster: Cluster, mariadb: MariaDB) -> None:
    fe = mcluster.fes[1]
    with contextlib.closing(fe.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("SET max_execution_time = 300")
        code, message = fails(conn, marker_sql("to1", 30))
        assert code == 3024 and "max_execution_time" in message
        wait_backend_stopped(mariadb, "to1", 2)


def test_a_transaction_survives_a_kill_query_as_on_the_backend(mcluster: Cluster, mariadb: MariaDB) -> None:
    a, b, _ = mcluster.fes
    a.query("CREATE DATABASE IF NOT EXISTS txk")
    a.query("CREATE TABLE IF NOT EXISTS txk.t (id INT PRIMARY KEY)")
    a.query("DELETE FROM txk.t")
    with contextlib.closing(a.connect(database="txk")) as victim, contextlib.closing(b.connect()) as killer:
        with victim.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO t VALUES (1)")
        run = Running(victim, marker_sql("txk1"))
        wait_backend_running(mariadb, "txk1")
        with killer.cursor() as cur:
            cur.execute(f"KILL QUERY {victim.thread_id()}")
        assert error_code(run.join()) == 1317
        # MariaDB keeps the transaction open after KILL QUERY: so does the FE.
        assert victim.server_status & 1 or _status_after(victim) & 1
        assert mariadb.query("SELECT COUNT(*) FROM txk.t") == ((0,),)
        with victim.cursor() as cur:
            cur.execute("COMMIT")
    assert mariadb.query("SELECT id FROM txk.t") == ((1,),)


def _status_after(conn: pymysql.Connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM DUAL WHERE 0")
    return int(conn.server_status)


@contextlib.contextmanager
def row_locked(server: MariaDB, db: str) -> Iterator[str]:
    """A row locked by a transaction straight on the server; yields a statement
    that waits for it (innodb_lock_wait_timeout, 50 s). The server does not
    notice that the client of such a wait went away (it does for SLEEP, after
    ~5 s), so only a KILL ends it early."""
    server.query(f"CREATE DATABASE IF NOT EXISTS {db}")
    server.query(f"CREATE TABLE IF NOT EXISTS {db}.t (id INT PRIMARY KEY) ENGINE=InnoDB")
    server.query(f"INSERT IGNORE INTO {db}.t VALUES (1)")
    holder = server.connect()
    try:
        holder.autocommit(False)
        with holder.cursor() as cur:
            cur.execute(f"SELECT * FROM {db}.t WHERE id = 1 FOR UPDATE")
        yield f"SELECT /* {db} */ * FROM {db}.t WHERE id = 1 FOR UPDATE"
    finally:
        holder.close()


@pytest.mark.slow
def test_a_dead_fes_backend_work_is_killed_when_its_lease_expires(redis_url: str, mariadb: MariaDB) -> None:
    cluster = new_cluster(redis_url, 2, backend=backend_url(mariadb), lease_ttl=2)
    try:
        doomed = cluster.fes[0]
        victim = doomed.connect()
        with row_locked(mariadb, "dead1") as waiting:
            Running(victim, waiting)
            thread = wait_backend_running(mariadb, "dead1")
            # The session's row, with its backend thread id, reaches the registry (written in the background).
            wait_for(lambda: _registered_thread(cluster, victim.thread_id()) == thread, 5, what="backend_thread row")
            doomed.signal(signal.SIGKILL)
            doomed.proc.wait(10)
            assert running_on_backend(mariadb, "dead1") == thread  # the server itself does not notice
            # The lease (2 s) expires; the survivor's next tick purges the dead FE and kills its backend threads.
            wait_for(lambda: not thread_exists(mariadb, thread), 10, what="the dead FE's backend thread to be killed")
    finally:
        cluster.stop()


def _registered_thread(cluster: Cluster, conn_id: int) -> int | None:
    with contextlib.closing(cluster.redis()) as r:
        raw = r.hget(Keys(cluster.name).conns, str(conn_id))
    return None if raw is None else int(json.loads(raw).get("backend_thread", 0))


@pytest.mark.slow
def test_a_graceful_stop_kills_what_still_runs_on_the_backend(redis_url: str, mariadb: MariaDB) -> None:
    cluster = new_cluster(redis_url, 1, backend=backend_url(mariadb), shutdown_grace=0.5)
    try:
        fe = cluster.fes[0]
        victim = fe.connect()
        with row_locked(mariadb, "stop1") as waiting:
            run = Running(victim, waiting)
            thread = wait_backend_running(mariadb, "stop1")
            fe.signal(signal.SIGTERM)
            assert error_code(run.join(15)) in (1053, 2013)
            fe.proc.wait(15)
            assert not thread_exists(mariadb, thread)
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_huge_result_streams_through_in_bounded_memory(mcluster: Cluster, mariadb: MariaDB) -> None:
    """5M rows (~0.6 GB of text rows) relayed as the server sends them: the FE
    holds a chunk at a time, never the result."""
    fe = mcluster.fes[0]
    fe.query("CREATE DATABASE IF NOT EXISTS caps")
    before = psutil.Process(fe.proc.pid).memory_info().rss
    peak = before
    with contextlib.closing(fe.connect(database="caps")) as conn, conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute("SELECT seq AS `cap1`, REPEAT('x', 100) FROM seq_1_to_5000000")
        n = 0
        for n, _ in enumerate(cur, 1):
            if n % 500_000 == 0:
                peak = max(peak, psutil.Process(fe.proc.pid).memory_info().rss)
        assert n == 5_000_000
    with contextlib.closing(fe.connect(database="caps")) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM seq_1_to_10")
        assert cur.fetchall() == ((10,),)
    assert peak - before < 64 << 20, f"the FE grew by {(peak - before) >> 20} MB relaying a 5M-row result"


# ------------------------------------------------------------ backend failure


@pytest.mark.slow
def test_a_backend_restart_gives_clear_errors_and_sessions_recover(redis_url: str) -> None:
    server = _mariadb()
    cluster = new_cluster(redis_url, 1, backend=backend_url(server))
    try:
        fe = cluster.fes[0]
        fe.query("CREATE DATABASE IF NOT EXISTS r")
        held = fe.connect()
        with held.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS r.t (id INT)")
            cur.execute("BEGIN")
            cur.execute("INSERT INTO r.t VALUES (1)")
        server.kill_server()
        # A session whose backend connection died ends with 2013, not a silent reconnect.
        code, message = fails(held, "INSERT INTO r.t VALUES (2)")
        assert code == 2013 and f"127.0.0.1:{server.port}" in message
        with pytest.raises(pymysql.err.MySQLError):
            held.ping(reconnect=False)
        # New sessions: a clear 2003 naming the backend; the FE's own statements still work.
        with contextlib.closing(fe.connect()) as conn:
            code, message = fails(conn, "SELECT * FROM r.t")
            assert code == 2003 and f"127.0.0.1:{server.port}" in message
            with conn.cursor() as cur:
                cur.execute("SHOW PROCESSLIST")
                assert any(row[1] == conn.thread_id() for row in cur.fetchall())
                cur.execute(f"SELECT id FROM information_schema.processlist WHERE id = {conn.thread_id()}")
                assert cur.fetchall() == ((conn.thread_id(),),)
                other = fe.connect()
                cur.execute(f"KILL {other.thread_id()}")  # KILL works with the backend away
                with pytest.raises(pymysql.err.MySQLError):
                    other.ping(reconnect=False)
            server.start_again()
            with conn.cursor() as cur:  # the same session recovers
                cur.execute("SELECT COUNT(*) FROM r.t")
                assert cur.fetchall() == ((0,),)  # the transaction died with its connection
    finally:
        cluster.stop()
        server.stop()


# ------------------------------------------------------------ the same SQL over both backends


def test_sql_behaves_the_same_over_both_backends(any_fe: Fe) -> None:
    fe = any_fe
    fe.query("DROP DATABASE IF EXISTS both1")
    fe.query("CREATE DATABASE both1")
    with contextlib.closing(fe.connect(database="both1")) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20) NOT NULL)")
        cur.execute("INSERT INTO t (name) VALUES ('a'), ('b'), ('c')")
        assert cur.rowcount == 3
        cur.execute("UPDATE t SET name = 'z' WHERE id >= 2")
        assert cur.rowcount == 2
        cur.execute("SELECT id, name FROM t ORDER BY id")
        assert cur.fetchall() == ((1, "a"), (2, "z"), (3, "z"))
        cur.execute("SELECT name, COUNT(*) FROM t GROUP BY name ORDER BY name")
        assert cur.fetchall() == (("a", 1), ("z", 2))
        assert fails(conn, "SELECT * FROM nope")[0] == 1146
        assert fails(conn, "INSERT INTO t (id, name) VALUES (1, 'dup')")[0] is not None  # 1062 over MySQL
        cur.execute("BEGIN")
        cur.execute("DELETE FROM t")
        cur.execute("ROLLBACK")
        cur.execute("SELECT COUNT(*) FROM t")
        assert cur.fetchall() == ((3,),)
        cur.execute("DESCRIBE t")
        assert [r[0] for r in cur.fetchall()] == ["id", "name"]
    fe.query("DROP DATABASE both1")


def test_a_set_the_backend_refuses_is_refused_at_once(mcluster: Cluster) -> None:
    """A SET is the server's: relayed as sent, it fails where MariaDB fails it,
    with MariaDB's own error, and has no effect."""
    with contextlib.closing(mcluster.fes[0].connect()) as conn:
        assert fails(conn, "SET time_zone = 'Nowhere/Atlantis'")[0] == 1298  # "Unknown or incorrect time zone"
        with conn.cursor() as cur:
            cur.execute("SELECT 1 + 1, @@time_zone")
            assert cur.fetchall() == ((2, "SYSTEM"),)
