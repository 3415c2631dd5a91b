"""The pure privilege rule (coordinator.privileges) at its edges: what a parsed
statement needs, whether grants at each level allow it, the MySQL words of a
denial, and user records written before scoped grants existed."""

from __future__ import annotations

import json

import pytest

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import (
    ALTER_PRIV,
    CREATE_PRIV,
    DROP_PRIV,
    LOAD_PRIV,
    SELECT_PRIV,
    Need,
    Scope,
    allows,
    check,
    granted,
    grants_row,
    may_see_database,
    may_see_table,
    needs,
    parse_scope,
    revoked,
)
from coordinator.users import ADMIN_PRIV, UserRecord
from frontend.sqlparse import ByteBoundedCache, parse


def _needs(sql: str, db: str | None = "d") -> set[tuple[str, str, str | None, str | None]]:
    return {(n.privilege, n.command, n.db, n.table) for n in needs(parse(sql), db)}


S, L = (SELECT_PRIV, "SELECT"), (LOAD_PRIV, "INSERT")


@pytest.mark.parametrize(
    "sql,expected",
    [
        ("SELECT * FROM t", {(*S, "d", "t")}),
        ("SELECT * FROM rootdb.secrets", {(*S, "rootdb", "secrets")}),
        ("SELECT * FROM internal.rootdb.secrets", {(*S, "rootdb", "secrets")}),
        ("SELECT * FROM a JOIN rootdb.s ON 1 = 1", {(*S, "d", "a"), (*S, "rootdb", "s")}),
        ("SELECT * FROM a WHERE x IN (SELECT x FROM rootdb.s)", {(*S, "d", "a"), (*S, "rootdb", "s")}),
        ("WITH c AS (SELECT * FROM rootdb.s) SELECT * FROM c", {(*S, "rootdb", "s")}),
        ("SELECT * FROM a UNION SELECT * FROM rootdb.s", {(*S, "d", "a"), (*S, "rootdb", "s")}),
        ("SELECT 1 FROM DUAL", set()),
        ("INSERT INTO t VALUES (1)", {(*L, "d", "t")}),
        ("INSERT INTO t (x) SELECT x FROM rootdb.s", {(*L, "d", "t"), (*S, "rootdb", "s")}),
        ("REPLACE INTO t VALUES (1)", {(*L, "d", "t")}),
        ("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE x = 2", {(*L, "d", "t")}),
        ("UPDATE t SET x = 1 WHERE y IN (SELECT y FROM w)", {(LOAD_PRIV, "UPDATE", "d", "t"), (*S, "d", "w")}),
        ("DELETE FROM t WHERE x = 1", {(LOAD_PRIV, "DELETE", "d", "t")}),
        ("CREATE TABLE n (x INT)", {(CREATE_PRIV, "CREATE", "d", "n")}),
        ("CREATE TABLE n AS SELECT * FROM rootdb.s", {(CREATE_PRIV, "CREATE", "d", "n"), (*S, "rootdb", "s")}),
        ("CREATE INDEX i ON t (x)", {(CREATE_PRIV, "CREATE", "d", "t")}),
        ("CREATE DATABASE x", {(CREATE_PRIV, "CREATE", "x", None)}),
        ("ALTER TABLE t ADD COLUMN y INT", {(ALTER_PRIV, "ALTER", "d", "t")}),
        ("DROP TABLE a, rootdb.b", {(DROP_PRIV, "DROP", "d", "a"), (DROP_PRIV, "DROP", "rootdb", "b")}),
        ("DROP INDEX i ON t", {(DROP_PRIV, "DROP", "d", "t")}),
        ("DROP DATABASE rootdb", {(DROP_PRIV, "DROP", "rootdb", None)}),
        ("TRUNCATE TABLE t", {(DROP_PRIV, "DROP", "d", "t")}),
        ("DESCRIBE t", {(*S, "d", "t")}),
        # What the rule does not know needs global ADMIN_PRIV: denied, not allowed.
        ("VACUUM rootdb INTO '/tmp/x'", {(ADMIN_PRIV, "COMMAND", None, None)}),
        ("PRAGMA database_list", {(ADMIN_PRIV, "PRAGMA", None, None)}),
        ("DETACH x", {(ADMIN_PRIV, "ALIAS", None, None)}),
        ("SELECT * FROM rootdb.pragma_table_info('secrets')", {(ADMIN_PRIV, "SELECT", None, None)}),
        ("SELECT 1; DROP TABLE rootdb.secrets", {(ADMIN_PRIV, "BLOCK", None, None)}),
        ("CREATE FUNCTION f() RETURNS INT RETURN 1", {(ADMIN_PRIV, "CREATE", None, None)}),
    ],
)
def test_what_a_statement_needs(sql: str, expected: set[tuple[str, str, str | None, str | None]]) -> None:
    assert _needs(sql) == expected


def test_a_bare_table_name_without_a_database_is_1046() -> None:
    with pytest.raises(SqlError) as e:
        needs(parse("SELECT * FROM t"), None)
    assert e.value.code == errors.NO_DB


@pytest.mark.parametrize(
    "text,scope",
    [
        ("*.*.*", Scope()),
        ("*.*", Scope()),
        ("internal.*.*", Scope()),
        ("internal.db1.*", Scope("db1")),
        ("db1.*", Scope("db1")),
        ("`Db1`.`T`", Scope("db1", "t")),
        ("internal.db1.t", Scope("db1", "t")),
    ],
)
def test_scopes(text: str, scope: Scope) -> None:
    assert parse_scope(text) == scope


@pytest.mark.parametrize("text", ["hive.db.*", "*.t", "db", "db.t.x.y", "d*.t", ""])
def test_bad_scopes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_scope(text)


def _alice(**kw: object) -> UserRecord:
    return UserRecord("alice", "", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "scope,allowed",
    [
        (Scope(), {("d", "t"), ("d", "u"), ("e", "t")}),
        (Scope("d"), {("d", "t"), ("d", "u")}),
        (Scope("d", "t"), {("d", "t")}),
    ],
)
@pytest.mark.parametrize("privilege", [SELECT_PRIV, LOAD_PRIV, ALTER_PRIV, CREATE_PRIV, DROP_PRIV])
def test_each_privilege_at_each_level(privilege: str, scope: Scope, allowed: set[tuple[str, str]]) -> None:
    user = granted(_alice(), scope, frozenset({privilege}))
    for db, table in (("d", "t"), ("d", "u"), ("e", "t")):
        assert allows(user, Need(privilege, "X", db, table)) == ((db, table) in allowed)
        other = SELECT_PRIV if privilege != SELECT_PRIV else LOAD_PRIV
        assert not allows(user, Need(other, "X", db, table))  # one privilege is not another
    assert not allows(revoked(user, scope, frozenset({privilege})), Need(privilege, "X", "d", "t"))


def test_admin_priv_covers_everything_and_a_revoke_is_per_level() -> None:
    admin = granted(_alice(), Scope(), frozenset({ADMIN_PRIV}))
    assert allows(admin, Need(DROP_PRIV, "DROP", "rootdb", None)) and allows(admin, Need(ADMIN_PRIV, "X"))
    both = granted(granted(_alice(), Scope("d"), frozenset({SELECT_PRIV})), Scope("d", "t"), frozenset({SELECT_PRIV}))
    # Revoking at the table level leaves the database grant alone (MySQL, Doris).
    assert allows(revoked(both, Scope("d", "t"), frozenset({SELECT_PRIV})), Need(SELECT_PRIV, "SELECT", "d", "t"))


def test_denials_use_mysql_codes_and_words() -> None:
    alice = _alice()
    table = "SELECT command denied to user 'alice'@'%' for table 'secrets'"
    admin = "Access denied; you need (at least one of) the ADMIN_PRIV privilege(s) for this operation"
    cases = [
        (Need(SELECT_PRIV, "SELECT", "rootdb", "secrets"), 1142, table),
        (Need(DROP_PRIV, "DROP", "rootdb"), 1044, "Access denied for user 'alice'@'%' to database 'rootdb'"),
        (Need(ADMIN_PRIV, "PRAGMA"), 1227, admin),
    ]  # fmt: skip
    for need, code, message in cases:
        with pytest.raises(SqlError) as e:
            check(alice, "alice", [need])
        assert (e.value.code, e.value.message) == (code, message)
    with pytest.raises(SqlError):
        check(None, "ghost", [Need(SELECT_PRIV, "SELECT", "d", "t")])  # a dropped user has nothing


def test_visibility() -> None:
    user = granted(_alice(), Scope("d", "t"), frozenset({SELECT_PRIV}))
    assert may_see_database(user, "D") and not may_see_database(user, "rootdb")
    assert may_see_table(user, "d", "T") and not may_see_table(user, "d", "u")
    assert may_see_table(granted(_alice(), Scope(), frozenset({LOAD_PRIV})), "x", "y")
    assert not may_see_database(granted(_alice(), Scope(), frozenset({"NODE_PRIV"})), "x")


def test_old_records_load_and_new_ones_round_trip() -> None:
    old = json.dumps({"auth_string": "ab", "privileges": ["ADMIN_PRIV"]})
    assert UserRecord.from_json("bob", old) == UserRecord("bob", "ab", frozenset({ADMIN_PRIV}))
    user = granted(
        granted(_alice(), Scope("d"), frozenset({SELECT_PRIV, LOAD_PRIV})), Scope("d", "t"), frozenset({DROP_PRIV})
    )
    assert UserRecord.from_json("alice", user.to_json()) == user
    assert json.loads(user.to_json())["grants"] == {"d": ["LOAD_PRIV", "SELECT_PRIV"], "d.t": ["DROP_PRIV"]}
    assert "grants" not in json.loads(_alice().to_json())  # unchanged for users without scoped grants


def test_show_grants_row_is_doris_shaped() -> None:
    user = granted(granted(_alice(), Scope("d"), frozenset({SELECT_PRIV})), Scope("d", "t"), frozenset({DROP_PRIV}))
    row = grants_row(granted(user, Scope(), frozenset({ADMIN_PRIV})))
    assert row[0] == "'alice'@'%'" and row[2] == "No"
    assert row[4:8] == ("Admin_priv", None, "internal.d: Select_priv", "internal.d.t: Drop_priv")


def test_the_parse_cache_is_bounded_in_bytes() -> None:
    cache: ByteBoundedCache[str, int] = ByteBoundedCache(1000, 100, len)
    for i in range(100):
        cache.get(f"{i:050d}", lambda: 1)
    assert cache.bytes <= 1000 and len(cache) == 20
    cache.get("x" * 200, lambda: 2)  # too big to keep
    assert len(cache) == 20 and cache.bytes <= 1000


def test_names_keep_their_case_when_the_backend_does() -> None:
    """A MySQL server with lower_case_table_names = 0 holds `Sales` and `sales`
    apart: grants and needs then compare names as spelled."""
    from coordinator.privileges import Scope, needs, parse_scope

    assert parse_scope("Sales.*") == Scope("sales") and parse_scope("Sales.*", False) == Scope("Sales")
    assert parse_scope("internal.Sales.T", False) == Scope("Sales", "T")
    tree = parse("SELECT * FROM Sales.T JOIN t2")
    assert [(n.db, n.table) for n in needs(tree, "Cur", fold_case=False)] == [("Sales", "T"), ("Cur", "t2")]
    assert [(n.db, n.table) for n in needs(tree, "Cur")] == [("sales", "t"), ("cur", "t2")]
