"""The SQL text helpers, in process: pure functions at their edges."""

from __future__ import annotations

import time

import pytest

from frontend.sqlparse import without_doris_clauses
from frontend.sqltext import like, redact, statement_text, strip_comments, unescape, unquote


@pytest.mark.parametrize(
    ("sql", "text"),
    [
        ("/* app=x */ KILL 5", "KILL 5"),
        ("KILL 5; -- done", "KILL 5"),
        ("KILL 5 # trailing", "KILL 5"),
        ("SELECT '/* not a comment */'", "SELECT '/* not a comment */'"),
        ("SELECT 'it''s -- fine'", "SELECT 'it''s -- fine'"),
        ('SELECT "a\\" # b"', 'SELECT "a\\" # b"'),
        ("SELECT 1--2", "SELECT 1--2"),  # "--" without a space is minus minus
        ("/* unterminated", ""),
        ("  ;  ", ""),
    ],
)
def test_statement_text(sql: str, text: str) -> None:
    assert statement_text(sql) == text


def test_strip_comments_leaves_plain_sql_alone() -> None:
    sql = "SELECT a FROM t WHERE b = 'x'"
    assert strip_comments(sql) is sql


@pytest.mark.parametrize(
    ("body", "quote", "value"),
    [("a\\nb", "'", "a\nb"), ("it''s", "'", "it's"), ('say ""hi""', '"', 'say "hi"'), ("\\0\\Z\\%", "'", "\0\x1a%")],
)
def test_unescape(body: str, quote: str, value: str) -> None:
    assert unescape(body, quote) == value


def test_unquote() -> None:
    assert unquote("`a``b`") == "a`b"
    assert unquote("'bob'") == "bob"
    assert unquote("plain") == "plain"
    assert unquote("'") == "'"


def test_redact_hides_password_literals_only_in_password_statements() -> None:
    assert redact("CREATE USER 'bob' IDENTIFIED BY 'hunter2'") == "CREATE USER '<secret>' IDENTIFIED BY '<secret>'"
    assert redact("SET PASSWORD = 'x'") == "SET PASSWORD = '<secret>'"
    assert redact("SELECT 'hunter2'") == "SELECT 'hunter2'"


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("%time%", "wait_timeout", True),
        ("WAIT%", "wait_timeout", True),
        ("w_it_timeout", "wait_timeout", True),
        ("wait", "wait_timeout", False),
        ("%", "", True),
        ("_", "", False),
        ("a%b%c", "abc", True),
        ("a%b%c", "acb", False),
        ("%a%a", "aa", True),
        ("%a%a", "a", False),
        ("%\\_%", "a_b", True),
        ("%\\_%", "ab", False),
        ("100\\%", "100%", True),
    ],
)
def test_like(pattern: str, text: str, matches: bool) -> None:
    assert like(pattern, text) is matches


def test_like_never_backtracks() -> None:
    """A regex built from this pattern froze an FE for seconds (10 '%'); each
    two more '%' multiplied that by ten."""
    start = time.perf_counter()
    for _ in range(100):
        assert not like("%" * 30 + "a%" * 30 + "!", "a" * 200)
    assert time.perf_counter() - start < 2  # generous: about 10 ms here


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "CREATE TABLE t (k INT, v VARCHAR(10)) DUPLICATE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 10"
            " PROPERTIES ('replication_num' = '1')",
            "CREATE TABLE t (k INT, v VARCHAR(10))",
        ),
        (
            "CREATE TABLE a (k INT, n BIGINT SUM, sum INT, m INT MAX NOT NULL) ENGINE=OLAP AGGREGATE KEY(k)"
            " COMMENT 'x' AUTO PARTITION BY RANGE (date_trunc(d, 'month')) () DISTRIBUTED BY RANDOM BUCKETS AUTO"
            " ROLLUP (r1 (k)) BROKER PROPERTIES ('a' = 'b')",
            "CREATE TABLE a (k INT, n BIGINT , sum INT, m INT NOT NULL) COMMENT 'x'",
        ),
        # MySQL's own syntax stays as it is, PARTITION BY included.
        ("CREATE TABLE t (k INT) PARTITION BY RANGE (k) (PARTITION p0 VALUES LESS THAN (10))", None),
        ("CREATE TABLE t (id INT PRIMARY KEY, UNIQUE KEY u (id)) ENGINE=InnoDB", None),
        ("CREATE TABLE t AS SELECT (1) AS properties", None),
        ("SELECT 'DISTRIBUTED BY' FROM t", None),
    ],
)
def test_without_doris_clauses(sql: str, expected: str | None) -> None:
    assert without_doris_clauses(sql) == (sql if expected is None else expected)
