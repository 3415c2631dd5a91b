"""Each cluster user's own account on a MySQL backend (frontend/backend_accounts.py),
checked by logging in to a private mariadbd AS the account with PyMySQL."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pymysql
import pytest

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import Scope, granted, revoked
from coordinator.users import UserRecord, native_password_hash
from frontend.backend_accounts import (
    BackendAccounts,
    account,
    db_pattern,
    desired_grants,
    reselect_needed,
    scramble_with_stage1,
    stage1_from_password,
    stage1_from_scramble,
)
from frontend.mysql_backend import MysqlBackend
from frontend.statements import users as user_statements
from frontend.wire import auth
from tests.mariadb import MariaDB

SVC, SVC_PW = "ba_svc", "ba-svc-pw"

# ------------------------------------------------------------------ pure helpers


def test_stage1_helpers_agree_with_the_wire_auth() -> None:
    for password in ("secret", "pässwörd", "x" * 200):
        stored = native_password_hash(password)
        nonce = os.urandom(20)
        client = auth.scramble(password, nonce)
        assert auth.verify_native(stored, nonce, client)
        stage1 = stage1_from_scramble(stored, nonce, client)
        assert stage1 == stage1_from_password(password) == auth.stage1_of_password(password)
        assert stage1 == auth.stage1(stored, nonce, client)  # the relay's own copy agrees
        # SHA1(pw) answers any other nonce as the password itself would.
        other = os.urandom(20)
        assert scramble_with_stage1(stage1, other) == auth.scramble(password, other)
        assert auth.verify_native(stored, other, scramble_with_stage1(stage1, other))
        # A wrong scramble, a wrong nonce, a short answer, a broken hash: None.
        assert stage1_from_scramble(stored, nonce, auth.scramble("wrong", nonce)) is None
        assert stage1_from_scramble(stored, other, client) is None
        assert stage1_from_scramble(stored, nonce, client[:19]) is None
        assert stage1_from_scramble("zz" * 20, nonce, client) is None


def test_empty_password_helpers() -> None:
    nonce = os.urandom(20)
    assert stage1_from_password("") == b""
    assert stage1_from_scramble("", nonce, b"") == b""
    assert stage1_from_scramble("", nonce, auth.scramble("x", nonce)) is None
    assert scramble_with_stage1(b"", nonce) == b""


def test_privilege_table() -> None:
    user = UserRecord(
        "u",
        privileges=frozenset({"SELECT_PRIV", "NODE_PRIV", "GRANT_PRIV"}),
        grants=frozenset(
            {("a_b", "LOAD_PRIV"), ("d.t", "ALTER_PRIV"), ("d.t", "CREATE_PRIV"), ("mysql.user", "SELECT_PRIV")}
        ),
    )
    got = desired_grants(user, ["x", "50%"])
    assert got == {
        ("x", None): {"SELECT", "SHOW VIEW", "LOCK TABLES"},
        ("50\\%", None): {"SELECT", "SHOW VIEW", "LOCK TABLES"},
        ("a\\_b", None): {"INSERT", "UPDATE", "DELETE"},
        ("d", "t"): {"ALTER", "INDEX", "CREATE", "CREATE VIEW", "REFERENCES"},  # no db-only privilege on a table
    }
    admin = desired_grants(UserRecord("a", privileges=frozenset({"ADMIN_PRIV"})), ["x"])
    assert "DELETE HISTORY" in admin[("x", None)] and "GRANT OPTION" not in admin[("x", None)]
    assert None not in {level[0] for level in admin}  # never a global grant
    assert desired_grants(UserRecord("n", privileges=frozenset({"USAGE_PRIV", "NODE_PRIV"})), ["x"]) == {}


def test_reselect_needed() -> None:
    assert reselect_needed(Scope("d"), "d")
    assert reselect_needed(Scope(), "d")
    assert not reselect_needed(Scope("d"), "e")
    assert not reselect_needed(Scope("d", "t"), "d")
    assert not reselect_needed(Scope(), None)


def test_sql_quoting() -> None:
    assert account("o'q`b\\x") == "`o'q``b\\x`@`%`"
    assert db_pattern("a_b%c\\d") == "a\\_b\\%c\\\\d"


# ------------------------------------------------------------------ against a real server


@pytest.fixture(scope="module")
def server(backend_mariadb: MariaDB) -> MariaDB:
    """The shared test MariaDB with a service account of our own that may GRANT."""
    with contextlib.closing(backend_mariadb._admin()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER IF NOT EXISTS '{SVC}'@'%' IDENTIFIED BY '{SVC_PW}'")
        cur.execute(f"GRANT ALL ON *.* TO '{SVC}'@'%' WITH GRANT OPTION")
    return backend_mariadb


@pytest.fixture
async def backend(server: MariaDB) -> AsyncIterator[MysqlBackend]:
    b = MysqlBackend(f"mysql://{SVC}:{SVC_PW}@127.0.0.1:{server.port}")
    try:
        yield b
    finally:
        b.shutdown()


@pytest.fixture
def ba(backend: MysqlBackend) -> BackendAccounts:
    return BackendAccounts(backend)


def svc_sql(server: MariaDB, sql: str) -> Any:
    return server.query(sql, SVC, SVC_PW)


@pytest.fixture
def dbs(server: MariaDB) -> Iterator[tuple[str, str]]:
    """Two databases, each with tables t1 and t2 holding one row."""
    names = (f"ba{uuid.uuid4().hex[:8]}", f"ba{uuid.uuid4().hex[:8]}")
    for name in names:
        svc_sql(server, f"CREATE DATABASE {name}")
        for table in ("t1", "t2"):
            svc_sql(server, f"CREATE TABLE {name}.{table} (a INT)")
            svc_sql(server, f"INSERT INTO {name}.{table} VALUES (1)")
    yield names
    for name in names:
        svc_sql(server, f"DROP DATABASE IF EXISTS {name}")


def new_name(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def user(name: str, password: str = "pw", **kw: Any) -> UserRecord:
    return UserRecord(name, native_password_hash(password), **kw)


def login(server: MariaDB, name: str, password: str = "pw", db: str | None = None) -> pymysql.Connection:
    return server.connect(name, password, database=db)


def run(conn: pymysql.Connection, sql: str) -> Any:
    """The rows, or the error code the user sees."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return tuple(cur.fetchall())
    except pymysql.MySQLError as e:
        return e.args[0]


def try_login(server: MariaDB, name: str, password: str = "pw") -> int:
    try:
        login(server, name, password).close()
        return 0
    except pymysql.MySQLError as e:
        return int(e.args[0])


async def test_create_login_grant_revoke_drop(server: MariaDB, ba: BackendAccounts, dbs: tuple[str, str]) -> None:
    a, b = dbs
    name = new_name()
    u = user(name, "pw1", grants=frozenset({(f"{a}.t1", "SELECT_PRIV")}))
    await ba.create(u)
    assert try_login(server, name, "wrong") == 1045
    with contextlib.closing(login(server, name, "pw1")) as conn:
        assert run(conn, f"SELECT a FROM {a}.t1") == ((1,),)
        assert run(conn, f"SELECT a FROM {a}.t2") == errors.TABLE_ACCESS_DENIED
        assert run(conn, f"INSERT INTO {a}.t1 VALUES (2)") == errors.TABLE_ACCESS_DENIED
        assert run(conn, f"USE {b}") == errors.DB_ACCESS_DENIED
        assert run(conn, "SELECT user FROM mysql.user") == errors.TABLE_ACCESS_DENIED

        u2 = granted(u, Scope(a), frozenset({"LOAD_PRIV"}))
        await ba.apply_grants(u2)  # the open connection: in force for its next statement
        assert run(conn, f"INSERT INTO {a}.t2 VALUES (2)") == ()
        assert run(conn, f"SELECT a FROM {a}.t2") == errors.TABLE_ACCESS_DENIED

        await ba.apply_grants(revoked(u2, Scope(a, "t1"), frozenset({"SELECT_PRIV"})))
        assert run(conn, f"SELECT a FROM {a}.t1") == errors.TABLE_ACCESS_DENIED

    await ba.set_password(replace(u, auth_string=native_password_hash("pw2")))
    assert try_login(server, name, "pw1") == 1045
    assert try_login(server, name, "pw2") == 0
    assert await ba.drop(name)
    assert try_login(server, name, "pw2") == 1045
    assert not await ba.drop(name)


async def test_global_grant_covers_user_data_not_system_schemas(
    server: MariaDB, ba: BackendAccounts, dbs: tuple[str, str]
) -> None:
    a, b = dbs
    name = new_name()
    await ba.create(user(name, privileges=frozenset({"SELECT_PRIV", "LOAD_PRIV", "CREATE_PRIV", "DROP_PRIV"})))
    with contextlib.closing(login(server, name)) as conn:
        assert run(conn, f"SELECT a FROM {a}.t1") == ((1,),)
        assert run(conn, f"SELECT a FROM {b}.t2") == ((1,),)
        assert run(conn, f"CREATE TABLE {b}.t3 (a INT)") == ()
        for sql in (
            "SELECT user FROM mysql.user",
            "SELECT * FROM mysql.global_priv",
            "SELECT * FROM performance_schema.threads",
            "SELECT * FROM sys.version",
        ):
            assert run(conn, sql) == errors.TABLE_ACCESS_DENIED, sql
        assert run(conn, "CREATE TABLE mysql.junk (a INT)") == errors.TABLE_ACCESS_DENIED
        assert run(conn, "SELECT LOAD_FILE('/etc/passwd')") == ((None,),)  # no FILE
        assert run(conn, f"CREATE DATABASE {new_name('nd')}") == errors.DB_ACCESS_DENIED  # the FE's statement
        assert {r[0] for r in run(conn, "SHOW DATABASES")} >= {a, b}


async def test_new_database_reaches_global_grantees(server: MariaDB, ba: BackendAccounts, dbs: tuple[str, str]) -> None:
    name = new_name()
    u = user(name, privileges=frozenset({"SELECT_PRIV"}))
    await ba.create(u)
    fresh_db = new_name("nd")
    svc_sql(server, f"CREATE DATABASE {fresh_db}")
    try:
        svc_sql(server, f"CREATE TABLE {fresh_db}.t (a INT)")
        with contextlib.closing(login(server, name)) as conn:
            assert run(conn, f"SELECT * FROM {fresh_db}.t") == errors.TABLE_ACCESS_DENIED
            await ba.on_database_created(fresh_db, [u, user("root"), user(SVC)])
            assert run(conn, f"SELECT * FROM {fresh_db}.t") == ()
    finally:
        svc_sql(server, f"DROP DATABASE {fresh_db}")


async def test_database_names_are_not_patterns(server: MariaDB, ba: BackendAccounts) -> None:
    """A grant on `a_b` does not open `axb`; a cluster grant on a database named `%` opens nothing else."""
    tag = uuid.uuid4().hex[:6]
    under, lookalike = f"p_{tag}", f"px{tag}"
    for db in (under, lookalike):
        svc_sql(server, f"CREATE DATABASE {db}")
        svc_sql(server, f"CREATE TABLE {db}.t (a INT)")
    try:
        name = new_name()
        await ba.create(user(name, grants=frozenset({(under, "SELECT_PRIV"), ("%", "SELECT_PRIV")})))
        with contextlib.closing(login(server, name)) as conn:
            assert run(conn, f"SELECT * FROM {under}.t") == ()
            assert run(conn, f"SELECT * FROM {lookalike}.t") == errors.TABLE_ACCESS_DENIED
            assert run(conn, "SELECT user FROM mysql.user") == errors.TABLE_ACCESS_DENIED
    finally:
        for db in (under, lookalike):
            svc_sql(server, f"DROP DATABASE {db}")


async def test_hostile_names(server: MariaDB, ba: BackendAccounts) -> None:
    name = "o'q`b\\x\"; DROP USER root -- " + uuid.uuid4().hex[:4]
    db = "d'`\\" + uuid.uuid4().hex[:4]
    quoted_db = "`" + db.replace("`", "``") + "`"
    svc_sql(server, f"CREATE DATABASE {quoted_db}")
    try:
        svc_sql(server, f"CREATE TABLE {quoted_db}.`t'``` (a INT)")
        u = user(name, "p'w\\`", grants=frozenset({(f"{db}.t'`", "SELECT_PRIV")}))
        await ba.create(u)
        with contextlib.closing(login(server, name, "p'w\\`")) as conn:
            assert run(conn, f"SELECT * FROM {quoted_db}.`t'```") == ()
            assert run(conn, "SELECT user FROM mysql.user") == errors.TABLE_ACCESS_DENIED
        assert await ba.apply_grants(u) == []  # read back exactly: nothing to change
        assert await ba.drop(name)
        assert svc_sql(server, "SELECT COUNT(*) FROM mysql.user WHERE user = 'root'")[0][0] >= 1
    finally:
        svc_sql(server, f"DROP DATABASE {quoted_db}")


async def test_service_account_name_refused(ba: BackendAccounts) -> None:
    with pytest.raises(SqlError) as e:
        await ba.create(user(SVC))
    assert e.value.code == errors.CANNOT_USER and "service account" in e.value.message


async def test_grants_on_open_connections_as_measured(
    server: MariaDB, ba: BackendAccounts, dbs: tuple[str, str]
) -> None:
    """The facts the docstring states: a database-level change to the connection's
    current database needs a re-select; with no privilege left the re-select
    fails and the old privileges stay until the connection leaves the database."""
    a, _ = dbs
    name = new_name()
    u = user(name, grants=frozenset({(a, "LOAD_PRIV")}))
    await ba.create(u)
    with contextlib.closing(login(server, name, db=a)) as conn:
        with_select = granted(u, Scope(a), frozenset({"SELECT_PRIV"}))
        await ba.apply_grants(with_select)
        assert run(conn, "SELECT a FROM t1") == errors.TABLE_ACCESS_DENIED  # not yet: current database
        assert run(conn, f"SELECT a FROM {a}.t1") == errors.TABLE_ACCESS_DENIED  # qualified: the same
        conn.select_db(a)  # COM_INIT_DB of the same database
        assert run(conn, "SELECT a FROM t1") == ((1,),)
        await ba.apply_grants(revoked(with_select, Scope(a), frozenset({"SELECT_PRIV", "LOAD_PRIV"})))
        assert run(conn, "SELECT a FROM t1") == ((1,),)  # still: the revoke is not in force here
        with pytest.raises(pymysql.MySQLError) as e:
            conn.select_db(a)
        assert e.value.args[0] == errors.DB_ACCESS_DENIED
        assert run(conn, "SELECT a FROM t1") == ((1,),)  # and the failed re-select changed nothing
        assert run(conn, "USE information_schema") == ()
        assert run(conn, f"SELECT a FROM {a}.t1") == errors.TABLE_ACCESS_DENIED


async def test_reconcile_repairs_drift(
    server: MariaDB, ba: BackendAccounts, dbs: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = dbs
    kept, lost, repassed, gone = (new_name(p) for p in ("k", "l", "r", "g"))
    users = [
        user(kept, grants=frozenset({(f"{a}.t1", "SELECT_PRIV")})),
        user(lost, privileges=frozenset({"SELECT_PRIV"}), grants=frozenset({(f"{a}.t2", "LOAD_PRIV")})),
        user(repassed),
        user(gone),
    ]
    for u in users:
        await ba.create(u)
    operator = new_name("op")
    svc_sql(server, f"CREATE USER '{operator}'@'%' IDENTIFIED BY 'x'")  # not ours: never touched
    clash = new_name("c")
    svc_sql(server, f"CREATE USER '{clash}'@'%' IDENTIFIED BY 'x'")  # a cluster user's name, not ours
    try:
        # Drift made by hand with the service account.
        svc_sql(server, f"GRANT SELECT ON mysql.* TO '{kept}'@'%'")
        svc_sql(server, f"GRANT INSERT ON {b}.t2 TO '{kept}'@'%'")
        svc_sql(server, f"GRANT PROCESS ON *.* TO '{kept}'@'%'")
        svc_sql(server, f"DROP USER '{lost}'@'%'")
        svc_sql(server, f"ALTER USER '{repassed}'@'%' IDENTIFIED BY 'other'")
        with contextlib.closing(login(server, kept)) as conn:
            assert run(conn, "SELECT COUNT(*) FROM mysql.user")[0][0] > 0  # the drift is real
        assert try_login(server, repassed, "other") == 0

        # A table of a cluster grant dropped: the server refuses a GRANT on it (1146),
        # which must not keep the recreated account from its other grants.
        cluster = [
            users[0],
            replace(users[1], grants=users[1].grants | {(f"{a}.vanished", "SELECT_PRIV")}),
            users[2],
            user(clash, "y"),
        ]  # `gone` left the cluster
        with caplog.at_level(logging.INFO, logger="fecluster.backend_accounts"):
            repairs = await ba.reconcile(cluster)
        text = "\n".join(repairs)
        assert f"`{lost}`@`%`: created (missing)" in text
        assert f"`{repassed}`@`%`: password hash reset" in text
        assert f"`{gone}`@`%`: dropped" in text
        assert re.search(rf"`{kept}`@`%`: REVOKE SELECT ON `mysql`\.\* FROM", text)
        assert re.search(rf"`{kept}`@`%`: REVOKE PROCESS ON \*\.\* FROM", text)
        assert len([r for r in caplog.records if r.levelno == logging.INFO]) == len(repairs)
        assert any(clash in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

        with contextlib.closing(login(server, kept)) as conn:
            assert run(conn, "SELECT COUNT(*) FROM mysql.user") == errors.TABLE_ACCESS_DENIED
            assert run(conn, f"INSERT INTO {b}.t2 VALUES (3)") == errors.TABLE_ACCESS_DENIED
            assert run(conn, f"SELECT a FROM {a}.t1") == ((1,),)
        with contextlib.closing(login(server, lost)) as conn:
            assert run(conn, f"SELECT a FROM {b}.t1") == ((1,),)
            assert run(conn, f"INSERT INTO {a}.t2 VALUES (4)") == ()
        assert any("vanished" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        assert try_login(server, repassed, "other") == 1045 and try_login(server, repassed) == 0
        assert try_login(server, gone) == 1045
        assert try_login(server, operator, "x") == 0 and try_login(server, clash, "x") == 0
        assert await ba.reconcile(cluster) == []  # in step now (the refused grant is refused again, not a repair)
    finally:
        for name in (operator, clash, *(u.name for u in users)):
            svc_sql(server, f"DROP USER IF EXISTS '{name}'@'%'")


# ------------------------------------------------------------------ the statements


@dataclass
class FakeAccounts:
    """The cluster user table in memory, with ``coordinator.accounts.Accounts``'s
    methods and errors; ``fail`` makes the next write raise (Redis away)."""

    users: dict[str, UserRecord] = field(default_factory=dict)
    fail: bool = False

    def _write(self) -> None:
        if self.fail:
            raise SqlError(errors.UNKNOWN_ERROR, "user table unavailable (Redis): test")

    async def fresh(self, name: str) -> UserRecord | None:
        return self.users.get(name) or (
            UserRecord("root", privileges=frozenset({"ADMIN_PRIV"})) if name == "root" else None
        )

    async def create(
        self,
        name: str,
        password: str,
        if_not_exists: bool,
        auth_string: str | None = None,
        max_user_connections: int = 0,
    ) -> None:
        self._write()
        self.users[name] = UserRecord(name, native_password_hash(password) if auth_string is None else auth_string)

    async def drop(self, name: str, if_exists: bool) -> None:
        self._write()
        if self.users.pop(name, None) is None and not if_exists:
            raise SqlError(errors.CANNOT_USER, f"Operation DROP USER failed for '{name}'@'%'")

    async def grant(self, name: str, privileges: frozenset[str], scope: Scope = Scope()) -> None:
        self._write()
        self.users[name] = granted(self.users[name], scope, privileges)

    async def revoke(self, name: str, privileges: frozenset[str], scope: Scope = Scope()) -> None:
        self._write()
        self.users[name] = revoked(self.users[name], scope, privileges)

    async def set_password(self, name: str, password: str) -> None:
        self._write()
        self.users[name] = replace(self.users[name], auth_string=native_password_hash(password))


@dataclass
class FakeSession:
    user: str = "root"


@pytest.fixture
def statements(backend: MysqlBackend, ba: BackendAccounts) -> Any:
    table = FakeAccounts()
    services: Any = type("S", (), {"accounts": table, "backend": backend, "backend_accounts": ba})()

    async def execute(sql: str) -> None:
        for pattern, handler in user_statements.HANDLERS:
            m = pattern.match(sql)
            if m:
                await handler(services, FakeSession(), m)  # type: ignore[arg-type]
                return
        raise AssertionError(f"no handler for {sql}")

    execute.table = table  # type: ignore[attr-defined]
    return execute


async def test_statements_change_backend_then_table(server: MariaDB, statements: Any, dbs: tuple[str, str]) -> None:
    a, _ = dbs
    name = new_name()
    await statements(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    await statements(f"GRANT SELECT_PRIV ON internal.{a}.* TO '{name}'")
    with contextlib.closing(login(server, name)) as conn:
        assert run(conn, f"SELECT a FROM {a}.t1") == ((1,),)
    await statements(f"REVOKE SELECT_PRIV ON {a}.* FROM '{name}'")
    with contextlib.closing(login(server, name)) as conn:
        assert run(conn, f"SELECT a FROM {a}.t1") == errors.TABLE_ACCESS_DENIED
    await statements(f"SET PASSWORD FOR '{name}' = PASSWORD('new')")
    assert try_login(server, name, "new") == 0
    await statements(f"DROP USER '{name}'")
    assert try_login(server, name, "new") == 1045 and name not in statements.table.users
    with pytest.raises(SqlError) as e:
        await statements(f"CREATE USER '{SVC}' IDENTIFIED BY 'x'")
    assert e.value.code == errors.CANNOT_USER and SVC not in statements.table.users


async def test_backend_refusal_leaves_the_table_unchanged(server: MariaDB, statements: Any) -> None:
    name = new_name()
    await statements(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    before = statements.table.users[name]
    with pytest.raises(SqlError) as e:  # MariaDB refuses a 65-character table name
        await statements(f"GRANT SELECT_PRIV ON d.{'t' * 65} TO '{name}'")
    assert e.value.code == 1103 and "Incorrect table name" in e.value.message  # the server's own answer
    assert statements.table.users[name] == before
    with pytest.raises(SqlError) as e:  # as MariaDB's own GRANT: no table-level grant on a missing table
        await statements(f"GRANT SELECT_PRIV ON {name}db.no_such_table TO '{name}'")
    assert e.value.code == errors.NO_SUCH_TABLE
    for scope in ("mysql.user", "mysql.*", "internal.PERFORMANCE_SCHEMA.*", "sys.*"):  # the server's, not user data
        with pytest.raises(SqlError) as e:
            await statements(f"GRANT SELECT_PRIV ON {scope} TO '{name}'")
        assert (
            e.value.code == errors.DB_ACCESS_DENIED
            and "Access denied for user 'root'@'%' to database" in e.value.message
        )
    with contextlib.closing(login(server, name)) as conn:
        assert run(conn, "SELECT user FROM mysql.user") == errors.TABLE_ACCESS_DENIED
    assert statements.table.users[name] == before
    clash = new_name("c")
    svc_sql(server, f"CREATE USER '{clash}'@'%'")  # an operator's account of that name
    try:
        with pytest.raises(SqlError) as e:
            await statements(f"CREATE USER '{clash}' IDENTIFIED BY 'pw'")
        assert e.value.code == errors.CANNOT_USER and clash not in statements.table.users
    finally:
        svc_sql(server, f"DROP USER '{clash}'@'%'")
    await statements(f"DROP USER '{name}'")


async def test_table_failure_undoes_the_backend(server: MariaDB, statements: Any, dbs: tuple[str, str]) -> None:
    a, _ = dbs
    name = new_name()
    statements.table.fail = True
    with pytest.raises(SqlError):
        await statements(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    assert try_login(server, name) == 1045  # the backend account was dropped again
    statements.table.fail = False
    await statements(f"CREATE USER '{name}' IDENTIFIED BY 'pw'")
    statements.table.fail = True
    with pytest.raises(SqlError):
        await statements(f"GRANT SELECT_PRIV ON {a}.* TO '{name}'")
    with contextlib.closing(login(server, name)) as conn:
        assert run(conn, f"SELECT a FROM {a}.t1") == errors.TABLE_ACCESS_DENIED
    with pytest.raises(SqlError):
        await statements(f"SET PASSWORD FOR '{name}' = 'other'")
    assert try_login(server, name) == 0
    with pytest.raises(SqlError):
        await statements(f"DROP USER '{name}'")
    assert try_login(server, name) == 0  # recreated with the same hash
    statements.table.fail = False
    await statements(f"DROP USER '{name}'")
