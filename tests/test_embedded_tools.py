"""Cells of issue 22's driver matrix that run in this process, on an FE over
the embedded backend and on the private MariaDB (the reference): SQLAlchemy
reflection of a table with a FOREIGN KEY and an index, a duplicate key's
code in each Python driver."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.mariadb import MariaDB
from tests.support import Fe


@pytest.fixture(params=["fecluster", "mariadb"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[int, str]]:
    """(port, database): a fresh database on an FE over the embedded backend, or on MariaDB."""
    target: Fe | MariaDB = request.getfixturevalue("fe" if request.param == "fecluster" else "mariadb")
    name = f"r{uuid.uuid4().hex[:8]}"
    with contextlib.closing(target.connect()) as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"USE {name}")
        cur.execute("CREATE TABLE parent (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40) NOT NULL)")
        cur.execute(
            "CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, note VARCHAR(20) COMMENT 'a note',"
            " KEY ix_note (note), UNIQUE KEY uq_pair (parent_id, note),"
            " CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE)"
        )
    port = target.mysql_port if isinstance(target, Fe) else target.port
    yield port, name
    with contextlib.closing(target.connect()) as c, c.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


def test_sqlalchemy_reflection(server: tuple[int, str]) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    port, db = server
    engine = sqlalchemy.create_engine(f"mysql+pymysql://root:@127.0.0.1:{port}/{db}")
    try:
        inspector = sqlalchemy.inspect(engine)
        assert sorted(inspector.get_table_names()) == ["child", "parent"]
        columns = inspector.get_columns("child")
        assert [(c["name"], str(c["type"]).split(" ")[0], c["nullable"]) for c in columns] == [
            ("id", "INTEGER", False),
            ("parent_id", "INTEGER", False),
            ("note", "VARCHAR(20)", True),
        ]
        assert columns[2].get("comment") == "a note"
        assert inspector.get_pk_constraint("child")["constrained_columns"] == ["id"]
        keys = inspector.get_foreign_keys("child")
        assert [
            (k["name"], k["constrained_columns"], k["referred_table"], k["referred_columns"], k["options"])
            for k in keys
        ] == [("fk_parent", ["parent_id"], "parent", ["id"], {"ondelete": "CASCADE"})]
        indexes = {i["name"]: (i["column_names"], bool(i["unique"])) for i in inspector.get_indexes("child")}
        assert indexes["ix_note"] == (["note"], False)
        assert indexes["uq_pair"] == (["parent_id", "note"], True)
        parent = inspector.get_columns("parent")
        assert parent[0]["autoincrement"] is True
    finally:
        engine.dispose()


def _mysqlclient(port: int, db: str) -> Any:
    MySQLdb = pytest.importorskip("MySQLdb")
    return MySQLdb.connect(host="127.0.0.1", port=port, user="root", password="", database=db)


def _connector(port: int, db: str) -> Any:
    connector = pytest.importorskip("mysql.connector")
    return connector.connect(
        host="127.0.0.1", port=port, user="root", password="", database=db, use_pure=True, ssl_disabled=True
    )


def _pymysql(port: int, db: str) -> Any:
    return pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database=db, ssl_disabled=True)


@pytest.mark.parametrize("driver", [_pymysql, _mysqlclient, _connector], ids=["pymysql", "mysqlclient", "connector"])
def test_duplicate_key_code_in_each_driver(server: tuple[int, str], driver: Any) -> None:
    port, db = server
    conn = driver(port, db)
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO parent (id, name) VALUES (1, 'a')")
        conn.commit()
        with pytest.raises(Exception) as caught:
            cur.execute("INSERT INTO parent (id, name) VALUES (1, 'b')")
        error = caught.value
        code = getattr(error, "errno", None) or error.args[0]
        assert code == 1062, error
        assert "Duplicate entry '1' for key 'PRIMARY'" in str(error), error
        assert getattr(error, "sqlstate", "23000") == "23000"
    finally:
        conn.close()
