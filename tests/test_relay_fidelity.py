"""What a client sees through an FE over MariaDB is what it sees from MariaDB
itself (issue 20, "Fidelity"): the FE relays the client's bytes and the
server's packets, so labels, DESCRIBE, SHOW CREATE TABLE, warnings, info
strings, found rows and READ ONLY behave as on the server, and mysqldump
dumps and restores through the FEs.

Every comparison is against the same private MariaDB reached directly, in
the same test.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import MySQLdb
import pymysql
import pytest

from tests.mariadb import MariaDB
from tests.support import Cluster, Fe, new_cluster

SCHEMA = [
    """CREATE TABLE parent (
        id INT UNSIGNED NOT NULL AUTO_INCREMENT COMMENT 'the key',
        name VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        price DECIMAL(12,4) NOT NULL DEFAULT 0.0000,
        photo BLOB,
        PRIMARY KEY (id),
        UNIQUE KEY by_name (name)
    ) ENGINE=InnoDB COMMENT='parents'""",
    """CREATE TABLE child (
        id BIGINT NOT NULL AUTO_INCREMENT,
        parent_id INT UNSIGNED NOT NULL,
        note TEXT COLLATE utf8mb4_unicode_ci,
        PRIMARY KEY (id),
        KEY by_parent (parent_id),
        CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE
    ) ENGINE=InnoDB""",
    "INSERT INTO parent (name, price, photo) VALUES ('a', 1.5, x'00ff10'), ('b', 2.25, NULL), ('c''q', -3, '')",
    "INSERT INTO child (parent_id, note) VALUES (1, 'x\\ny'), (1, NULL), (3, 'z')",
]


@pytest.fixture(scope="module")
def relay_cluster(redis_url: str, backend_mariadb: MariaDB) -> Iterator[Cluster]:
    cluster = new_cluster(redis_url, 2, backend=f"mysql://root@127.0.0.1:{backend_mariadb.port}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def source(relay_cluster: Cluster) -> Iterator[str]:
    fe = relay_cluster.fes[0]
    db = f"src{uuid.uuid4().hex[:6]}"
    fe.query(f"CREATE DATABASE {db}")
    with contextlib.closing(fe.connect(database=db)) as conn, conn.cursor() as cur:
        for sql in SCHEMA:
            cur.execute(sql)
        conn.commit()
    yield db
    fe.query(f"DROP DATABASE IF EXISTS {db}")


def _direct(server: MariaDB, **kw: Any) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="", **kw)


def _client(port: int, *args: str) -> list[str]:
    return ["--host=127.0.0.1", f"--port={port}", "--user=root", "--protocol=TCP", *args]


def _shape(server_or_fe: Any, db: str) -> tuple[list[Any], list[Any]]:
    """SHOW CREATE TABLE and CHECKSUM TABLE of both tables."""
    conn = server_or_fe.connect(database=db) if isinstance(server_or_fe, Fe) else _direct(server_or_fe, database=db)
    with contextlib.closing(conn), conn.cursor() as cur:
        creates, sums = [], []
        for table in ("parent", "child"):
            cur.execute(f"SHOW CREATE TABLE {table}")
            creates.append(cur.fetchone()[1])
            cur.execute(f"CHECKSUM TABLE {table}")
            sums.append(cur.fetchone()[1])
    return creates, sums


def test_mysqldump_through_one_fe_restores_through_another(
    relay_cluster: Cluster, backend_mariadb: MariaDB, source: str
) -> None:
    a, b = relay_cluster.fes
    dump = subprocess.run(
        ["mysqldump", *_client(a.mysql_port, "--routines", "--single-transaction", source)],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert b"FOREIGN KEY" in dump and b"AUTO_INCREMENT=" in dump and b"COLLATE" in dump
    copy = f"copy{uuid.uuid4().hex[:6]}"
    b.query(f"CREATE DATABASE {copy}")
    try:
        subprocess.run(
            ["mariadb", *_client(b.mysql_port, copy)], input=dump, capture_output=True, timeout=60, check=True
        )
        assert _shape(b, copy) == _shape(backend_mariadb, source)
    finally:
        b.query(f"DROP DATABASE IF EXISTS {copy}")


def test_a_dump_made_by_mariadb_loads_through_an_fe(
    relay_cluster: Cluster, backend_mariadb: MariaDB, source: str
) -> None:
    dump = subprocess.run(
        ["mariadb-dump", *_client(backend_mariadb.port, "--add-drop-table", "--routines", source)],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert b"/*!40101" in dump  # executable comments, which the FE relays for the server to read
    copy = f"load{uuid.uuid4().hex[:6]}"
    fe = relay_cluster.fes[1]
    fe.query(f"CREATE DATABASE {copy}")
    try:
        done = subprocess.run(["mariadb", *_client(fe.mysql_port, copy)], input=dump, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert _shape(fe, copy) == _shape(backend_mariadb, source)
    finally:
        fe.query(f"DROP DATABASE IF EXISTS {copy}")


STATEMENTS = [
    "SELECT price*2, DATABASE(), name IS NOT NULL, CONCAT(name, 'x'), COALESCE(photo, 'none') FROM parent ORDER BY id",
    "DESCRIBE parent",
    "SHOW CREATE TABLE child",
    "SHOW FULL COLUMNS FROM parent",
    "SELECT CAST('abc' AS SIGNED), 1/0",
    "SHOW WARNINGS",
    "UPDATE parent SET price = price WHERE id < 3",
    "INSERT INTO child (parent_id) VALUES (1), (2)",
    "SELECT nope FROM parent",
    "SHOW WARNINGS",
]


def _answers(conn: Any, statements: list[str]) -> list[Any]:
    """What a client sees of each statement: labels, rows, affected rows, info, warnings, or the error."""
    seen: list[Any] = []
    for sql in statements:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            labels = [d[0] for d in cur.description] if cur.description else None
            rows = cur.fetchall() if cur.description else None
            info = conn.info() if hasattr(conn, "info") else None
            seen.append((sql, labels, rows, cur.rowcount, info, conn.warning_count()))
        except MySQLdb.MySQLError as e:
            seen.append((sql, "error", e.args))
        finally:
            cur.close()
    return seen


@pytest.mark.parametrize("found_rows", [False, True])
def test_answers_equal_mariadbs_for_mysqlclient(
    relay_cluster: Cluster, backend_mariadb: MariaDB, source: str, found_rows: bool
) -> None:
    flags = {"client_flag": 2} if found_rows else {}  # CLIENT_FOUND_ROWS
    fe = relay_cluster.fes[0]
    through = MySQLdb.connect(host="127.0.0.1", port=fe.mysql_port, user="root", db=source, **flags)
    direct = MySQLdb.connect(host="127.0.0.1", port=backend_mariadb.port, user="root", db=source, **flags)
    try:
        for conn in (through, direct):
            conn.autocommit(True)
        seen_through = _answers(through, STATEMENTS)
        direct.cursor().execute("DELETE FROM child WHERE id > 3")  # what the first run added, added again
        direct.cursor().execute("ALTER TABLE child AUTO_INCREMENT = 4")
        assert seen_through == _answers(direct, STATEMENTS)
    finally:
        through.close()
        direct.close()


def test_read_only_transactions_refuse_writes_as_mariadb(relay_cluster: Cluster, source: str) -> None:
    with contextlib.closing(relay_cluster.fes[0].connect(database=source)) as conn, conn.cursor() as cur:
        cur.execute("START TRANSACTION READ ONLY")
        with pytest.raises(pymysql.err.MySQLError) as e:
            cur.execute("UPDATE parent SET price = 0")
        assert e.value.args[0] == 1792
        cur.execute("ROLLBACK")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prepared", "text"])
def test_sysbench_runs_without_errors_through_haproxy(relay_cluster: Cluster, mode: str) -> None:
    """sysbench's default mode is prepared statements (COM_STMT_*): before the
    relay it stopped at once with 2014 "Commands out of sync"."""
    sysbench = shutil.which("sysbench")
    if sysbench is None:
        pytest.skip("no sysbench (Debian: apt-get install sysbench; .ci/run installs it)")
    from tests.haproxy import HAProxy

    fe = relay_cluster.fes[0]
    fe.query("CREATE DATABASE IF NOT EXISTS sbtest")
    with HAProxy([f.mysql_port for f in relay_cluster.fes]) as balancer:
        common = [
            sysbench, "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={balancer.port}",
            "--mysql-user=root", "--mysql-password=", "--mysql-db=sbtest", "--tables=2", "--table-size=10000",
            "--threads=4", "--time=3",
        ]  # fmt: skip
        if mode == "text":
            common.append("--db-ps-mode=disable")
        subprocess.run([*common, "oltp_read_write", "cleanup"], capture_output=True, timeout=60)
        subprocess.run([*common, "oltp_read_write", "prepare"], capture_output=True, timeout=120, check=True)
        for test in ("oltp_point_select", "oltp_read_write"):
            done = subprocess.run([*common, test, "run"], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
            transactions = int(re.search(r"transactions:\s+(\d+)", done.stdout).group(1))  # type: ignore[union-attr]
            ignored = int(re.search(r"ignored errors:\s+(\d+)", done.stdout).group(1))  # type: ignore[union-attr]
            # sysbench retries only InnoDB's own deadlocks and lock waits (1213, 1205): the server's
            # answers under contention, relayed as they are; anything else stops it (exit != 0).
            assert transactions > 0 and ignored * 100 <= transactions, done.stdout[-1500:]
