"""Each cluster user's own account on the MySQL/MariaDB backend, kept in step
with the cluster's user table (issue 20, item 4).

Over a MySQL backend a session's backend connection logs in as its user's
account, so the server decides every read, write, routine, file and
system-schema access. This module makes and keeps those accounts; the service
account (the ``--backend`` URL's user, which needs CREATE USER, GRANT OPTION
and KILL: ``GRANT ALL ON *.* TO svc WITH GRANT OPTION``) does the work.

**Names.** Cluster user ``u`` is backend account ```u`@`%```. The cluster's
``root`` runs as the service account and has no account of its own; a cluster
user named like the service account is refused (1396), and one that exists
already is left alone by the sync (a warning).

**Passwords without a second secret.** The cluster stores mysql_native_password
hashes (hex SHA1(SHA1(pw))); the backend account is made with the same hash
(``IDENTIFIED WITH mysql_native_password AS '*HEX'``, which MariaDB and MySQL
both take). At login the client's scramble reveals SHA1(pw) to whoever holds
SHA1(SHA1(pw)) (``stage1_from_scramble``), and SHA1(pw) answers any nonce
(``scramble_with_stage1``): the FE logs in to the backend as the user without
ever holding the password. SET PASSWORD changes both hashes.

**Which backend accounts are the FEs'.** Each account the FEs make is granted
the role ``fecluster_account`` (made once, with no privileges, never a default
role: granting it gives nothing). The sync drops only accounts holding the role
whose cluster user is gone, so an operator's own accounts are never touched.
The mark lives and dies with the account (no table to keep in step); MariaDB
has no ``CREATE USER ... COMMENT``. An account of a cluster user's name that
lacks the mark (an operator's, or one left by an FE that died between CREATE
USER and the role's GRANT) is reported, never changed.

**Privileges** (``DB_PRIVILEGES``; at table level only those MySQL allows on a
table, ``TABLE_PRIVILEGES``):

==============  ==========================================================  ===========
Doris           backend, database level (``db``.*)                          table level
==============  ==========================================================  ===========
SELECT_PRIV     SELECT, SHOW VIEW, LOCK TABLES (mysqldump's default lock)   SELECT, SHOW VIEW
LOAD_PRIV       INSERT, UPDATE, DELETE                                      same
ALTER_PRIV      ALTER, INDEX                                                same
CREATE_PRIV     CREATE, CREATE VIEW, INDEX, REFERENCES,                     CREATE, CREATE VIEW,
                CREATE TEMPORARY TABLES                                     INDEX, REFERENCES
DROP_PRIV       DROP                                                        same
ADMIN_PRIV      every database privilege (``ALL_DB``: routines, triggers,   every table privilege
                events, EXECUTE ...), never GRANT OPTION
NODE_PRIV,      nothing: the FE's own concerns (nodes, user management,
GRANT_PRIV,     resources); user management runs as the service account
USAGE_PRIV
==============  ==========================================================  ===========

No global (``*.*``) privilege is ever granted, to admins neither: FILE, SUPER,
PROCESS, CREATE USER, RELOAD, SHUTDOWN, GRANT OPTION stay the service
account's. Scopes: ``db.tbl`` -> ```db`.`tbl```; ``db.*`` / ``internal.db.*``
-> ```db`.*`` with ``_``, ``%`` and ``\\`` escaped (MySQL reads a database
grant as a LIKE pattern: unescaped, ``my_db`` would also open ``myxdb`` and a
cluster grant on a database named ``%`` would open every schema);
a cluster grant on a system schema is refused (1044, ``check_scope``) and
never mapped; ``*.*.*`` -> the same privileges on every user database, one database-level
grant each, kept in step with the list of databases (``SHOW DATABASES`` less
information_schema, mysql, performance_schema, sys) whenever a user's grants
are applied and at every sync, and at once for a database made through the FE
(``on_database_created``). Measured on MariaDB 10.11: ``GRANT SELECT ON `%`.*``
lets the user read ``mysql.user`` and ``mysql.global_priv`` (the hashes) and
``GRANT CREATE ON `%`.*`` lets it create tables in ``mysql`` and ``sys``, so a
wildcard is not used. A user with CREATE_PRIV on ``*.*.*`` therefore cannot
``CREATE DATABASE`` on the server (1044): the FE keeps CREATE DATABASE as its
own statement (checked against the cluster's grants, run as the service
account) and calls ``on_database_created``.

**When a change reaches open connections** (measured on MariaDB 10.11, for a
connection of the account already open): a table-level GRANT/REVOKE is in force
for its next statement. A database-level one too, except for the connection's
current database (from the handshake, USE or COM_INIT_DB): there the privileges
read when the database was selected stay, for GRANT and REVOKE alike, also for
names qualified with that database, until the database is selected again
(COM_INIT_DB of the same name applies the change). When the account has no
privilege left on it, that re-select fails with 1044 and the old privileges
STAY: the connection must then leave the database (``USE information_schema``
drops them) or be closed. A global-level change reaches only new connections
(neither USE nor COM_INIT_DB applies it); no global privilege is granted here.
``reselect_needed`` says which open connections must re-select.

**Drift.** ``apply_grants`` reads the account's actual grants
(information_schema USER_PRIVILEGES, SCHEMA_PRIVILEGES, TABLE_PRIVILEGES),
grants what is missing first and then revokes what is extra, so a privilege
kept is never briefly absent. ``reconcile`` (at startup and on a timer) reads
every account, mark, hash and grant in five queries, then creates missing
accounts, resets drifted hashes, repairs grants and drops marked accounts whose
cluster user is gone, one INFO line per repair. Column and routine grants and
roles other than the mark are not managed.

**Serialising.** A change to one user's account runs under the server's named
lock ``fecluster.account.<sha1 of the name>`` (``GET_LOCK`` on a connection of
its own), which the statements hold across the backend change and the cluster
table write, and the sync takes (without waiting) before repairing a user: a
sync on one FE cannot undo a GRANT another FE is in the middle of.

**Several hosts** (``--backend mysql://svc@h1,h2,h3``): hosts that share their
accounts (a Doris, StarRocks or Galera cluster: the default) get every
statement once, on the backend's service host (the first healthy one). With
``?shared_users=0`` (independent servers) each change is made on every healthy
host in turn (``HostService``): a CREATE USER refused by one host is undone on
those that took it; a host that is down is skipped, and ``reconcile`` (every
60 s) brings it in step once it is back. The named lock is taken on the
service host.

SQL is built with backquoted names (backquotes doubled; no backslash is special
inside backquotes under any sql_mode) and hex literals for strings, so no name
can change a statement's meaning whatever the server's sql_mode.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from hashlib import sha1
from typing import Any, Protocol

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.privileges import Scope, scope_of_key
from coordinator.users import ADMIN_PRIV, ROOT, UserRecord

log = logging.getLogger("fecluster.backend_accounts")

MARK_ROLE = "fecluster_account"
"""The mark's prefix; the role is ``fecluster_account@<service account>``: only
the role's creator may grant it (MariaDB answers 1698 to another account), and
FE clusters with different service accounts on one server never take each
other's accounts for their own."""
HOST = "%"
SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys"})
NATIVE = "mysql_native_password"
LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT
LOCK_TIMEOUT = 10.0  # seconds a statement waits for another FE's change to the same account

# Database level. DELETE HISTORY (MariaDB's system-versioned tables) is added for MariaDB.
ALL_DB = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "TRIGGER",
)
# What MySQL accepts on a single table.
TABLE_LEVEL = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "CREATE",
        "DROP",
        "REFERENCES",
        "INDEX",
        "ALTER",
        "CREATE VIEW",
        "SHOW VIEW",
        "TRIGGER",
        "DELETE HISTORY",
    }
)
DB_PRIVILEGES: Mapping[str, tuple[str, ...]] = {
    "SELECT_PRIV": ("SELECT", "SHOW VIEW", "LOCK TABLES"),
    "LOAD_PRIV": ("INSERT", "UPDATE", "DELETE"),
    "ALTER_PRIV": ("ALTER", "INDEX"),
    "CREATE_PRIV": ("CREATE", "CREATE VIEW", "INDEX", "REFERENCES", "CREATE TEMPORARY TABLES"),
    "DROP_PRIV": ("DROP",),
    ADMIN_PRIV: ALL_DB,
    "NODE_PRIV": (),
    "GRANT_PRIV": (),
    "USAGE_PRIV": (),
}
TABLE_PRIVILEGES: Mapping[str, tuple[str, ...]] = {
    doris: tuple(p for p in (*ours, *(("DELETE HISTORY",) if doris == ADMIN_PRIV else ())) if p in TABLE_LEVEL)
    for doris, ours in DB_PRIVILEGES.items()
}

# A grant level: (None, None) global; (pattern, None) a database (the LIKE
# pattern as the server stores it); (db, table) a table.
Level = tuple[str | None, str | None]
Grants = dict[Level, frozenset[str]]


# ------------------------------------------------------------------ passwords


def stage1_from_password(password: str) -> bytes:
    """SHA1(password), what a native scramble is made from; b"" for no password."""
    return sha1(password.encode()).digest() if password else b""


def stage1_from_scramble(stored_hash_hex: str, nonce: bytes, scramble: bytes) -> bytes | None:
    """SHA1(pw) recovered from a client's mysql_native_password answer to
    ``nonce``, checked against the stored hex SHA1(SHA1(pw)); None when the
    scramble does not verify. A user without password: b"" for an empty answer."""
    if stored_hash_hex == "":
        return b"" if scramble == b"" else None
    try:
        stage2 = bytes.fromhex(stored_hash_hex)
    except ValueError:
        return None
    if len(stage2) != 20 or len(scramble) != 20:
        return None
    mask = sha1(nonce[:20] + stage2).digest()
    stage1 = bytes(a ^ b for a, b in zip(scramble, mask, strict=True))
    return stage1 if hmac.compare_digest(sha1(stage1).digest(), stage2) else None


def scramble_with_stage1(stage1: bytes, nonce: bytes) -> bytes:
    """The auth response to send the backend for ``nonce``, from SHA1(pw) alone."""
    if not stage1:
        return b""
    mask = sha1(nonce[:20] + sha1(stage1).digest()).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def backend_hash(auth_string: str) -> str:
    """The cluster's stored hash as the server stores it: '*' + upper hex, '' for none."""
    if auth_string == "":
        return ""
    if len(auth_string) != 40 or any(c not in "0123456789abcdefABCDEF" for c in auth_string):
        raise SqlError(errors.PARSE_ERROR, "the stored password hash is not 40 hex digits")
    return "*" + auth_string.upper()


# ------------------------------------------------------------------ SQL text


def ident(name: str) -> str:
    """A backquoted name: inside backquotes only the backquote is special, in every sql_mode."""
    return "`" + name.replace("`", "``") + "`"


def account(name: str) -> str:
    return f"{ident(name)}@{ident(HOST)}"


def hex_string(text: str) -> str:
    """A string as a hex literal: no quote or backslash rule applies to it."""
    return "X'" + text.encode("utf-8", "surrogateescape").hex() + "'" if text else "''"


def db_pattern(db: str) -> str:
    """A database name as a database-level grant must spell it: MySQL reads the
    name as a LIKE pattern, so ``_``, ``%`` and the escape ``\\`` are escaped."""
    return db.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def grantee(name: str) -> str:
    """How information_schema's GRANTEE column names the account (no escaping)."""
    return f"'{name}'@'{HOST}'"


def _on(level: Level) -> str:
    db, table = level
    if db is None:
        return "*.*"
    return f"{ident(db)}.*" if table is None else f"{ident(db)}.{ident(table)}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------ desired grants


def desired_grants(user: UserRecord, databases: Iterable[str], mariadb: bool = True) -> Grants:
    """The backend grants ``user``'s cluster privileges map to (see the table above)."""
    out: dict[Level, set[str]] = {}

    def db_level(privileges: Iterable[str]) -> set[str]:
        got = {p for doris in privileges for p in DB_PRIVILEGES.get(doris, ())}
        if mariadb and ADMIN_PRIV in privileges:
            got.add("DELETE HISTORY")
        return got

    everywhere = db_level(user.privileges)
    if everywhere:
        for db in databases:
            out.setdefault((db_pattern(db), None), set()).update(everywhere)
    by_key: dict[str, set[str]] = {}
    for key, privilege in user.grants:
        by_key.setdefault(key, set()).add(privilege)
    for key, privileges in by_key.items():
        scope = scope_of_key(key)
        if is_system_schema(scope.db):  # never granted, whatever the cluster table says
            continue
        if scope.table is None:
            got = db_level(privileges)
            level: Level = (db_pattern(scope.db or ""), None)
        else:
            got = {p for doris in privileges for p in TABLE_PRIVILEGES.get(doris, ())}
            if not mariadb:
                got.discard("DELETE HISTORY")
            level = (scope.db, scope.table)
        if got:
            out.setdefault(level, set()).update(got)
    return {level: frozenset(p) for level, p in out.items() if p}


def is_system_schema(db: str | None) -> bool:
    return db is not None and db.lower() in SYSTEM_SCHEMAS


def grant_diff(
    desired: Grants, actual: Grants
) -> tuple[list[tuple[Level, frozenset[str]]], list[tuple[Level, frozenset[str]]]]:
    """(to grant, to revoke), each a list of (level, privileges), in a stable order."""
    to_grant, to_revoke = [], []
    for level in sorted(set(desired) | set(actual), key=lambda lv: (lv[0] or "", lv[1] or "")):
        want, have = desired.get(level, frozenset()), actual.get(level, frozenset())
        if want - have:
            to_grant.append((level, want - have))
        if have - want:
            to_revoke.append((level, have - want))
    return to_grant, to_revoke


def reselect_needed(scope: Scope, current_db: str | None) -> bool:
    """Whether an open backend connection of the user whose grants changed at
    ``scope`` must select its current database again (COM_INIT_DB) before its
    next statement for the change to be in force there (measured, see above).
    A ``*.*.*`` change is made of database-level grants on every database, so it
    concerns every connection that has a current database; a table-level change
    none. If that re-select answers 1044 the connection must leave the database
    (``USE information_schema``) or be closed: its old privileges stay otherwise."""
    if current_db is None or scope.table is not None:
        return False
    return scope.db is None or scope.db == current_db


class ServiceBackend(Protocol):
    """What this module needs of ``frontend.mysql_backend.MysqlBackend``."""

    address: Any  # .user: the service account's name

    async def service_query(self, sql: str) -> Any: ...  # Result with .rows

    async def connect(self) -> Any: ...  # a Connection with query() and close()


class BackendAccounts:
    """One per FE, over the FE's ``MysqlBackend``."""

    def __init__(self, backend: ServiceBackend, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.backend = backend
        self.lock_timeout = lock_timeout
        self._mariadb: bool | None = None
        self._marked_role = False
        self._warned: set[str] = set()
        # Hosts that do not share their accounts: one BackendAccounts per host, each change made on each.
        services = getattr(backend, "host_services", None)
        each = services() if services is not None and not getattr(backend, "shared_users", True) else []
        self._each: list[BackendAccounts] = [BackendAccounts(h, lock_timeout) for h in each] if len(each) > 1 else []

    def _reachable(self) -> list[BackendAccounts]:
        """The per-host accounts of the hosts now healthy (a down host is repaired by the sync)."""
        return [a for a in self._each if getattr(getattr(a.backend, "host", None), "healthy", True)]

    @property
    def service_user(self) -> str:
        return str(self.backend.address.user)

    @property
    def mark_role(self) -> str:
        return f"{MARK_ROLE}@{self.service_user}"

    def managed(self, name: str) -> bool:
        """Whether cluster user ``name`` has a backend account of its own."""
        return name not in (ROOT, self.service_user)

    def check_name(self, name: str) -> None:
        """Refuse a new cluster user that would be the service account."""
        if name == self.service_user:
            raise SqlError(
                errors.CANNOT_USER,
                f"Operation CREATE USER failed for '{name}'@'%': the name is the backend's service account",
            )

    def check_scope(self, user: str, scope: Scope) -> None:
        """Refuse a cluster grant on the backend's own schemas (1044): they are
        the server's (accounts, hashes, instrumentation), not user data."""
        if is_system_schema(scope.db):
            raise SqlError(errors.DB_ACCESS_DENIED, f"Access denied for user '{user}'@'%' to database '{scope.db}'")

    async def _q(self, sql: str) -> list[tuple[Any, ...]]:
        result = await self.backend.service_query(sql)
        return list(result.rows or [])

    async def _is_mariadb(self) -> bool:
        if self._mariadb is None:
            rows = await self._q("SELECT VERSION()")
            self._mariadb = "mariadb" in _text(rows[0][0]).lower()
        return self._mariadb

    async def _ensure_role(self) -> None:
        if not self._marked_role:
            await self._q(f"CREATE ROLE IF NOT EXISTS {ident(self.mark_role)}")
            self._marked_role = True

    # ------------------------------------------------------------ reading

    async def databases(self) -> list[str]:
        rows = await self._q("SHOW DATABASES")
        return sorted(n for n in (_text(r[0]) for r in rows) if n.lower() not in SYSTEM_SCHEMAS)

    async def _accounts(self) -> dict[str, tuple[str, str]]:
        """Every account at host '%': name -> (plugin, authentication_string)."""
        rows = await self._q(
            f"SELECT User, plugin, authentication_string FROM mysql.user WHERE Host = {hex_string(HOST)}"
        )
        return {_text(u): (_text(p or b""), _text(a or b"")) for u, p, a in rows}

    async def _marked(self) -> set[str]:
        if await self._is_mariadb():
            sql = (
                f"SELECT User FROM mysql.roles_mapping WHERE Host = {hex_string(HOST)}"
                f" AND Role = {hex_string(self.mark_role)}"
                " AND Admin_option = 'N'"  # CREATE ROLE grants it WITH ADMIN to its creator: not a mark
            )
        else:
            sql = (
                f"SELECT TO_USER FROM mysql.role_edges WHERE FROM_USER = {hex_string(self.mark_role)}"
                f" AND TO_HOST = {hex_string(HOST)} AND WITH_ADMIN_OPTION = 'N'"
            )
        return {_text(r[0]) for r in await self._q(sql)} - {self.service_user}

    async def _grants(self, who: str | None) -> dict[str, Grants]:
        """Actual global, database and table grants by GRANTEE (all, or one)."""
        where = f" WHERE GRANTEE = {hex_string(who)}" if who is not None else ""
        found: dict[str, dict[Level, set[str]]] = {}

        def add(g: Any, level: Level, privilege: Any, grantable: Any) -> None:
            g = _text(g)
            if who is not None and g != who:  # the column compares case-insensitively
                return
            held = found.setdefault(g, {}).setdefault(level, set())
            if _text(privilege) != "USAGE":
                held.add(_text(privilege))
            if _text(grantable) == "YES":
                held.add("GRANT OPTION")

        for g, p, y in await self._q(
            f"SELECT GRANTEE, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES{where}"
        ):
            add(g, (None, None), p, y)
        for g, d, p, y in await self._q(
            "SELECT GRANTEE, TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES"
            + where
        ):
            add(g, (_text(d), None), p, y)
        for g, d, t, p, y in await self._q(
            "SELECT GRANTEE, TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE, IS_GRANTABLE"
            f" FROM information_schema.TABLE_PRIVILEGES{where}"
        ):
            add(g, (_text(d), _text(t)), p, y)
        return {g: {lv: frozenset(p) for lv, p in levels.items() if p} for g, levels in found.items()}

    # ------------------------------------------------------------ the lock

    @contextlib.asynccontextmanager
    async def lock(self, name: str, timeout: float | None = None) -> AsyncIterator[bool]:
        """The server-wide named lock for account ``name`` (held on a connection
        of its own until the block ends). Yields False when ``timeout`` (0: do
        not wait) passed first; with the default timeout that is 1205 instead."""
        wait = self.lock_timeout if timeout is None else timeout
        key = "fecluster.account." + sha1(name.encode("utf-8", "surrogateescape")).hexdigest()
        conn = await self.backend.connect()
        try:
            result = await conn.query(f"SELECT GET_LOCK('{key}', {float(wait)})")
            got = bool(result.rows) and result.rows[0][0] is not None and _text(result.rows[0][0]) == "1"
            if not got and timeout is None:
                raise SqlError(
                    LOCK_WAIT_TIMEOUT,
                    f"Lock wait timeout exceeded: another FE is changing the backend account of '{name}'",
                )
            yield got
        finally:
            conn.close()  # ends the session: the lock goes with it

    # ------------------------------------------------------------ changes

    async def create(self, user: UserRecord, strict: bool = True) -> list[str]:
        """CREATE USER with the cluster's hash, the mark, then the user's grants.
        On any error the account is dropped again and the error raised; with
        ``strict`` False (the sync) a grant the server refuses is logged and
        skipped instead, so one dropped table cannot lock a user out."""
        self.check_name(user.name)
        if self._each:
            made: list[BackendAccounts] = []
            statements: list[str] = []
            try:
                for host in self._reachable():
                    statements += await host.create(user, strict)
                    made.append(host)
            except BaseException:
                for host in made:  # all or none: undo it where it was made
                    with contextlib.suppress(SqlError):
                        await host._q(f"DROP USER IF EXISTS {account(user.name)}")
                raise
            return statements
        await self._ensure_role()
        done = [f"CREATE USER {account(user.name)} IDENTIFIED WITH {NATIVE} AS '{backend_hash(user.auth_string)}'"]
        await self._q(done[0])
        try:
            mark = f"GRANT {ident(self.mark_role)} TO {account(user.name)}"
            await self._q(mark)
            done.append(mark)
            done += await self.apply_grants(user, strict=strict)
        except BaseException:
            with contextlib.suppress(SqlError):
                await self._q(f"DROP USER IF EXISTS {account(user.name)}")
            raise
        return done

    async def drop(self, name: str) -> bool:
        """DROP USER of a marked account; an unmarked one is left alone (a
        warning). False when there was nothing of ours to drop."""
        if self._each:
            return any([await host.drop(name) for host in self._reachable()])
        accounts = await self._accounts()
        if name not in accounts:
            return False
        if name not in await self._marked():
            self._warn_unmarked(name)
            return False
        await self._q(f"DROP USER {account(name)}")
        return True

    async def set_password(self, user: UserRecord) -> None:
        if self._each:
            for host in self._reachable():
                await host.set_password(user)
            return
        await self._q(f"ALTER USER {account(user.name)} IDENTIFIED WITH {NATIVE} AS '{backend_hash(user.auth_string)}'")

    async def apply_grants(
        self, user: UserRecord, databases: Iterable[str] | None = None, strict: bool = True
    ) -> list[str]:
        """Make the account's grants equal what ``user``'s privileges map to:
        GRANT what is missing, then REVOKE what is extra. Returns the statements
        run. The server refuses a table-level GRANT on a table that does not
        exist (1146, as MariaDB does for its own GRANT); ``strict``: raise it,
        else log and go on with the rest."""
        if self._each:
            done: list[str] = []
            for host in self._reachable():
                done += await host.apply_grants(user, databases, strict)
            return done
        dbs = await self.databases() if databases is None else list(databases)
        desired = desired_grants(user, dbs, await self._is_mariadb())
        actual = (await self._grants(grantee(user.name))).get(grantee(user.name), {})
        return await self._converge(user.name, desired, actual, strict)

    async def _converge(self, name: str, desired: Grants, actual: Grants, strict: bool) -> list[str]:
        to_grant, to_revoke = grant_diff(desired, actual)
        statements = [f"GRANT {', '.join(sorted(p))} ON {_on(level)} TO {account(name)}" for level, p in to_grant]
        statements += [f"REVOKE {', '.join(sorted(p))} ON {_on(level)} FROM {account(name)}" for level, p in to_revoke]
        done = []
        for sql in statements:
            try:
                await self._q(sql)
            except SqlError as e:
                if strict or e.code in (errors.SERVER_LOST, errors.CONN_HOST_ERROR):
                    raise
                log.warning("backend account %s: %s refused: %s", account(name), sql, e.message)
                continue
            done.append(sql)
        return done

    async def on_database_created(self, db: str, users: Iterable[UserRecord]) -> None:
        """A database made through the FE: every user with privileges on
        ``*.*.*`` gets them on it now (not at the next sync)."""
        mariadb = await self._is_mariadb()
        for user in users:
            if not self.managed(user.name):
                continue
            want = desired_grants(user, [db], mariadb).get((db_pattern(db), None))
            if want:
                await self._q(
                    f"GRANT {', '.join(sorted(want))} ON {_on((db_pattern(db), None))} TO {account(user.name)}"
                )

    def _warn_unmarked(self, name: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning(
                "backend account %s exists but was not made by the FEs (no role %s): left alone",
                account(name),
                self.mark_role,
            )

    # ------------------------------------------------------------ sync

    async def reconcile(self, users: Iterable[UserRecord], fresh: Any = None) -> list[str]:
        """Bring the backend in step with the cluster's user table ``users`` (a
        fresh read): create missing accounts, reset drifted hashes, repair
        grants, drop marked accounts of users no longer in the table. ``fresh``
        (optional ``async (name) -> UserRecord | None``) re-reads a user under
        its lock before repairing it. Returns the repairs, each also logged."""
        if self._each:
            users = list(users)
            per_host: list[str] = []
            for host in self._each:  # every host, one that is down or failing skipped until the next sync
                try:
                    per_host += [f"{host.backend.address.address}: {r}" for r in await host.reconcile(users, fresh)]
                except (SqlError, OSError, TimeoutError) as e:
                    log.warning("backend accounts on %s: sync failed (%s)", host.backend.address.address, e)
            return per_host
        await self._ensure_role()
        wanted = {u.name: u for u in users if self.managed(u.name)}
        accounts, marked = await self._accounts(), await self._marked()
        grants = await self._grants(None)
        dbs = await self.databases()
        mariadb = await self._is_mariadb()
        repairs: list[str] = []

        def drifted(user: UserRecord) -> bool:
            if user.name not in accounts:
                return True
            plugin, auth = accounts[user.name]
            if plugin not in (NATIVE, "") or auth != backend_hash(user.auth_string):
                return True
            desired = desired_grants(user, dbs, mariadb)
            return any(grant_diff(desired, grants.get(grantee(user.name), {})))

        for name, user in sorted(wanted.items()):
            if name in accounts and name not in marked:
                self._warn_unmarked(name)
                continue
            if not drifted(user):
                continue
            async with self.lock(name, timeout=0) as got:
                if not got:  # a statement on some FE is changing it right now
                    continue
                if fresh is not None:
                    current = await fresh(name)
                    if current is None:
                        continue
                    user = current
                try:
                    repairs += await self._repair(user, accounts.get(name), dbs)
                except SqlError as e:
                    if e.code in (errors.SERVER_LOST, errors.CONN_HOST_ERROR):
                        raise
                    log.warning("backend account %s: repair failed: %s", account(name), e.message)
        for name in sorted(marked - set(wanted) - {ROOT}):
            async with self.lock(name, timeout=0) as got:
                if not got or (fresh is not None and await fresh(name) is not None):
                    continue
                await self._q(f"DROP USER IF EXISTS {account(name)}")
                repairs.append(f"{account(name)}: dropped (no such cluster user)")
                log.info("backend account %s: dropped (no such cluster user)", account(name))
        return repairs

    async def _repair(self, user: UserRecord, had: tuple[str, str] | None, dbs: list[str]) -> list[str]:
        who = account(user.name)
        if had is None:
            done = [f"{who}: created (missing)"]
            await self.create(user, strict=False)
            log.info("backend account %s: created (missing)", who)
            return done
        done = []
        plugin, auth = had
        if plugin not in (NATIVE, "") or auth != backend_hash(user.auth_string):
            await self.set_password(user)
            done.append(f"{who}: password hash reset")
            log.info("backend account %s: password hash reset (drift)", who)
        for sql in await self.apply_grants(user, dbs, strict=False):
            done.append(f"{who}: {sql}")
            log.info("backend account %s: %s (drift)", who, sql)
        return done
