"""The embedded backend as tools meet it (issue 22): what a client sees
through an FE on SQLite, compared with what the same client sees from a
private MariaDB (the reference: every expectation here is first checked
against it). OK packets (affected rows, info strings), literals and long
data, DDL tools emit, the metadata they read, expressions and labels."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from coordinator.errors import SqlError
from frontend.sqlite_backend import SqliteBackend
from tests.mariadb import MariaDB
from tests.support import Fe

Connect = Callable[..., pymysql.Connection]


@pytest.fixture(params=["fecluster", "mariadb"])
def target(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """A fresh database on an FE over the embedded backend, or on the reference
    MariaDB; ``connect(**kw)`` opens a pymysql connection to it."""
    server: Fe | MariaDB = request.getfixturevalue("fe" if request.param == "fecluster" else "mariadb")
    name = f"f{uuid.uuid4().hex[:8]}"
    with contextlib.closing(server.connect()) as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")

    def connect(**kw: Any) -> pymysql.Connection:
        return server.connect(database=name, **kw)

    yield connect
    with contextlib.closing(server.connect()) as c, c.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


def _ok(cur: pymysql.cursors.Cursor, sql: str) -> tuple[int, str]:
    """(affected rows, info string) of a statement's OK packet."""
    affected = cur.execute(sql)
    result = cur.connection._result
    info = (result.message or b"") if result is not None else b""
    if info and info[0] == len(info) - 1:  # MariaDB with CLIENT_SESSION_TRACK: a length-encoded string
        info = info[1:]
    return affected, info.decode()


# ------------------------------------------------------------------ OK packets


def test_affected_rows_and_info_strings(target: Connect) -> None:
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT, s VARCHAR(20))")
        assert _ok(cur, "INSERT INTO t VALUES (1,1,'x'),(2,2,'y'),(3,3,'z')") == (
            3,
            "Records: 3  Duplicates: 0  Warnings: 0",
        )
        assert _ok(cur, "INSERT INTO t VALUES (4,1,'x')") == (1, "")
        assert _ok(cur, "UPDATE t SET a = 1") == (2, "Rows matched: 4  Changed: 2  Warnings: 0")
        # a value equal after the column's conversion is no change
        assert _ok(cur, "UPDATE t SET a = '1', s = 'x' WHERE id = 1") == (0, "Rows matched: 1  Changed: 0  Warnings: 0")
        assert _ok(cur, "UPDATE t SET a = a + 1 WHERE id > 2") == (2, "Rows matched: 2  Changed: 2  Warnings: 0")
        assert _ok(cur, "INSERT INTO t SELECT id + 10, a, s FROM t") == (4, "Records: 4  Duplicates: 0  Warnings: 0")
        assert _ok(cur, "DELETE FROM t WHERE id > 10") == (4, "")
        c.begin()
        assert _ok(cur, "UPDATE t SET a = 5 WHERE id <= 2") == (2, "Rows matched: 2  Changed: 2  Warnings: 0")
        assert _ok(cur, "UPDATE t SET a = 5 WHERE id <= 2") == (0, "Rows matched: 2  Changed: 0  Warnings: 0")
        c.rollback()
        cur.execute("SELECT a FROM t ORDER BY id")
        assert cur.fetchall() == ((1,), (1,), (2,), (2,))


def test_long_data_blob_is_stored(target: Connect) -> None:
    """COM_STMT_SEND_LONG_DATA (mysql-connector sends a file-like parameter that way)."""
    mysql_connector = pytest.importorskip("mysql.connector")
    import io

    with contextlib.closing(target()) as c:
        port, db = c.port, c.db.decode()  # type: ignore[union-attr]
        c.cursor().execute("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)")
    data = bytes(range(256)) * 300
    conn = mysql_connector.connect(
        host="127.0.0.1", port=port, user="root", password="", database=db, use_pure=True, ssl_disabled=True
    )
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("INSERT INTO blobs VALUES (?, ?)", (1, io.BytesIO(data)))
        conn.commit()
        cur.execute("SELECT b FROM blobs WHERE id = ?", (1,))
        assert bytes(cur.fetchall()[0][0]) == data
    finally:
        conn.close()


# ------------------------------------------------------------------ in process: the backend's own answers


async def _session_results(tmp_path: Path, statements: list[str]) -> list[Any]:
    backend = SqliteBackend(tmp_path)
    await backend.create_database("d", False)
    session = backend.session()
    out: list[Any] = []
    try:
        for sql in statements:
            try:
                out.append(await session.execute(sql, "d"))
            except SqlError as e:
                out.append(e)
    finally:
        session.close()
        backend.shutdown()
    return out


def test_update_found_rows_for_client_found_rows(tmp_path: Path) -> None:
    """``Result.found_rows``: the rows matched, what a CLIENT_FOUND_ROWS client is told."""
    results = asyncio.run(
        _session_results(
            tmp_path,
            [
                "CREATE TABLE t (id INT PRIMARY KEY, a INT)",
                "INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)",
                "UPDATE t SET a = 1",
                "CREATE TEMP TRIGGER fe_changes AFTER UPDATE ON t BEGIN SELECT 1; END",
            ],
        )
    )
    update = results[2]
    assert (update.affected_rows, update.found_rows) == (2, 3)
    assert isinstance(results[3], SqlError)  # the backend's own trigger name is not the user's


def test_update_changes_cost(tmp_path: Path) -> None:
    """The changed-rows count (a temporary trigger around each UPDATE) stays cheap."""

    async def run() -> float:
        backend = SqliteBackend(tmp_path)
        await backend.create_database("d", False)
        session = backend.session()
        try:
            await session.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT)", "d")
            await session.execute("INSERT INTO t VALUES " + ",".join(f"({i}, 0)" for i in range(100)), "d")
            start = time.perf_counter()
            for i in range(300):
                await session.execute(f"UPDATE t SET a = {i} WHERE id = {i % 100}", "d")
            return (time.perf_counter() - start) / 300
        finally:
            session.close()
            backend.shutdown()

    assert asyncio.run(run()) < 0.01
