"""The embedded backend as the engine (issues 20, 21, 22): SQLite's own
authorizer decides data access from the session user's grants; a statement
inside a transaction is undone alone (InnoDB's statement atomicity); writers
on one shared directory wait for each other as MySQL's do (1205, 1213); and
SQLite's errors arrive as MySQL's codes. In process, on real SQLite files."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.errors import SqlError
from coordinator.users import ADMIN_PRIV, UserRecord
from frontend.sqlite_backend import SqliteBackend, SqliteSession

BOB = UserRecord(
    "bob",
    grants=frozenset(
        {("d.pub", "SELECT_PRIV"), ("d.pub", "LOAD_PRIV"), ("d.pv", "SELECT_PRIV"), ("d.log", "SELECT_PRIV")}
    ),
)
ROOT = UserRecord("root", privileges=frozenset({ADMIN_PRIV}))


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path)
    for db in ("d", "other"):
        await backend.create_database(db, False)
    admin = backend.session()
    for sql in (
        "CREATE TABLE secret (id INT PRIMARY KEY, v VARCHAR(20))",
        "CREATE TABLE pub (id INT PRIMARY KEY, v VARCHAR(20))",
        "CREATE TABLE log (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO secret VALUES (1, 's1'), (2, 's2')",
        "INSERT INTO pub VALUES (1, 'p1'), (2, 'p2')",
        "CREATE VIEW pv AS SELECT * FROM secret",
    ):
        await admin.execute(sql, "d")
    await admin.execute("CREATE TABLE secret (id INT PRIMARY KEY, v VARCHAR(20))", "other")
    await admin.execute("INSERT INTO secret VALUES (7, 'o7')", "other")
    admin.close()
    yield backend
    backend.shutdown()


async def _rows(backend: SqliteBackend, sql: str, db: str = "d") -> list[tuple[Any, ...]]:
    session = backend.session()
    try:
        return list((await session.execute(sql, db)).rows)
    finally:
        session.close()


async def _fails(session: SqliteSession, sql: str, code: int, message: str | None = None, db: str = "d") -> SqlError:
    with pytest.raises(SqlError) as caught:
        await session.execute(sql, db)
    assert caught.value.code == code, caught.value
    if message is not None:
        assert caught.value.message == message
    return caught.value


def _denied(command: str, table: str) -> str:
    return f"{command} command denied to user 'bob'@'%' for table '{table}'"


# ------------------------------------------------------------------ the authorizer

SHADOWED = [
    ("SELECT * FROM secret WHERE 1 IN (WITH secret AS (SELECT 1) SELECT * FROM secret)", "SELECT"),
    ("SELECT * FROM pub WHERE id IN (SELECT id FROM secret)", "SELECT"),
    ("UPDATE secret SET v = 'x' WHERE 1 IN (WITH secret AS (SELECT 1) SELECT * FROM secret)", "UPDATE"),
    ("DELETE FROM secret WHERE 1 IN (WITH secret AS (SELECT 1) SELECT * FROM secret)", "DELETE"),
    ("INSERT INTO secret WITH secret AS (SELECT 9, 'x') SELECT * FROM secret", "INSERT"),
    ("INSERT INTO pub SELECT id + 10, v FROM secret", "SELECT"),
    ("UPDATE pub SET v = (SELECT v FROM secret WHERE id = 1) WHERE id = 1", "SELECT"),
    ("REPLACE INTO secret VALUES (1, 'x')", "INSERT"),
    ("SELECT * FROM pub JOIN secret ON pub.id = secret.id", "SELECT"),
    ("SELECT id FROM pub UNION SELECT id FROM secret", "SELECT"),
    ("SELECT * FROM other.secret", "SELECT"),
    ("SELECT * FROM pv", "SELECT"),  # views run with the invoker's rights: the base table is checked
    ("EXPLAIN SELECT * FROM secret", "SELECT"),
    ("SELECT COUNT(*) FROM secret", "SELECT"),
]


@pytest.mark.parametrize(("sql", "command"), SHADOWED)
async def test_sqlite_itself_checks_every_table_it_touches(backend: SqliteBackend, sql: str, command: str) -> None:
    session = backend.session(user=lambda: BOB)
    try:
        # The session's database attached (as after any earlier statement): SQLite then
        # finds a bare name the translation took for the CTE in it, as it did in the attack.
        await session.execute("SELECT 1 FROM pub", "d")
        await _fails(session, sql, 1142, _denied(command, "secret"))
    finally:
        session.close()
    assert await _rows(backend, "SELECT * FROM secret ORDER BY id") == [(1, "s1"), (2, "s2")]
    assert await _rows(backend, "SELECT * FROM pub ORDER BY id") == [(1, "p1"), (2, "p2")]
    assert await _rows(backend, "SELECT * FROM secret", "other") == [(7, "o7")]


async def test_granted_work_runs_and_a_cte_named_like_a_table_is_not_the_table(backend: SqliteBackend) -> None:
    session = backend.session(user=lambda: BOB)
    try:
        assert (await session.execute("WITH secret AS (SELECT 5 AS x) SELECT x FROM secret", "d")).rows == [(5,)]
        await session.execute("UPDATE pub SET v = 'p1!' WHERE id = 1", "d")
        assert (await session.execute_bound("SELECT v FROM pub WHERE id = ?", "d", [1])).rows == [("p1!",)]
        error = await _fails(session, "SELECT * FROM sqlite_master", 1044)
        assert error.message == "Access denied for user 'bob'@'%' to database 'd'"
        await _fails(session, "CREATE TABLE mine (id INT PRIMARY KEY, KEY k (id))", 1142, _denied("CREATE", "mine"))
        await _fails(session, "DROP TABLE pub", 1142, _denied("DROP", "pub"))
        await _fails(session, "ALTER TABLE pub ADD COLUMN w INT", 1142, _denied("ALTER", "pub"))
        with pytest.raises(SqlError) as caught:
            await session.execute_bound("SELECT v FROM secret WHERE id = ?", "d", [1])
        assert (caught.value.code, caught.value.message) == (1142, _denied("SELECT", "secret"))
    finally:
        session.close()


async def test_a_trigger_runs_with_the_invokers_rights(backend: SqliteBackend, tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "d.sqlite")
    raw.execute("CREATE TRIGGER copy AFTER INSERT ON pub BEGIN INSERT INTO secret VALUES (new.id, new.v); END")
    raw.commit()
    raw.close()
    session = backend.session(user=lambda: BOB)
    try:
        await _fails(session, "INSERT INTO pub VALUES (5, 'e')", 1142, _denied("INSERT", "secret"))
    finally:
        session.close()
    assert await _rows(backend, "SELECT id FROM pub ORDER BY id") == [(1,), (2,)]


async def test_a_revoke_counts_for_a_statement_sqlite_keeps_prepared(backend: SqliteBackend) -> None:
    current = [BOB]
    session = backend.session(user=lambda: current[0])
    try:
        assert len((await session.execute("SELECT * FROM pub", "d")).rows) == 2
        current[0] = UserRecord("bob")  # REVOKE ALL: a new record in the FE's cache
        await _fails(session, "SELECT * FROM pub", 1142, _denied("SELECT", "pub"))
        current[0] = ROOT
        assert len((await session.execute("SELECT * FROM secret", "d")).rows) == 2
    finally:
        session.close()


async def test_the_authorizer_costs_microseconds(backend: SqliteBackend) -> None:
    """A 3-table join, a new text each time (prepared again, so authorized again),
    translated beforehand: what remains is SQLite's prepare and the callbacks."""
    user = UserRecord("bob", grants=frozenset({("d", "SELECT_PRIV")}))
    texts = [
        f"SELECT a.v, b.v, c.v FROM secret a JOIN pub b ON a.id = b.id JOIN log c ON c.id = a.id WHERE a.id > {i}"
        for i in range(300)
    ]
    timings = {}
    for name, who in (("warm-up", None), ("unchecked", None), ("checked", lambda: user)):
        session = backend.session(user=who)
        try:
            await session.execute("SELECT 1 FROM pub", "d")
            start = time.perf_counter()
            for text in texts:
                await session.execute(text, "d")
            timings[name] = (time.perf_counter() - start) / len(texts)
        finally:
            session.close()
    print(f"3-table SELECT: checked {timings['checked'] * 1e6:.0f} us, unchecked {timings['unchecked'] * 1e6:.0f} us")
    assert timings["checked"] - timings["unchecked"] < 0.001  # generous: measured about 4 us
