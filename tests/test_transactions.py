"""Real transactions on the embedded backend (issue 13, item 4): BEGIN/START
TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, ROLLBACK TO, RELEASE and
``autocommit=0``, through PyMySQL and SQLAlchemy; the session's transaction
state as the wire layer will read it. The process-level tests run over both
backends (``any_fe``: SQLite, and a MariaDB behind ``--backend mysql://``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from frontend.sqlite_backend import SqliteBackend
from tests.support import Fe, fails


def _run(conn: pymysql.Connection, sql: str) -> tuple[tuple[object, ...], ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


@pytest.fixture
def fe(any_fe: Fe) -> Fe:
    return any_fe


@pytest.fixture
def db(fe: Fe) -> Iterator[str]:
    name = f"tx{uuid.uuid4().hex[:8]}"
    fe.query(f"CREATE DATABASE {name}")
    fe.query(f"CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(20))")
    yield name
    fe.query(f"DROP DATABASE IF EXISTS {name}")


def _ids(fe: Fe, db: str) -> list[int]:
    return [r[0] for r in fe.query(f"SELECT id FROM {db}.t ORDER BY id")]


def test_autocommit_0_then_rollback_leaves_no_rows(fe: Fe, db: str) -> None:
    """Issue 13: after autocommit=0 ... ROLLBACK the rows were still there."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(conn, "SET autocommit = 0")
        _run(conn, "INSERT INTO t VALUES (1, 'a')")
        _run(conn, "INSERT INTO t VALUES (2, 'b')")
        assert _run(conn, "SELECT COUNT(*) FROM t") == ((2,),)  # its own writes are visible to it
        assert _ids(fe, db) == []  # and to nobody else before COMMIT
        conn.rollback()
        assert _run(conn, "SELECT COUNT(*) FROM t") == ((0,),)
        _run(conn, "INSERT INTO t VALUES (3, 'c')")
        conn.commit()
        _run(conn, "INSERT INTO t VALUES (4, 'd')")  # a new transaction began by itself
        _run(conn, "SET autocommit = 1")  # which this commits, as in MySQL
    assert _ids(fe, db) == [3, 4]


def test_pymysql_autocommit_false(fe: Fe, db: str) -> None:
    conn = pymysql.connect(
        host="127.0.0.1", port=fe.mysql_port, user="root", password="", database=db, autocommit=False
    )
    with contextlib.closing(conn):
        _run(conn, "INSERT INTO t VALUES (1, 'a')")
        conn.rollback()
        _run(conn, "INSERT INTO t VALUES (2, 'b')")
    assert _ids(fe, db) == []  # closing without COMMIT rolls back


@pytest.mark.parametrize("begin", ["BEGIN", "START TRANSACTION", "begin work", "START TRANSACTION READ WRITE"])
def test_begin_then_rollback_leaves_no_rows(fe: Fe, db: str, begin: str) -> None:
    """Issue 13: after BEGIN ... ROLLBACK the rows were still there."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(conn, begin)
        _run(conn, "INSERT INTO t VALUES (1, 'a')")
        _run(conn, "UPDATE t SET v = 'x'")
        _run(conn, "ROLLBACK")
        assert _run(conn, "SELECT COUNT(*) FROM t") == ((0,),)
        _run(conn, begin)
        _run(conn, "INSERT INTO t VALUES (2, 'b')")
        assert _ids(fe, db) == []
        _run(conn, "COMMIT")
        _run(conn, "INSERT INTO t VALUES (3, 'c')")  # autocommit again after COMMIT
        _run(conn, "ROLLBACK")  # nothing open: no effect
    assert _ids(fe, db) == [2, 3]


def test_savepoints(fe: Fe, db: str) -> None:
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(conn, "BEGIN")
        _run(conn, "INSERT INTO t VALUES (1, 'a')")
        _run(conn, "SAVEPOINT s1")
        _run(conn, "INSERT INTO t VALUES (2, 'b')")
        _run(conn, "SAVEPOINT s2")
        _run(conn, "INSERT INTO t VALUES (3, 'c')")
        _run(conn, "ROLLBACK TO SAVEPOINT s2")
        _run(conn, "RELEASE SAVEPOINT s2")
        assert fails(conn, "ROLLBACK TO s2") == (1305, "SAVEPOINT s2 does not exist")
        _run(conn, "ROLLBACK WORK TO s1")
        _run(conn, "INSERT INTO t VALUES (4, 'd')")
        _run(conn, "COMMIT")
    assert _ids(fe, db) == [1, 4]


def test_a_transaction_keeps_to_the_databases_it_began_with(fe: Fe, db: str) -> None:
    if fe.flags["backend"].startswith("mysql"):
        pytest.skip("SQLite's limit (ATTACH outside transactions); MySQL commits DDL implicitly")
    other = f"tx{uuid.uuid4().hex[:8]}"
    fe.query(f"CREATE DATABASE {other}")
    try:
        with contextlib.closing(fe.connect(database=db)) as conn:
            _run(conn, "BEGIN")
            _run(conn, "INSERT INTO t VALUES (1, 'a')")
            code, message = fails(conn, f"CREATE TABLE {other}.u (x INT)")
            assert code == 1105 and "COMMIT or ROLLBACK first" in message
            _run(conn, "ROLLBACK")
            _run(conn, f"CREATE TABLE {other}.u (x INT)")
    finally:
        fe.query(f"DROP DATABASE {other}")


def test_sqlalchemy_session_rollback(fe: Fe, db: str) -> None:
    """Issue 13: SQLAlchemy's session.rollback() left the rows."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy import orm

    engine = sqlalchemy.create_engine(f"mysql+pymysql://root:@127.0.0.1:{fe.mysql_port}/{db}")
    try:
        with orm.Session(engine) as session:
            session.execute(sqlalchemy.text("INSERT INTO t VALUES (1, 'a')"))
            session.execute(sqlalchemy.text("INSERT INTO t VALUES (2, 'b')"))
            session.rollback()
            session.execute(sqlalchemy.text("INSERT INTO t VALUES (3, 'c')"))
            session.commit()
            with session.begin_nested():
                session.execute(sqlalchemy.text("INSERT INTO t VALUES (4, 'd')"))
            nested = session.begin_nested()
            session.execute(sqlalchemy.text("INSERT INTO t VALUES (5, 'e')"))
            nested.rollback()
            session.commit()
        # VERSION() was SQLite's "3.40.1"; over MariaDB it is the server's own
        assert engine.dialect.server_version_info[:1] in ((5,), (10,), (11,))
    finally:
        engine.dispose()
    assert _ids(fe, db) == [3, 4]


async def test_the_session_state_for_the_wire_layer(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path)
    await backend.create_database("d", False)
    session = backend.session()
    try:
        await session.execute("CREATE TABLE t (id INT)", "d")
        assert not session.in_transaction and session.autocommit
        await session.begin()
        assert session.in_transaction
        await session.execute("INSERT INTO t VALUES (1)", "d")
        assert session.in_transaction
        await session.rollback()
        assert not session.in_transaction
        await session.set_autocommit(False)
        await session.execute("SELECT * FROM t", "d")
        assert session.in_transaction and not session.autocommit
        await session.set_autocommit(True)
        assert not session.in_transaction
    finally:
        session.close()
        backend.shutdown()
