"""A KILL never lies (issue 21, item 1): a statement answered as interrupted
had no effect, and a statement that took effect is answered as done, however
a KILL QUERY races it.

The race: one session runs ``BEGIN; UPDATE counter; COMMIT`` in a loop while
another client, through the other FE, fires ``KILL QUERY`` at it as fast as it
can. Afterwards the counter must equal the number of COMMITs answered OK:
one answered 1317 that committed anyway (a client retrying it would apply the
transaction twice) makes it larger, one answered OK that did not commit makes
it smaller. Before the relay, every COMMIT answered 1317 over MariaDB had
committed (260 of 260).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pymysql
import pytest

from tests.mariadb import MariaDB
from tests.support import Cluster, error_code, new_cluster

COMMITS = 2_000


@pytest.fixture(scope="module")
def relay_cluster(redis_url: str, backend_mariadb: MariaDB) -> Iterator[Cluster]:
    cluster = new_cluster(redis_url, 2, backend=f"mysql://root@127.0.0.1:{backend_mariadb.port}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _execute(conn: pymysql.Connection, sql: str) -> int | None:
    """None if it succeeded, else the MySQL error code."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    except pymysql.err.MySQLError as e:
        return error_code(e)
    return None


def _roll_back(conn: pymysql.Connection) -> None:
    """A transaction whose statement failed is rolled back (a KILL may hit the ROLLBACK too)."""
    while _execute(conn, "ROLLBACK") is not None:
        pass


@pytest.fixture(params=["sqlite", "mysql"])
def pair(request: pytest.FixtureRequest) -> Cluster:
    """Two FEs: over one SQLite directory (cluster3's first two share it) or over MariaDB."""
    return request.getfixturevalue("cluster3" if request.param == "sqlite" else "relay_cluster")


@pytest.mark.slow
def test_a_commit_answered_interrupted_never_committed(pair: Cluster) -> None:
    a, b = pair.fes[:2]
    a.query("CREATE DATABASE IF NOT EXISTS truth")
    a.query("CREATE TABLE IF NOT EXISTS truth.counter (id INT PRIMARY KEY, n INT NOT NULL)")
    a.query("REPLACE INTO truth.counter VALUES (1, 0)")
    victim = a.connect(database="truth")
    victim_id = victim.thread_id()
    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        with contextlib.closing(b.connect()) as conn, conn.cursor() as cur:
            while not stop.is_set():
                with contextlib.suppress(pymysql.err.MySQLError):
                    cur.execute(f"KILL QUERY {victim_id}")
                    kills += 1

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    committed = interrupted_commits = interrupted_updates = 0
    try:
        for i in range(COMMITS):
            if _execute(victim, "BEGIN") is not None:
                _roll_back(victim)
                continue
            # Every other UPDATE lasts a millisecond, so KILLs also land inside statements.
            slow = " AND SLEEP(0.001) = 0" if i % 2 else ""
            code = _execute(victim, f"UPDATE counter SET n = n + 1 WHERE id = 1{slow}")
            if code is not None:
                assert code == 1317, code
                interrupted_updates += 1
                _roll_back(victim)
                continue
            code = _execute(victim, "COMMIT")
            if code is None:
                committed += 1
            else:
                assert code == 1317, code
                interrupted_commits += 1
                _roll_back(victim)
    finally:
        stop.set()
        thread.join(10)
        victim.close()
    (n,) = a.query("SELECT n FROM truth.counter WHERE id = 1")[0]
    print(
        f"\n{COMMITS} transactions, {kills} KILL QUERYs: {committed} COMMITs answered OK, "
        f"{interrupted_commits} answered 1317, {interrupted_updates} UPDATEs answered 1317; counter {n}"
    )
    assert interrupted_commits + interrupted_updates > 0, "the KILLs never hit: the race was not run"
    assert n == committed, f"{n - committed} transactions answered as interrupted were committed"
