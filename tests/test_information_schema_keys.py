"""information_schema STATISTICS and KEY_COLUMN_USAGE as the FE builds them
(issue 13, item 4): the rows a private MariaDB gives for the same tables, only
for the tables the user may see, on the embedded backend and (for users other
than admins, whose information_schema is the server's own) on a MySQL backend."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.mariadb import MariaDB
from tests.support import Fe

# Every column MySQL names but CARDINALITY (MariaDB's estimate of the rows; the FE does not count them: NULL).
STATISTICS = (
    "TABLE_CATALOG, TABLE_SCHEMA, TABLE_NAME, NON_UNIQUE, INDEX_SCHEMA, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME,"
    " COLLATION, SUB_PART, PACKED, NULLABLE, INDEX_TYPE, COMMENT, INDEX_COMMENT"
)
KEY_COLUMN_USAGE = (
    "CONSTRAINT_CATALOG, CONSTRAINT_SCHEMA, CONSTRAINT_NAME, TABLE_CATALOG, TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME,"
    " ORDINAL_POSITION, POSITION_IN_UNIQUE_CONSTRAINT, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME,"
    " REFERENCED_COLUMN_NAME"
)
# A PRIMARY KEY, a two-column UNIQUE KEY (one nullable column, one not) and a plain INDEX,
# inline or made afterwards (SQLite's index names are per database: the table is in them).
TABLE = [
    "CREATE TABLE {db}.{t} (id INT NOT NULL, a INT, b VARCHAR(10), c INT NOT NULL, PRIMARY KEY (id),"
    " UNIQUE KEY uk_{t} (a, c), KEY ix_{t} (b))"
]
TABLE_THEN_INDEXES = [
    "CREATE TABLE {db}.{t} (id INT NOT NULL, a INT, b VARCHAR(10), c INT NOT NULL, PRIMARY KEY (id))",
    "CREATE UNIQUE INDEX uk_{t} ON {db}.{t} (a, c)",
    "CREATE INDEX ix_{t} ON {db}.{t} (b)",
]


def _run(conn: pymysql.Connection, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return sorted(cur.fetchall(), key=repr)  # sorted here: MariaDB orders names case-insensitively


def _keys(conn: pymysql.Connection, db: str, tables: str = "") -> tuple[list[tuple[Any, ...]], ...]:
    where = f"WHERE TABLE_SCHEMA = '{db}'" + (f" AND TABLE_NAME IN ({tables})" if tables else "")
    return (
        _run(conn, f"SELECT {STATISTICS} FROM information_schema.statistics {where}"),
        _run(conn, f"SELECT {KEY_COLUMN_USAGE} FROM information_schema.key_column_usage {where}"),
    )


def _make(conn: pymysql.Connection, db: str, table: str, statements: list[str] = TABLE) -> None:
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql.format(db=db, t=table))


@pytest.fixture
def reference(backend_mariadb: MariaDB) -> Iterator[tuple[pymysql.Connection, str]]:
    """A database on the private MariaDB, the same name as the FE's."""
    db = f"keys{uuid.uuid4().hex[:8]}"
    backend_mariadb.query(f"CREATE DATABASE {db}")
    with contextlib.closing(backend_mariadb.connect()) as conn:
        yield conn, db
    backend_mariadb.query(f"DROP DATABASE {db}")


@pytest.mark.parametrize("statements", [TABLE, TABLE_THEN_INDEXES], ids=["inline", "create-index"])
def test_statistics_and_key_column_usage_are_mariadbs_rows(
    fe: Fe, reference: tuple[pymysql.Connection, str], statements: list[str]
) -> None:
    """Issue 13: the embedded backend had no STATISTICS or KEY_COLUMN_USAGE (1109)."""
    maria, db = reference
    with _made_on_both(fe, maria, db, statements) as conn:
        statistics, usage = _keys(conn, db)
        assert (statistics, usage) == _keys(maria, db)
        assert [(r[5], r[3], r[6], r[7], r[11]) for r in statistics] == [
            ("PRIMARY", 0, 1, "id", ""),
            ("uk_t", 0, 1, "a", "YES"),
            ("uk_t", 0, 2, "c", ""),
            ("ix_t", 1, 1, "b", "YES"),
        ]
        assert [(r[2], r[6], r[7]) for r in usage] == [("PRIMARY", "id", 1), ("uk_t", "a", 1), ("uk_t", "c", 2)]
        # SELECT * gives MySQL's 16 columns, by name; CARDINALITY is NULL (not counted)
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM information_schema.STATISTICS WHERE table_schema = '{db}'")
            names = [d[0] for d in cur.description]
            assert len(names) == 16 and names[9] == "CARDINALITY"
            assert {r[9] for r in cur.fetchall()} == {None}
            cur.execute(f"SELECT * FROM information_schema.key_column_usage WHERE table_schema = '{db}'")
            assert [d[0] for d in cur.description] == [c.strip() for c in KEY_COLUMN_USAGE.split(",")]
        # Joined with COLUMNS, as reflection tools do.
        joined = (
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.COLUMN_TYPE FROM information_schema.statistics s"
            " JOIN information_schema.columns c USING (TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME)"
            f" WHERE s.TABLE_SCHEMA = '{db}' AND s.NON_UNIQUE = 0"
        )
        assert _run(conn, joined) == [("PRIMARY", "id", "int"), ("uk_t", "a", "int"), ("uk_t", "c", "int")]


@contextlib.contextmanager
def _made_on_both(fe: Fe, maria: pymysql.Connection, db: str, statements: list[str]) -> Iterator[pymysql.Connection]:
    """The same tables in ``db`` on the FE and on the reference MariaDB; -> a connection to the FE."""
    fe.query(f"CREATE DATABASE {db}")
    try:
        with contextlib.closing(fe.connect()) as conn:
            _make(conn, db, "t", statements)
            _make(maria, db, "t", statements)
            yield conn
    finally:
        fe.query(f"DROP DATABASE IF EXISTS {db}")


@pytest.mark.parametrize(
    "statements",
    [
        pytest.param(
            ["CREATE TABLE {db}.{t} (id INT NOT NULL, a INT NOT NULL, PRIMARY KEY (a, id))"],
            id="primary-key-order",
        ),
        pytest.param(
            ["CREATE TABLE {db}.{t} (id INT PRIMARY KEY, b INT UNIQUE)"],
            id="column-unique",
        ),
        pytest.param(
            [
                "CREATE TABLE {db}.t1 (id INT PRIMARY KEY, b INT, KEY ix (b))",
                "CREATE TABLE {db}.t2 (id INT PRIMARY KEY, b INT, KEY ix (b))",
            ],
            id="one-name-two-tables",
        ),
        pytest.param(
            ["CREATE TABLE {db}.{t} (id INT PRIMARY KEY, b INT, UNIQUE (b), UNIQUE (b))"],
            id="unnamed-twice",
        ),
    ],
)
def test_keys_mysql_spells_its_own_way(
    fe: Fe, reference: tuple[pymysql.Connection, str], statements: list[str]
) -> None:
    maria, db = reference
    with _made_on_both(fe, maria, db, statements) as conn:
        assert _keys(conn, db) == _keys(maria, db)


def test_a_user_sees_the_keys_of_the_tables_they_may_see(any_fe: Fe, backend_mariadb: MariaDB) -> None:
    """Rows of tables the user holds no privilege on are not there, on both backends;
    over MySQL the FE's rows for the visible table are the server's own."""
    fe = any_fe
    relays = fe.flags["backend"].startswith("mysql://")
    db = f"keys{uuid.uuid4().hex[:8]}"
    name, password = f"u{uuid.uuid4().hex[:8]}", "pw"
    fe.query(f"CREATE DATABASE {db}")
    fe.query(f"CREATE USER '{name}' IDENTIFIED BY '{password}'")
    try:
        with contextlib.closing(fe.connect()) as root:
            _make(root, db, "mine")
            _make(root, db, "theirs")
        with contextlib.closing(fe.connect(name, password)) as user:
            assert _keys(user, db) == ([], [])
            fe.query(f"GRANT SELECT_PRIV ON {db}.mine TO '{name}'")
            statistics, usage = _keys(user, db)
            assert {r[2] for r in statistics} == {r[5] for r in usage} == {"mine"}
            assert len(statistics) == 4 and len(usage) == 3
            assert _run(user, "SELECT COUNT(*) FROM information_schema.statistics WHERE TABLE_NAME = 'theirs'") == [
                (0,)
            ]
            if relays:
                with contextlib.closing(backend_mariadb.connect()) as maria:
                    assert (statistics, usage) == _keys(maria, db, "'mine'")
            fe.query(f"GRANT SELECT_PRIV ON {db}.* TO '{name}'")
            statistics, usage = _keys(user, db)
            assert {r[2] for r in statistics} == {"mine", "theirs"} and len(usage) == 6
        with contextlib.closing(fe.connect()) as root:  # an admin sees every table (over MySQL: the server's own)
            assert len(_keys(root, db)[0]) == 8
    finally:
        fe.query(f"DROP USER IF EXISTS '{name}'")
        fe.query(f"DROP DATABASE IF EXISTS {db}")
