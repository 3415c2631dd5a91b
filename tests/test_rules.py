"""Pure rules: privileges, password hashes, processlist rows, KILL parsing."""

from __future__ import annotations

import pytest
import sqlglot

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.pb import fecluster_pb2 as pb
from coordinator.processlist import COLUMNS, INFO_LIMIT, format_row, narrowing
from coordinator.users import ADMIN_PRIV, UserRecord, may_kill, native_password_hash, root_user
from frontend.statements.cluster import parse_kill_target
from tests.support import SEED_COLUMNS

ALICE = UserRecord("alice", native_password_hash("a"))
ADMIN = UserRecord("ops", "", frozenset({ADMIN_PRIV}))


def test_kill_rule_is_owner_or_admin() -> None:
    assert may_kill(ALICE, "alice")
    assert not may_kill(ALICE, "root")
    assert may_kill(ADMIN, "alice")
    assert may_kill(root_user(""), "alice")
    assert not may_kill(None, "alice")  # an unknown requester is nobody's owner


def test_native_password_hash_matches_mysql() -> None:
    # SELECT PASSWORD('secret') on MySQL 5.7 -> *14E65567ABDB5135D0CFD9A70B3032C179A49EE7
    assert native_password_hash("secret").upper() == "14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
    assert native_password_hash("") == ""


def test_user_record_round_trips() -> None:
    user = UserRecord("bob", native_password_hash("x"), frozenset({ADMIN_PRIV}))
    assert UserRecord.from_json("bob", user.to_json()) == user


def _row(**kw: object) -> pb.ProcessRow:
    base = dict(
        id=5,
        user="u",
        host="h:1",
        login_time="2024-11-04 20:18:07",
        catalog="internal",
        db="test",
        command="Query",
        time=3,
        state="OK",
        query_id="q",
        info="x" * 150,
        fe="10.0.0.1:9020",
    )
    base.update(kw)
    return pb.ProcessRow(**base)  # type: ignore[arg-type]


def test_row_has_the_seed_columns_in_order() -> None:
    assert list(COLUMNS) == SEED_COLUMNS
    row = format_row(_row(), caller_id=5, full=False)
    assert len(row) == 14
    assert row[0] == "Yes" and row[1] == 5 and row[12] == "10.0.0.1:9020"
    assert len(row[11]) == INFO_LIMIT == 100
    assert row[13] is None  # CloudCluster unset is NULL
    assert format_row(_row(), caller_id=6, full=True)[0] == "No"
    assert len(format_row(_row(), caller_id=6, full=True)[11]) == 150
    assert format_row(_row(cloud_cluster="cc1"), 1, False)[13] == "cc1"


@pytest.mark.parametrize(
    "kind,arg,code",
    [
        (None, "0", errors.UNKNOWN_THREAD),
        (None, "-1", errors.UNKNOWN_THREAD),
        (None, "99999999999", errors.UNKNOWN_THREAD),
        (None, "4294967296", errors.UNKNOWN_THREAD),
        (None, "abc", errors.PARSE_ERROR),
        ("connection", "1 2", errors.PARSE_ERROR),
        ("query", "''", errors.UNKNOWN_QUERY),
        ("query", "'" + "x" * 129 + "'", errors.UNKNOWN_QUERY),
        (None, "'abc'", errors.PARSE_ERROR),
    ],
)
def test_bad_kill_arguments(kind: str | None, arg: str, code: int) -> None:
    with pytest.raises(SqlError) as e:
        parse_kill_target(kind, arg, own_id=42)
    assert e.value.code == code


def test_kill_targets() -> None:
    assert parse_kill_target(None, "1048577", 9).connection_id == 1048577
    assert parse_kill_target("QUERY", "1048577", 9).kind == pb.KILL_QUERY
    assert parse_kill_target("connection", "connection_id()", 9).connection_id == 9
    qid = "0001018f3c2d9e00-1234567800000001"
    target = parse_kill_target("query", f"'{qid}'", 9)
    assert target.query_id == qid and target.kind == pb.KILL_QUERY
    assert parse_kill_target("query", "'1048577'", 9).connection_id == 1048577


def test_a_quoted_kill_query_argument_is_a_query_id_or_a_trace_id() -> None:
    assert parse_kill_target("query", "'0123456789abcdef-0123456789abcdef'", 7).query_id
    assert parse_kill_target("query", "'job-42'", 7).trace_id == "job-42"


@pytest.mark.parametrize("user", ["'bob'", "bob", "`bob`", "'bob'@'%'", "bob@localhost"])
def test_kill_user_names_the_user_and_spares_the_requester(user: str) -> None:
    target = parse_kill_target("query", "", 7, user=user)
    assert target.user == "bob" and target.spare_connection_id == 7 and target.kind == pb.KILL_QUERY


@pytest.mark.parametrize(
    ("where", "ids", "users", "complete"),
    [
        ("ID = 5", {5}, None, True),
        ("5 = id AND user = 'bob'", {5}, {"bob"}, True),
        ("ID IN (1, 2, 3) AND ID IN (2, 3, 4)", {2, 3}, None, True),
        ("`USER` IN ('a', 'b') AND COMMAND = 'Query'", None, {"a", "b"}, False),
        ("(ID = 7) AND TIME > 3", {7}, None, False),
        ("ID = 5 OR USER = 'bob'", None, None, False),  # an OR pins nothing
        ("ID = '5'", None, None, False),  # text against a number: left to the full evaluation
        ("USER = 5", None, None, False),
        ("INFO LIKE '%x%'", None, None, False),
    ],
)
def test_processlist_narrowing(where: str, ids: set[int] | None, users: set[str] | None, complete: bool) -> None:
    """What an owner may decide from its session table alone, before it builds rows."""
    condition = sqlglot.parse_one(f"SELECT ID FROM processlist WHERE {where}", read="mysql").args["where"].this
    narrow = narrowing(condition)
    assert (narrow.ids, narrow.users, narrow.complete) == (
        None if ids is None else frozenset(ids),
        None if users is None else frozenset(users),
        complete,
    )
    assert narrow.admits(5, "bob") == ((ids is None or 5 in ids) and (users is None or "bob" in users))
