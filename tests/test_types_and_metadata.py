"""The embedded backend as tools see it (issue 13, item 4's types and
metadata): declared types come back as MySQL's drivers give them, the
functions users hit, DESCRIBE / SHOW COLUMNS / SHOW CREATE TABLE,
information_schema SCHEMATA/TABLES/COLUMNS (only what the user may see), and
a SQLAlchemy 2 ORM round trip."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import uuid
from typing import Any

import pymysql
from pymysql.constants import FLAG

from tests.support import Fe, fails, wait_for


def _run(conn: pymysql.Connection, sql: str) -> tuple[tuple[object, ...], ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_declared_types_come_back_typed(fe: Fe, db: str) -> None:
    """Issue 13: DECIMAL came back as DOUBLE, DATETIME as a string, BLOB as text."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(
            conn,
            "CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT, price DECIMAL(10,2), at DATETIME, day DATE,"
            " span TIME, data BLOB, name VARCHAR(20), PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        )
        _run(
            conn,
            "INSERT INTO t (price, at, day, span, data, name) VALUES"
            " (19.99, '2024-11-04 20:18:07', '2024-11-04', '12:30:05', 'abc', 'x')",
        )
        assert _run(conn, "SELECT LAST_INSERT_ID(), ROW_COUNT()") == ((1, 1),)
        row = _run(conn, "SELECT price, at, day, span, data, name, id FROM t")[0]
    assert row[0] == decimal.Decimal("19.99") and isinstance(row[0], decimal.Decimal)
    assert row[1] == datetime.datetime(2024, 11, 4, 20, 18, 7)
    assert row[2] == datetime.date(2024, 11, 4)
    assert row[3] == datetime.timedelta(hours=12, minutes=30, seconds=5)
    assert row[4] == b"abc"
    assert row[5:] == ("x", 1)


def test_decimal_and_bigint_unsigned_are_exact(fe: Fe, db: str) -> None:
    """Issue 11/13: SQLite kept DECIMAL(30,10) and BIGINT UNSIGNED's maximum as
    doubles (15 digits); they come back digit for digit, padded to the scale,
    and compare and sort as numbers."""
    big = "12345678901234567890.0123456789"
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(conn, "CREATE TABLE n (id INT PRIMARY KEY, d DECIMAL(30,10), p DECIMAL(10,2), u BIGINT UNSIGNED)")
        _run(
            conn,
            f"INSERT INTO n VALUES (1, {big}, 19.5, 18446744073709551615), (2, -{big}, 9.99, 5), (3, 10, 100, 12)",
        )
        with conn.cursor() as cur:
            cur.execute("SELECT d, p, u FROM n WHERE id = 1")
            row = cur.fetchone()
            types = [c[1] for c in cur.description]
        assert row == (decimal.Decimal(big), decimal.Decimal("19.50"), 18446744073709551615)
        assert str(row[1]) == "19.50"
        assert types[:2] == [pymysql.constants.FIELD_TYPE.NEWDECIMAL] * 2
        assert _run(conn, f"SELECT id FROM n WHERE d = {big}") == ((1,),)
        assert _run(conn, "SELECT id FROM n WHERE u = 18446744073709551615") == ((1,),)
        assert _run(conn, "SELECT id FROM n ORDER BY d") == ((2,), (3,), (1,))
        assert _run(conn, "SELECT id FROM n WHERE p > 10 ORDER BY u DESC") == ((1,), (3,))
        assert _run(conn, "SELECT id FROM n WHERE u > 6 AND u < 100") == ((3,),)
        described = {r[0]: r[1] for r in _run(conn, "DESCRIBE n")}
        assert described["d"] == "decimal(30,10)" and described["u"] == "bigint unsigned"
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute("SELECT u FROM n WHERE id = 2")
            assert cur.fetchone() == (5,)
            unsigned = cur._result.fields[0].flags & FLAG.UNSIGNED
        assert unsigned, "a BIGINT UNSIGNED column goes out with the UNSIGNED flag"


def test_integer_columns_go_out_with_their_declared_width(fe: Fe, db: str) -> None:
    """Issue 13: every integer column went out as BIGINT; drivers map the wire
    type (JDBC's getObject gives Integer for INT, Long for BIGINT)."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(
            conn,
            "CREATE TABLE w (id INT PRIMARY KEY, t TINYINT, tu TINYINT UNSIGNED, s SMALLINT, m MEDIUMINT UNSIGNED,"
            " i INT, iu INT UNSIGNED, b BIGINT)",
        )
        _run(conn, "INSERT INTO w VALUES (1, -128, 255, -32768, 16777215, 300, 4294967295, -5)")
        _run(conn, "INSERT INTO w VALUES (2, 1000, -1, 0, 0, 0, 0, 0)")  # SQLite keeps these; MySQL would clamp
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute("SELECT t, tu, s, m, i, iu, b FROM w ORDER BY id")
            fields = [(f.type_code, f.length, bool(f.flags & FLAG.UNSIGNED)) for f in cur._result.fields]
            rows = cur.fetchall()
    FT = pymysql.constants.FIELD_TYPE
    assert fields == [
        (FT.TINY, 4, False), (FT.TINY, 3, True), (FT.SHORT, 6, False), (FT.INT24, 8, True),
        (FT.LONG, 11, False), (FT.LONG, 10, True), (FT.LONGLONG, 20, False),
    ]  # fmt: skip
    assert list(rows) == [(-128, 255, -32768, 16777215, 300, 4294967295, -5), (127, 0, 0, 0, 0, 0, 0)]
    described = {r[0]: r[1] for r in fe.query(f"DESCRIBE {db}.w")}
    assert (described["tu"], described["iu"], described["s"]) == ("tinyint unsigned", "int unsigned", "smallint")


def test_doris_ddl_inline_keys_found_rows_and_explain(fe: Fe, db: str) -> None:
    """Issue 13: Doris's CREATE TABLE clauses, inline KEY/UNIQUE KEY,
    FOUND_ROWS() and EXPLAIN were syntax errors or 1305 on the embedded backend."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(
            conn,
            "CREATE TABLE IF NOT EXISTS events (k BIGINT, day DATE, v VARCHAR(20), KEY by_day (day),"
            " UNIQUE KEY by_v (v)) ENGINE=OLAP DUPLICATE KEY(k, day) COMMENT 'doris table'"
            " PARTITION BY RANGE(day) (PARTITION p1 VALUES [('2026-01-01'), ('2027-01-01')))"
            ' DISTRIBUTED BY HASH(k) BUCKETS 10 PROPERTIES ("replication_num" = "1")',
        )
        _run(conn, "CREATE TABLE agg (k INT, n BIGINT SUM) AGGREGATE KEY(k) DISTRIBUTED BY RANDOM BUCKETS AUTO")
        _run(conn, "INSERT INTO events VALUES (1, '2026-11-27', 'a'), (2, '2026-11-28', 'b'), (3, '2026-11-29', 'c')")
        assert fails(conn, "INSERT INTO events VALUES (4, '2026-11-30', 'a')")[0] == 1062  # UNIQUE KEY by_v holds
        index = {(r[2], r[1], r[4]) for r in _run(conn, "SHOW INDEX FROM events")}
        assert index == {("by_day", 1, "day"), ("by_v", 0, "v")}
        assert _run(conn, "SELECT SQL_CALC_FOUND_ROWS k FROM events ORDER BY k LIMIT 1") == ((1,),)
        assert _run(conn, "SELECT FOUND_ROWS()") == ((3,),)
        assert _run(conn, "SELECT FOUND_ROWS()") == ((1,),)  # the previous SELECT returned one row
        with conn.cursor() as cur:
            cur.execute("EXPLAIN SELECT * FROM events WHERE day = '2026-11-27'")
            plan = cur.fetchall()
            names = tuple(d[0] for d in cur.description)
        assert names == (
            "id", "select_type", "table", "type", "possible_keys", "key", "key_len", "ref", "rows", "Extra",
        )  # fmt: skip
        assert [(r[2], r[3], r[5]) for r in plan] == [("events", "ref", "by_day")]
    name = f"u{uuid.uuid4().hex[:8]}"
    fe.query(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    assert fails(fe.connect(name, "pw"), f"USE {db}")[0] == 1044  # no privilege on it
    with contextlib.closing(fe.connect(name, "pw")) as user:
        assert fails(user, f"EXPLAIN SELECT * FROM {db}.events")[0] == 1142  # EXPLAIN needs what running it needs


def test_now_and_curdate(fe: Fe, db: str) -> None:
    """Issue 13: NOW() and LAST_INSERT_ID() gave 1305."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        now, today = _run(conn, "SELECT NOW(), CURDATE()")[0]
        assert datetime.datetime.strptime(str(now), "%Y-%m-%d %H:%M:%S")
        assert str(today) == datetime.date.today().isoformat()
        _run(conn, "CREATE TABLE t (at DATETIME)")
        _run(conn, "INSERT INTO t VALUES (NOW())")
        assert isinstance(_run(conn, "SELECT at FROM t")[0][0], datetime.datetime)


def test_describe_show_columns_and_show_create_table(fe: Fe, db: str) -> None:
    """Issue 13: DESCRIBE was a syntax error; SHOW CREATE TABLE, SHOW FULL COLUMNS, SHOW INDEX,
    SHOW TABLE STATUS and SHOW STATUS returned no result set."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        _run(
            conn,
            "CREATE TABLE t (id INT NOT NULL, name VARCHAR(20) DEFAULT 'n', price DECIMAL(10,2), PRIMARY KEY (id))",
        )
        expected = (
            ("id", "int", "NO", "PRI", None, ""),
            ("name", "varchar(20)", "YES", "", "n", ""),
            ("price", "decimal(10,2)", "YES", "", None, ""),
        )
        assert _run(conn, "DESCRIBE t") == expected
        assert _run(conn, f"DESC `{db}`.`t`") == expected
        assert _run(conn, f"SHOW COLUMNS FROM t FROM {db}") == expected
        full = _run(conn, "SHOW FULL COLUMNS FROM t LIKE 'na%'")
        assert len(full) == 1 and full[0][0] == "name" and len(full[0]) == 9
        table, text = _run(conn, "SHOW CREATE TABLE t")[0]
        assert table == "t" and text.startswith("CREATE TABLE `t` (\n  `id` int NOT NULL,")
        assert "PRIMARY KEY (`id`)" in text
        assert fails(conn, "DESCRIBE nosuch")[0] == 1146
        assert _run(conn, "SHOW FULL TABLES") == (("t", "BASE TABLE"),)
        _run(conn, "CREATE VIEW v_t AS SELECT id FROM t")  # listed with the tables, as MySQL lists them
        assert _run(conn, "SHOW FULL TABLES") == (("t", "BASE TABLE"), ("v_t", "VIEW"))
        assert _run(conn, "SHOW TABLES") == (("t",), ("v_t",))
        _run(conn, "DROP VIEW v_t")
        _run(conn, "CREATE UNIQUE INDEX by_name ON t (name, price)")
        index = [(r[2], r[1], r[3], r[4]) for r in _run(conn, "SHOW INDEX FROM t")]
        assert index == [("PRIMARY", 0, 1, "id"), ("by_name", 0, 1, "name"), ("by_name", 0, 2, "price")]
        status = _run(conn, f"SHOW TABLE STATUS FROM {db} LIKE 't%'")
        assert [(r[0], r[1]) for r in status] == [("t", "InnoDB")] and len(status[0]) == 18
        assert _run(conn, "SHOW GLOBAL STATUS LIKE 'Uptime'") == ()


def test_information_schema_shows_only_what_the_user_may_see(fe: Fe, db: str) -> None:
    """Issue 13: TABLES, COLUMNS, SCHEMATA gave 1049."""
    fe.query(f"CREATE TABLE {db}.mine (id INT, v VARCHAR(5))")
    fe.query(f"CREATE TABLE {db}.theirs (secret INT)")
    name, password = f"u{uuid.uuid4().hex[:8]}", "pw"
    fe.query(f"CREATE USER '{name}' IDENTIFIED BY '{password}'")
    fe.query(f"GRANT SELECT_PRIV ON {db}.mine TO '{name}'")
    with contextlib.closing(fe.connect(name, password)) as user, contextlib.closing(fe.connect()) as root:
        assert _run(user, "SELECT SCHEMA_NAME FROM information_schema.schemata ORDER BY 1") == (
            ("information_schema",),
            (db,),
        )
        assert _run(user, f"SELECT TABLE_NAME FROM information_schema.tables WHERE TABLE_SCHEMA = '{db}'") == (
            ("mine",),
        )
        cols = f"SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.columns WHERE TABLE_SCHEMA = '{db}'"
        assert _run(user, cols + " ORDER BY 1, 2") == (("mine", "id", "int"), ("mine", "v", "varchar"))
        assert len(_run(root, cols)) == 3
        assert fails(user, f"DESCRIBE {db}.theirs")[0] == 1142
        assert fails(user, "SELECT * FROM information_schema.nosuch")[0] == 1109
        padded = f"SELECT TABLE_NAME FROM information_schema.tables WHERE TABLE_SCHEMA = '{db}' AND '{'x' * 2000}' > ''"
        assert _run(user, padded) == (("mine",),)  # a long one is parsed off the loop, answered the same way


def test_functions_and_statements_tools_send(fe: Fe, db: str) -> None:
    """Issue 13: LENGTH counted characters, DATE_ADD dropped the time part, FROM DUAL,
    ON DUPLICATE KEY UPDATE, SET @var and CREATE INDEX were refused."""
    with contextlib.closing(fe.connect(database=db)) as conn:
        assert _run(conn, "SELECT LENGTH('é'), CHAR_LENGTH('é') FROM DUAL") == ((2, 1),)
        assert _run(
            conn, "SELECT DATE_ADD('2024-01-01 10:00:00', INTERVAL 1 DAY), DATE_SUB('2024-01-15', INTERVAL 1 WEEK)"
        ) == (("2024-01-02 10:00:00", "2024-01-08"),)
        _run(conn, "CREATE TABLE t (id INT PRIMARY KEY, n INT, hits INT DEFAULT 0)")
        for n in (5, 7):
            _run(conn, f"INSERT INTO t (id, n) VALUES (1, {n}) ON DUPLICATE KEY UPDATE n = VALUES(n), hits = hits + 1")
        assert _run(conn, "SELECT id, n, hits FROM t") == ((1, 7, 1),)
        _run(conn, "REPLACE INTO t (id, n) VALUES (1, 9)")
        _run(conn, "INSERT IGNORE INTO t (id, n) VALUES (1, 10)")
        assert _run(conn, "SELECT id, n, hits FROM t") == ((1, 9, 0),)
        _run(conn, "CREATE INDEX by_n ON t (n)")
        _run(conn, "CREATE UNIQUE INDEX IF NOT EXISTS by_hits ON t (hits, n DESC)")
        _run(conn, "DROP INDEX by_n ON t")
        assert fails(conn, "DROP INDEX by_n ON t")[0] == 1091  # gone, as MySQL says
        _run(conn, "SET @who = 'x', @n = 41")
        assert _run(conn, "SELECT @who, @n + 1, @unset") == (("x", 42, None),)
        _run(conn, "INSERT INTO t (id, n) VALUES (2, @n)")
        assert _run(conn, "SELECT n FROM t WHERE id = @n - 39") == ((41,),)


def test_prepared_statements_bind_on_the_embedded_backend(fe: Fe, db: str) -> None:
    """COM_STMT_EXECUTE of a data statement binds its parameters in SQLite
    (parsed and translated once per text): the same answers as the text path,
    the same privilege check, and what the FE answers itself still answered."""
    import mysql.connector

    fe.query(f"CREATE TABLE {db}.p (id INT PRIMARY KEY, d DECIMAL(30,10), u BIGINT UNSIGNED, b BLOB, s VARCHAR(20))")
    name = f"u{uuid.uuid4().hex[:8]}"
    fe.query(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")

    def connect(user: str = "root", password: str = "") -> Any:
        return mysql.connector.connect(
            host="127.0.0.1",
            port=fe.mysql_port,
            user=user,
            password=password,
            database=db,
            use_pure=True,
            autocommit=True,
        )

    big = [decimal.Decimal(f"1234567890123456789{i}.0123456789") for i in range(3)]  # 30 digits
    with contextlib.closing(connect()) as conn:
        cur = conn.cursor(prepared=True)
        for i in range(3):
            cur.execute("INSERT INTO p VALUES (?, ?, ?, ?, ?)", (i, big[i], 18446744073709551615 - i, b"\x00\xff", "é"))
            assert cur.rowcount == 1
        cur.execute("UPDATE p SET s = ? WHERE id >= ?", ("x", 1))
        assert cur.rowcount == 2
        cur.execute("SELECT id, d, u, b, s FROM p WHERE d > ? ORDER BY id LIMIT ?", (big[0], 5))
        assert cur.fetchall() == [
            (1, big[1], 18446744073709551614, bytearray(b"\x00\xff"), "x"),
            (2, big[2], 18446744073709551613, bytearray(b"\x00\xff"), "x"),
        ]
        cur.execute("SELECT id FROM p WHERE u = ?", (18446744073709551615,))
        assert cur.fetchall() == [(0,)]
        cur.execute("SELECT CONNECTION_ID() = ?, ?", (conn.connection_id, "kept"))  # the FE's own answer
        assert cur.fetchall() == [(1, "kept")]
        cur.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE ID = ?", (conn.connection_id,))
        assert cur.fetchall() == [(1,)]
    fe.query(f"GRANT SELECT_PRIV ON {db}.p TO '{name}'")
    with contextlib.closing(connect(name, "pw")) as conn:
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT id FROM p WHERE id = ?", (1,))
        assert cur.fetchall() == [(1,)]
        fe.query(f"REVOKE SELECT_PRIV ON {db}.p FROM '{name}'")

        def refusal() -> int | None:  # the same text again: its grants checked again
            try:
                cur.execute("SELECT id FROM p WHERE id = ?", (1,))
                cur.fetchall()
            except mysql.connector.Error as e:
                return int(e.errno)
            return None

        assert wait_for(refusal, 5, what="the revoke in force") == 1142


def test_a_streamed_result_keeps_its_types(fe: Fe, db: str) -> None:
    """A result of more than one batch streams; its columns are typed from the
    rows read first, read on while a column is still all NULL, so a binary
    (prepared) result sends INT as INT even when its first 1,500 are NULL."""
    import mysql.connector

    fe.query(f"CREATE TABLE {db}.s (id INT PRIMARY KEY, n INT, d DECIMAL(10,2))")
    values = ", ".join(f"({i}, {'NULL' if i < 1500 else i}, {i}.5)" for i in range(5000))
    fe.query(f"INSERT INTO {db}.s VALUES {values}")
    conn = mysql.connector.connect(host="127.0.0.1", port=fe.mysql_port, user="root", database=db, use_pure=True)
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT id, n, d FROM s WHERE id >= ? ORDER BY id", (0,))
        rows = cur.fetchall()
    finally:
        conn.close()
    assert len(rows) == 5000 and rows[1499] == (1499, None, decimal.Decimal("1499.50"))
    assert rows[1500] == (1500, 1500, decimal.Decimal("1500.50"))
    assert rows[-1] == (4999, 4999, decimal.Decimal("4999.50"))
