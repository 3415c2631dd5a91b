"""Issue 22: a transaction whose read snapshot another FE's writer overtook
(SQLite's SQLITE_BUSY_SNAPSHOT) on a shared embedded directory. Its first
write begins it again with the write lock and runs on the latest committed
rows, as InnoDB's writes do (no 1213); from its first write on it holds the
write lock until COMMIT, so nobody overtakes it again."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support import Cluster

DB = "ovt"


@pytest.fixture
def fes(make_cluster: Callable[..., Cluster], tmp_path: Path) -> Iterator[Cluster]:
    cluster = make_cluster(2, backend=f"sqlite://{tmp_path / 'shared'}")
    with contextlib.closing(cluster.fes[0].connect()) as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB}")
        cur.execute(f"USE {DB}")
        cur.execute("CREATE TABLE acc (id INT PRIMARY KEY, bal INT NOT NULL)")
        cur.execute("INSERT INTO acc VALUES (1, 100), (2, 200)")
    yield cluster


def _rows(conn: pymysql.Connection) -> list[tuple[int, int]]:
    with conn.cursor() as cur:
        cur.execute("SELECT id, bal FROM acc ORDER BY id")
        return [tuple(r) for r in cur.fetchall()]


def test_first_write_after_being_overtaken_succeeds_on_the_latest_rows(fes: Cluster) -> None:
    a = fes.fes[0].connect(database=DB)
    b = fes.fes[1].connect(database=DB)
    with contextlib.closing(a), contextlib.closing(b), a.cursor() as ca, b.cursor() as cb:
        ca.execute("BEGIN")
        ca.execute("SELECT bal FROM acc WHERE id = 1")
        assert ca.fetchall() == ((100,),)  # A's snapshot
        cb.execute("UPDATE acc SET bal = bal + 10 WHERE id = 1")  # B commits on the other FE
        ca.execute("SELECT bal FROM acc WHERE id = 1")
        assert ca.fetchall() == ((100,),)  # still A's snapshot (REPEATABLE READ until the first write)
        assert ca.execute("UPDATE acc SET bal = bal + 1 WHERE id = 1") == 1  # was 1213
        ca.execute("SELECT bal FROM acc ORDER BY id")
        assert ca.fetchall() == ((111,), (200,))  # from the write on: the newer snapshot
        ca.execute("COMMIT")
        assert _rows(b) == [(1, 111), (2, 200)]  # B's change and A's, nothing lost


def test_a_transaction_that_wrote_holds_the_write_lock_until_commit(fes: Cluster) -> None:
    a = fes.fes[0].connect(database=DB)
    b = fes.fes[1].connect(database=DB)
    with contextlib.closing(a), contextlib.closing(b), a.cursor() as ca, b.cursor() as cb:
        cb.execute("SET SESSION innodb_lock_wait_timeout = 1")
        ca.execute("BEGIN")
        ca.execute("SELECT bal FROM acc WHERE id = 2")
        cb.execute("UPDATE acc SET bal = 0 WHERE id = 2")  # overtakes A
        ca.execute("UPDATE acc SET bal = bal + 5 WHERE id = 1")  # A begins again, now the writer
        for _ in range(2):
            with pytest.raises(pymysql.err.OperationalError) as e:
                cb.execute("UPDATE acc SET bal = 7 WHERE id = 2")
            assert e.value.args[0] == 1205  # B waits for A's lock: A cannot be overtaken again
        ca.execute("UPDATE acc SET bal = bal + 1 WHERE id = 2")  # A's second write: no 1213
        ca.execute("COMMIT")
        assert _rows(b) == [(1, 105), (2, 1)]
        cb.execute("UPDATE acc SET bal = 7 WHERE id = 2")  # the lock is free after COMMIT
        assert _rows(a) == [(1, 105), (2, 7)]


def test_savepoints_before_the_first_write_survive_the_new_beginning(fes: Cluster) -> None:
    a = fes.fes[0].connect(database=DB)
    b = fes.fes[1].connect(database=DB)
    with contextlib.closing(a), contextlib.closing(b), a.cursor() as ca, b.cursor() as cb:
        ca.execute("BEGIN")
        ca.execute("SELECT bal FROM acc")
        ca.execute("SAVEPOINT s1")
        cb.execute("UPDATE acc SET bal = 50 WHERE id = 1")
        ca.execute("UPDATE acc SET bal = bal * 2 WHERE id = 1")
        ca.execute("SAVEPOINT s2")
        ca.execute("UPDATE acc SET bal = 0 WHERE id = 2")
        ca.execute("ROLLBACK TO SAVEPOINT s2")
        ca.execute("COMMIT")
        assert _rows(b) == [(1, 100), (2, 200)]
        ca.execute("BEGIN")
        ca.execute("SELECT bal FROM acc")
        ca.execute("SAVEPOINT s1")
        cb.execute("UPDATE acc SET bal = 60 WHERE id = 1")
        ca.execute("UPDATE acc SET bal = bal + 1 WHERE id = 1")
        ca.execute("ROLLBACK TO SAVEPOINT s1")  # set again at the new beginning: undoes A's write only
        ca.execute("COMMIT")
        assert _rows(b) == [(1, 60), (2, 200)]


def test_select_for_update_reads_the_latest_rows_and_takes_the_write_lock(fes: Cluster) -> None:
    a = fes.fes[0].connect(database=DB)
    b = fes.fes[1].connect(database=DB)
    with contextlib.closing(a), contextlib.closing(b), a.cursor() as ca, b.cursor() as cb:
        cb.execute("SET SESSION innodb_lock_wait_timeout = 1")
        ca.execute("BEGIN")
        ca.execute("SELECT bal FROM acc WHERE id = 1")
        assert ca.fetchall() == ((100,),)
        cb.execute("UPDATE acc SET bal = 30 WHERE id = 1")
        ca.execute("SELECT bal FROM acc WHERE id = 1 FOR UPDATE")
        assert ca.fetchall() == ((30,),)  # a locking read reads the latest committed row, as InnoDB
        with pytest.raises(pymysql.err.OperationalError) as e:
            cb.execute("UPDATE acc SET bal = 31 WHERE id = 1")
        assert e.value.args[0] == 1205  # A holds the lock: its read stays true until it writes
        ca.execute("UPDATE acc SET bal = 30 - 10 WHERE id = 1")
        ca.execute("COMMIT")
        assert _rows(b) == [(1, 20), (2, 200)]


def test_the_new_beginning_waits_for_the_lock_and_times_out_as_mysql(fes: Cluster) -> None:
    a = fes.fes[0].connect(database=DB)
    b = fes.fes[1].connect(database=DB)
    with contextlib.closing(a), contextlib.closing(b), a.cursor() as ca, b.cursor() as cb:
        ca.execute("SET SESSION innodb_lock_wait_timeout = 1")
        ca.execute("BEGIN")
        ca.execute("SELECT bal FROM acc WHERE id = 1")
        cb.execute("UPDATE acc SET bal = 1 WHERE id = 1")  # overtakes A
        cb.execute("BEGIN")
        cb.execute("UPDATE acc SET bal = 2 WHERE id = 2")  # and holds the lock
        with pytest.raises(pymysql.err.OperationalError) as e:
            ca.execute("UPDATE acc SET bal = bal + 1 WHERE id = 1")
        assert e.value.args[0] == 1205
        ca.execute("SELECT COUNT(*) FROM acc")  # A's transaction goes on (the statement alone failed)
        cb.execute("COMMIT")
        ca.execute("UPDATE acc SET bal = bal + 1 WHERE id = 1")
        ca.execute("COMMIT")
        assert _rows(b) == [(1, 2), (2, 2)]
