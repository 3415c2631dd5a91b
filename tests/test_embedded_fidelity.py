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


# ------------------------------------------------------------------ literals


def test_literals_as_mysql_reads_them(target: Connect) -> None:
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, b BLOB, s VARCHAR(20))")
        cur.execute(
            "INSERT INTO t VALUES (1, _binary'a\\0b', _utf8mb4'h\u00e9llo'), (2, X'00FF', N'nat'),"
            " (3, 0x41, 'a\\0b\\Zc\\%\\_')"
        )
        cur.execute("SELECT id, b, s FROM t ORDER BY id")
        assert cur.fetchall() == (
            (1, b"a\x00b", "h\u00e9llo"),
            (2, b"\x00\xff", "nat"),
            (3, b"A", "a\x00b\x1ac\\%\\_"),
        )
        cur.execute("SELECT _binary'abc' AS a, _utf8mb4'x' AS b, N'n' AS c, X'4142' AS d, _latin1 X'41' AS e")
        assert cur.fetchall() == ((b"abc", "x", "n", b"AB", "A"),)


# ------------------------------------------------------------------ DDL tools emit


def test_ddl_clauses_kept_and_shown(target: Connect) -> None:
    with contextlib.closing(target()) as c, c.cursor() as cur:
        db = c.db.decode()  # type: ignore[union-attr]
        cur.execute("CREATE TABLE p (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20))")
        cur.execute(
            "CREATE TABLE ch (id INT PRIMARY KEY, s VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            " COMMENT 'the s', p INT, CONSTRAINT fk_p FOREIGN KEY (p) REFERENCES p (id)) COMMENT='a table'"
        )
        cur.execute("DESCRIBE p")
        rows = cur.fetchall()
        assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [
            ("id", "NO", "PRI", None, "auto_increment"),
            ("name", "YES", "", None, ""),
        ]
        cur.execute("SHOW CREATE TABLE ch")
        text = cur.fetchall()[0][1]
        assert "COLLATE utf8mb4_bin" in text
        assert "COMMENT 'the s'" in text
        assert "CONSTRAINT `fk_p` FOREIGN KEY (`p`) REFERENCES `p` (`id`)" in text
        assert "COMMENT='a table'" in text
        cur.execute(
            "SELECT COLUMN_NAME, COLLATION_NAME, COLUMN_COMMENT, CHARACTER_SET_NAME, IS_NULLABLE"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'ch'"
            " ORDER BY ORDINAL_POSITION",
            (db,),
        )
        assert cur.fetchall() == (
            ("id", None, "", None, "NO"),
            ("s", "utf8mb4_bin", "the s", "utf8mb4", "YES"),
            ("p", None, "", None, "YES"),
        )
        cur.execute(
            "SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'ch'", (db,)
        )
        assert cur.fetchall() == (("a table",),)
        cur.execute(
            "SELECT CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE, TABLE_NAME, REFERENCED_TABLE_NAME"
            " FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
            (db,),
        )
        assert cur.fetchall() == (("fk_p", "RESTRICT", "RESTRICT", "ch", "p"),)
        cur.execute(
            "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME"
            " FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'ch'"
            " AND REFERENCED_TABLE_NAME IS NOT NULL",
            (db,),
        )
        assert cur.fetchall() == (("fk_p", "p", "p", "id"),)
        cur.execute(
            "SELECT CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'ch' ORDER BY CONSTRAINT_TYPE",
            (db,),
        )
        assert cur.fetchall() == (("fk_p", "FOREIGN KEY"), ("PRIMARY", "PRIMARY KEY"))
        for table in ("ROUTINES", "TRIGGERS"):
            cur.execute(f"SELECT * FROM information_schema.{table} WHERE 1 = 0")
            assert cur.fetchall() == ()
        # enforced
        cur.execute("INSERT INTO p (name) VALUES ('a')")
        cur.execute("INSERT INTO ch VALUES (1, 'x', 1)")
        for sql, code in (
            ("INSERT INTO ch VALUES (2, 'y', 99)", 1452),
            ("UPDATE ch SET p = 98", 1452),
            ("DELETE FROM p", 1451),
        ):
            with pytest.raises(pymysql.err.IntegrityError) as caught:
                cur.execute(sql)
            assert caught.value.args[0] == code, sql
        cur.execute("LOCK TABLES p WRITE, ch WRITE")
        cur.execute("UNLOCK TABLES")


# ------------------------------------------------------------------ constants: no folding of user text on the loop


def test_constant_folding_is_bounded() -> None:
    """Issue 20 item 5: CAST('1e600000' AS SIGNED) froze an FE 18 s in the folding."""
    import sqlglot

    from frontend import constants

    for sql in (
        "SELECT CAST('1e600000' AS SIGNED)",
        "SELECT CAST('1e600000' AS DECIMAL(65,30))",
        "SELECT CAST(1e308 AS SIGNED)",
        "SELECT " + "9" * 100_000,
        "SELECT CAST('" + "9" * 100_000 + "' AS SIGNED)",
    ):
        tree = sqlglot.parse_one(sql, read="mysql")
        start = time.perf_counter()
        constants.fold(tree)  # type: ignore[arg-type]
        assert time.perf_counter() - start < 0.005, sql[:60]
    assert constants.fold(sqlglot.parse_one("SELECT CAST('42' AS SIGNED), 18446744073709551615", read="mysql")) == (
        42,
        18446744073709551615,
    )


def test_cast_of_text_answers_as_mysql(target: Connect) -> None:
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("SELECT CAST('1e600000' AS SIGNED) AS a, CAST('abc' AS SIGNED) AS b, CAST(' 7' AS SIGNED) AS c")
        assert cur.fetchall() == ((1, 0, 7),)


# ------------------------------------------------------------------ labels, functions, warnings


def _labels_and_rows(cur: pymysql.cursors.Cursor, sql: str) -> tuple[list[str], Any]:
    cur.execute(sql)
    return [d[0] for d in cur.description], cur.fetchall()


def _warnings(cur: pymysql.cursors.Cursor) -> list[tuple[str, int, str]]:
    cur.execute("SHOW WARNINGS")
    return [tuple(r) for r in cur.fetchall()]  # type: ignore[misc]


def test_labels_as_written(target: Connect) -> None:
    """An unaliased item is labelled as the client wrote it, not as the engine prints it again."""
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20), a INT, b INT)")
        cur.execute("INSERT INTO t (name, a, b) VALUES ('x', NULL, 2), ('y', 3, NULL)")
        labels, rows = _labels_and_rows(
            cur,
            "SELECT id*2, NAME, t.Name, `id`, COALESCE(a, b), CONCAT(name, 'x'), a IS NOT NULL, UPPER( name ),"
            " 'lit', (a), name AS n, null, LAST_INSERT_ID() FROM t ORDER BY id",
        )
        assert labels == [
            "id*2", "NAME", "Name", "id", "COALESCE(a, b)", "CONCAT(name, 'x')", "a IS NOT NULL", "UPPER( name )",
            "lit", "a", "n", "NULL", "LAST_INSERT_ID()",
        ]  # fmt: skip
        assert rows == (
            (2, "x", "x", 1, 2, "xx", 0, "X", "lit", None, "x", None, 1),
            (4, "y", "y", 2, 3, "yx", 1, "Y", "lit", 3, "y", None, 1),
        )
        assert _labels_and_rows(cur, "SELECT a + 1 FROM t WHERE id = 2 UNION SELECT 7")[0] == ["a + 1"]
        assert _labels_and_rows(cur, "WITH c AS (SELECT 1 AS x) SELECT x+1 FROM c")[0] == ["x+1"]


def test_group_concat_and_digests(target: Connect) -> None:
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, name VARCHAR(20), a INT, x DOUBLE)")
        cur.execute(
            "INSERT INTO t VALUES (1, 1, 'a', NULL, 0.1), (2, 1, 'b', 3, 1e-7), (3, 2, 'c', 5, 2.5), (4, 2, 'c', 3, 1)"
        )
        assert _labels_and_rows(
            cur,
            "SELECT g, GROUP_CONCAT(name ORDER BY id DESC SEPARATOR ','), GROUP_CONCAT(DISTINCT name ORDER BY name),"
            " GROUP_CONCAT(name, a ORDER BY a DESC, id SEPARATOR '; '), GROUP_CONCAT(x ORDER BY x) FROM t"
            " GROUP BY g ORDER BY g",
        )[1] == (
            (1, "b,a", "a,b", "b3", "0.0000001,0.1"),
            (2, "c,c", "c", "c5; c3", "1,2.5"),
        )
        cur.execute("SELECT GROUP_CONCAT(a) FROM t WHERE a IS NULL")
        assert cur.fetchall() == ((None,),)
        assert _labels_and_rows(
            cur, "SELECT MD5(name), SHA1(name), SHA2(name, 256), SHA2(name, 7), HEX(a), HEX(name), HEX(x) FROM t"
            " WHERE id = 3",
        )[1] == (
            ("4a8a08f09d37b73795649038408b5f33", "84a516841ba77a5b4648de2cd0dfcb30ea46dbb4",
             "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6", None, "5", "63", "3"),
        )  # fmt: skip
        cur.execute("SELECT HEX(a), HEX(-1) FROM t WHERE id = 1")
        assert cur.fetchall() == ((None, "FFFFFFFFFFFFFFFF"),)


def test_warnings_and_strict_errors(target: Connect) -> None:
    """1292 for CAST of text that is no integer, 1365 for a division by 0: warnings in a
    SELECT, errors in an INSERT or UPDATE (MySQL's strict mode, MariaDB's default)."""
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), a INT)")
        cur.execute("INSERT INTO t VALUES (1, 'abc', NULL), (2, ' 7 ', 4), (3, '12', 6)")
        cur.execute("SELECT CAST(name AS SIGNED), a/0, a DIV 0, a % 0 FROM t ORDER BY id")
        assert cur.fetchall() == ((0, None, None, None), (7, None, None, None), (12, None, None, None))
        assert _warnings(cur) == [
            ("Warning", 1292, "Truncated incorrect INTEGER value: 'abc'"),
            ("Note", 1292, "Truncated incorrect INTEGER value: ' 7 '"),
            ("Warning", 1365, "Division by 0"),
            ("Warning", 1365, "Division by 0"),
            ("Warning", 1365, "Division by 0"),
            ("Warning", 1365, "Division by 0"),
            ("Warning", 1365, "Division by 0"),
            ("Warning", 1365, "Division by 0"),
        ]
        for sql, code in (
            ("INSERT INTO t VALUES (4, 'x', 1/0)", 1365),
            ("INSERT INTO t VALUES (4, 'x', CAST('abc' AS SIGNED))", 1292),
            ("UPDATE t SET a = a / 0 WHERE id = 2", 1365),
        ):
            with pytest.raises(pymysql.err.MySQLError) as caught:
                cur.execute(sql)
            assert caught.value.args[0] == code, sql
        cur.execute("SELECT id, a FROM t ORDER BY id")
        assert cur.fetchall() == ((1, None), (2, 4), (3, 6))  # nothing changed


def test_constant_select_labels() -> None:
    """The FE's constant SELECTs are labelled with ``constants.labels`` (MySQL's rule)."""
    import sqlglot

    from frontend import constants

    text = "SELECT 1+1, 'abc', NOW() IS NOT NULL, null, SHA1('x') AS h, ((2)), 'a' 'b', _utf8mb4'u', X'41'"
    tree = sqlglot.parse_one(text, read="mysql")
    assert constants.labels(text, tree.expressions) == [
        "1+1", "abc", "NOW() IS NOT NULL", "NULL", "h", "2", "ab", "u", "X'41'",
    ]  # fmt: skip


def test_label_scan_is_linear_and_bounded() -> None:
    from frontend.sqltext import MAX_LABELLED_STATEMENT, select_list_spans, source_labels

    assert source_labels("SELECT a -- c\n, b # x\n, /* y */ c FROM t") == ["a", "b", "c"]
    assert source_labels("INSERT INTO t SELECT 1") is None
    assert source_labels("SELECT 'a,b', `x,y`, f(1, 2) FROM t") == ["a,b", "`x,y`", "f(1, 2)"]
    assert select_list_spans("SELECT " + "1," * MAX_LABELLED_STATEMENT) is None
    for hostile in ("SELECT " + "(" * 30_000, "SELECT '" + "\\'" * 30_000, "SELECT " + "a, " * 20_000 + "b FROM t"):
        start = time.perf_counter()
        source_labels(hostile)
        # ~0.1 s here for 60 KB; a quadratic scan of the same text takes minutes (a generous bound)
        assert time.perf_counter() - start < 1.0, hostile[:30]


# ------------------------------------------------------------------ engines, charsets, the mysql schema


def test_engines_charsets_collations(target: Connect) -> None:
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("SHOW ENGINES")
        assert [d[0] for d in cur.description] == ["Engine", "Support", "Comment", "Transactions", "XA", "Savepoints"]
        innodb = [r for r in cur.fetchall() if r[0] == "InnoDB"]
        assert [(r[1], r[3], r[5]) for r in innodb] == [("DEFAULT", "YES", "YES")]
        cur.execute("SHOW CHARSET LIKE 'utf8%'")
        assert sorted(cur.fetchall()) == [
            ("utf8mb3", "UTF-8 Unicode", "utf8mb3_general_ci", 3),
            ("utf8mb4", "UTF-8 Unicode", "utf8mb4_general_ci", 4),
        ]
        cur.execute("SHOW CHARACTER SET LIKE 'latin1'")
        assert cur.fetchall() == (("latin1", "cp1252 West European", "latin1_swedish_ci", 1),)
        cur.execute("SHOW COLLATION LIKE 'utf8mb4_general_ci'")
        assert [d[0] for d in cur.description] == ["Collation", "Charset", "Id", "Default", "Compiled", "Sortlen"]
        assert cur.fetchall() == (("utf8mb4_general_ci", "utf8mb4", 45, "Yes", "Yes", 1),)
        cur.execute("SHOW COLLATION LIKE 'binary'")
        assert cur.fetchall() == (("binary", "binary", 63, "Yes", "Yes", 1),)
        cur.execute(
            "SELECT COLLATION_NAME, ID, IS_DEFAULT FROM information_schema.COLLATIONS"
            " WHERE CHARACTER_SET_NAME = 'latin1' AND IS_DEFAULT = 'Yes'"
        )
        assert cur.fetchall() == (("latin1_swedish_ci", 8, "Yes"),)
        cur.execute(
            "SELECT DEFAULT_COLLATE_NAME, MAXLEN FROM information_schema.CHARACTER_SETS"
            " WHERE CHARACTER_SET_NAME = 'utf8mb4'"
        )
        assert cur.fetchall() == (("utf8mb4_general_ci", 4),)


def test_mysql_schema_probes_answer_as_without_access(target: Connect) -> None:
    """Tools probe the server's own schemas: a user without access gets 1142/1044, not 1049."""
    with contextlib.closing(target()) as c, c.cursor() as cur:
        db = c.db.decode()  # type: ignore[union-attr]
        user = f"u{uuid.uuid4().hex[:8]}"
        cur.execute(f"CREATE USER '{user}' IDENTIFIED BY 'pw'")
        cur.execute(f"GRANT ALL ON {db}.* TO '{user}'")
        port = c.port
    try:
        with (
            contextlib.closing(
                pymysql.connect(host="127.0.0.1", port=port, user=user, password="pw", database=db, ssl_disabled=True)
            ) as u,
            u.cursor() as cur,
        ):
            for sql, code in (
                ("SELECT * FROM mysql.user", 1142),
                ("SELECT User FROM mysql.db WHERE 1 = 0", 1142),
                ("SELECT * FROM performance_schema.threads", 1142),
                ("DESCRIBE mysql.user", 1142),
                ("SHOW TABLES FROM mysql", 1044),
                ("USE mysql", 1044),
            ):
                with pytest.raises(pymysql.err.MySQLError) as caught:
                    cur.execute(sql)
                assert caught.value.args[0] == code, (sql, caught.value)
    finally:
        with contextlib.closing(target()) as c, c.cursor() as cur:
            cur.execute(f"DROP USER '{user}'")


def test_columns_as_connector_j_reads_them(target: Connect) -> None:
    """DatabaseMetaData.getColumns (Connector/J): NULLABLE from IS_NULLABLE = 'yes' (MySQL compares
    information_schema's text case-insensitively), COLUMN_SIZE of a BLOB/TEXT."""
    with contextlib.closing(target()) as c, c.cursor() as cur:
        db = c.db.decode()  # type: ignore[union-attr]
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, pid INT, b BLOB, tx TEXT, s VARCHAR(20))")
        cur.execute(
            "SELECT COLUMN_NAME, IF(IS_NULLABLE = 'yes', 1, 0), CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION",
            (db,),
        )
        assert cur.fetchall() == (
            ("id", 0, None, None),
            ("pid", 1, None, None),
            ("b", 1, 65535, 65535),
            ("tx", 1, 65535, 65535),
            ("s", 1, 20, 80),
        )


@pytest.mark.parametrize("found_rows", [False, True])
def test_a_no_op_update_counts_as_mariadb_counts_it(fe: Fe, backend_mariadb: MariaDB, found_rows: bool) -> None:
    """Changed rows by default, matched rows for a CLIENT_FOUND_ROWS client, on the embedded backend as on MariaDB."""
    import MySQLdb

    flags = {"client_flag": 2} if found_rows else {}
    counts = []
    for port in (fe.mysql_port, backend_mariadb.port):
        db = f"fr{uuid.uuid4().hex[:6]}"
        conn = MySQLdb.connect(host="127.0.0.1", port=port, user="root", **flags)
        try:
            conn.autocommit(True)
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)")
            cur.execute(f"INSERT INTO {db}.t VALUES (1, 1), (2, 1), (3, 2)")
            cur.execute(f"UPDATE {db}.t SET v = 1 WHERE id <= 3")
            counts.append((cur.rowcount, conn.info()))
            cur.execute(f"DROP DATABASE {db}")
        finally:
            conn.close()
    assert counts[0] == counts[1], counts


def test_tinyint_1_and_bool_keep_their_width(target: Connect) -> None:
    """MySQL keeps one integer display width, TINYINT(1) (BOOL's type): JDBC drivers
    read a column so typed as a boolean (Connector/J's getColumns: BIT). CHAR and
    the TEXT family keep their names too (JDBC's CHAR, not VARCHAR)."""
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute(
            "CREATE TABLE w (id INT PRIMARY KEY, a CHAR(3), b CHAR, m MEDIUMTEXT, l LONGTEXT, s TINYTEXT, v VARCHAR(5))"
        )
        cur.execute("INSERT INTO w VALUES (1, 'abc', 'x', 'mm', 'll', 'ss', 'vv')")
        cur.execute("SELECT a, b, m, l, s, v FROM w")
        assert cur.fetchall() == (("abc", "x", "mm", "ll", "ss", "vv"),)
        cur.execute("SHOW COLUMNS FROM w")
        assert [(r[0], r[1]) for r in cur.fetchall()][1:] == [
            ("a", "char(3)"), ("b", "char(1)"), ("m", "mediumtext"), ("l", "longtext"), ("s", "tinytext"),
            ("v", "varchar(5)"),
        ]  # fmt: skip
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, a TINYINT(1) DEFAULT 1, b BOOL, c TINYINT)")
        cur.execute("INSERT INTO t (id, b, c) VALUES (1, TRUE, 7)")
        cur.execute("SELECT DATABASE()")
        db = cur.fetchone()[0]
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 't' AND COLUMN_NAME IN ('a', 'b') ORDER BY 1",
            (db,),
        )
        assert cur.fetchall() == (("a", "tinyint(1)", "tinyint"), ("b", "tinyint(1)", "tinyint"))
        cur.execute("SELECT a, b, c FROM t")
        assert cur.fetchall() == ((1, 1, 7),)


def test_database_function_in_a_statement_over_tables(target: Connect) -> None:
    """DATABASE() and SCHEMA() beside a table are the session's database (SQLite's own would be 'main')."""
    with contextlib.closing(target()) as c, c.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        db = cur.fetchone()[0]
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(40))")
        cur.execute("INSERT INTO t VALUES (1, DATABASE()), (2, 'other')")
        cur.execute("SELECT id, SCHEMA() FROM t WHERE s = DATABASE()")
        assert cur.fetchall() == ((1, db),)


def test_views_are_listed_apart_from_tables(tmp_path: Path) -> None:
    """``SqliteBackend.views``: what information_schema needs to list a view as a VIEW."""

    async def run() -> tuple[list[str], list[str], list[str]]:
        backend = SqliteBackend(tmp_path)
        try:
            await backend.create_database("d", False)
            session = backend.session()
            try:
                await session.execute("CREATE TABLE t (id INT PRIMARY KEY, code CHAR(3))", "d")
                await session.execute("CREATE VIEW v AS SELECT id, code FROM t", "d")
            finally:
                session.close()
            columns = [c.name for c in await backend.columns("d", "v")]
            return await backend.tables("d"), await backend.views("d"), columns
        finally:
            backend.shutdown()

    assert asyncio.run(run()) == (["t"], ["v"], ["id", "code"])
