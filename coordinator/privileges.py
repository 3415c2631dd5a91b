"""Data privileges, Doris style (pure): which privilege a parsed statement needs
on which objects, whether a user's grants allow it, and the MySQL error when not.

Scopes: ``*.*.*`` (global, ``UserRecord.privileges``), ``internal.db.*`` or
``db.*`` (a database) and ``db.tbl`` (a table), the scoped ones kept in
``UserRecord.grants`` as (``db`` or ``db.tbl``, privilege) pairs in lower case.
A privilege held at a wider scope counts at every narrower one, and
ADMIN_PRIV counts for every privilege.

What a statement needs comes from sqlglot's syntax tree (every ``exp.Table``
it names), never from the text: SELECT (subqueries, CTEs, joins and the
sources of INSERT ... SELECT / CREATE ... AS SELECT included) needs
SELECT_PRIV; INSERT/UPDATE/DELETE/REPLACE LOAD_PRIV on their targets;
CREATE TABLE/VIEW/INDEX/DATABASE CREATE_PRIV; ALTER (and ANALYZE) ALTER_PRIV;
DROP/TRUNCATE DROP_PRIV. A statement of any other kind needs global
ADMIN_PRIV: what this module does not understand is denied, not allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.users import ADMIN_PRIV, UserRecord

SELECT_PRIV = "SELECT_PRIV"
LOAD_PRIV = "LOAD_PRIV"
ALTER_PRIV = "ALTER_PRIV"
CREATE_PRIV = "CREATE_PRIV"
DROP_PRIV = "DROP_PRIV"
# What may be granted below the global scope (Doris: ADMIN_PRIV is global only).
SCOPED_PRIVILEGES = frozenset({SELECT_PRIV, LOAD_PRIV, ALTER_PRIV, CREATE_PRIV, DROP_PRIV})
# Privileges that let a user see a database or table (SHOW DATABASES/TABLES).
DATA_PRIVILEGES = SCOPED_PRIVILEGES | {ADMIN_PRIV}
CATALOG = "internal"
_DATABASE_KINDS = ("DATABASE", "SCHEMA")
_TABLE_KINDS = ("TABLE", "VIEW", "INDEX")


@dataclass(frozen=True)
class Scope:
    db: str | None = None  # None: every database (*.*.*)
    table: str | None = None  # None: every table of ``db``

    @property
    def key(self) -> str:
        """How ``UserRecord.grants`` names the scope (not used for the global one)."""
        return self.db if self.table is None else f"{self.db}.{self.table}"  # type: ignore[return-value]

    @property
    def is_global(self) -> bool:
        return self.db is None

    def text(self) -> str:
        if self.db is None:
            return "*.*.*"
        return f"{CATALOG}.{self.db}.{self.table or '*'}"


def _name(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] == "`":
        part = part[1:-1].replace("``", "`")
    return part


def folded(name: str, fold_case: bool) -> str:
    """A database or table name as grants hold and compare it: lower case when
    the backend folds case (SQLite; MySQL with lower_case_table_names != 0),
    else as spelled (MySQL on Linux by default: `Sales` and `sales` are two)."""
    return name.lower() if fold_case else name


def parse_scope(text: str, fold_case: bool = True) -> Scope:
    """``*.*.*``, ``*.*``, ``internal.db.*``, ``db.*``, ``db.tbl``,
    ``internal.db.tbl`` -> a Scope; ValueError for anything else."""
    parts = [_name(p) for p in text.split(".")]
    if len(parts) == 3:
        if parts[0].lower() not in ("*", CATALOG):
            raise ValueError(f"unknown catalog '{parts[0]}': only '{CATALOG}' exists")
        parts = parts[1:]
    if len(parts) == 1 and parts[0] == "*":
        return Scope()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"not a privilege level: {text}")
    db, table = parts
    if db == "*":
        if table != "*":
            raise ValueError(f"not a privilege level: {text}")
        return Scope()
    if "*" in db or ("*" in table and table != "*"):
        raise ValueError(f"not a privilege level: {text}")
    return Scope(folded(db, fold_case), None if table == "*" else folded(table, fold_case))


def scope_of_key(key: str) -> Scope:
    db, _, table = key.partition(".")
    return Scope(db, table or None)


@dataclass(frozen=True)
class Need:
    """One privilege a statement needs: on a table, a database, or (db None) globally."""

    privilege: str
    command: str  # MySQL's word in 1142: SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER
    db: str | None = None
    table: str | None = None


def _admin(command: str) -> list[Need]:
    return [Need(ADMIN_PRIV, command)]


def _table_need(table: exp.Table, privilege: str, command: str, current_db: str | None, fold_case: bool) -> Need:
    db = table.db or current_db
    if not db:
        raise SqlError(errors.NO_DB, "No database selected")
    return Need(privilege, command, folded(db, fold_case), folded(table.name, fold_case))


def _tables(node: exp.Expr | None, ctes: set[str]) -> list[exp.Table]:
    if node is None:
        return []
    found = [node] if isinstance(node, exp.Table) else []
    found += [t for t in node.find_all(exp.Table) if t is not node]
    return [
        t
        for t in found
        if t.name
        and not (not t.db and t.name.lower() in ctes)
        and not (not t.db and t.name.lower() == "dual")  # FROM DUAL names no table
    ]


def needs(tree: exp.Expr, current_db: str | None, fold_case: bool = True) -> list[Need]:
    """What ``tree`` needs, table by table; ``current_db`` qualifies bare names
    (SqlError 1046 when a bare name meets no current database)."""
    if isinstance(tree, exp.Describe) and isinstance(tree.this, exp.Query | exp.Insert | exp.Update | exp.Delete):
        return needs(tree.this, current_db, fold_case)  # EXPLAIN <statement>: what running it would need, as in MySQL
    if any(isinstance(t.this, exp.Func) for t in tree.find_all(exp.Table)):
        return _admin("SELECT")  # a table-valued function (pragma_table_info(...)) names no table to check
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    targets: dict[int, tuple[str, str]] = {}  # id(exp.Table) -> (privilege, command); the rest are read
    ignored: set[int] = set()  # names sqlglot holds as tables that are not (DROP INDEX's index)
    if isinstance(tree, exp.Query):
        if tree.args.get("into") is not None:
            return _admin("SELECT")  # SELECT ... INTO creates tables or files
    elif isinstance(tree, exp.Insert):
        command = "INSERT"
        for t in _tables(tree.this, ctes)[:1]:
            targets[id(t)] = (LOAD_PRIV, command)
    elif isinstance(tree, exp.Update | exp.Delete):
        command = "UPDATE" if isinstance(tree, exp.Update) else "DELETE"
        # Every table of the target clause (joins included) may be written: all need LOAD_PRIV.
        for node in (tree.this, *(tree.args.get("tables") or ())):
            for t in _tables(node, ctes):
                targets[id(t)] = (LOAD_PRIV, command)
    elif isinstance(tree, exp.Create | exp.Drop):
        priv, command = (CREATE_PRIV, "CREATE") if isinstance(tree, exp.Create) else (DROP_PRIV, "DROP")
        kind = (tree.args.get("kind") or "").upper()
        if kind in _DATABASE_KINDS:
            names = [t.name for node in (tree.this, *(tree.args.get("tables") or ())) for t in _tables(node, set())]
            if not names:
                return _admin(command)
            return [Need(priv, command, folded(name, fold_case)) for name in names]
        if kind not in _TABLE_KINDS:
            return _admin(command)
        if isinstance(tree, exp.Create):
            named = _tables(tree.this, ctes)[:1]
        elif kind == "INDEX":
            named = _tables(tree.args.get("cluster"), ctes)  # DROP INDEX i ON t: the table is t
            if not named:
                return _admin(command)
            ignored = {id(t) for node in tree.args.get("tables") or () for t in _tables(node, ctes)}
        else:
            named = [t for node in (tree.this, *(tree.args.get("tables") or ())) for t in _tables(node, ctes)]
        for t in named:
            targets[id(t)] = (priv, command)
    elif isinstance(tree, exp.TruncateTable):
        for t in _tables(tree, ctes):
            targets[id(t)] = (DROP_PRIV, "DROP")
    elif isinstance(tree, exp.Alter | exp.Analyze):
        for t in _tables(tree, ctes):
            targets[id(t)] = (ALTER_PRIV, "ALTER")
    elif isinstance(tree, exp.Describe):
        pass  # reads the table's definition: SELECT_PRIV, below
    else:
        return _admin(tree.key.upper())
    result: list[Need] = []
    for t in _tables(tree, ctes):
        if id(t) in ignored:
            continue
        privilege, command = targets.get(id(t), (SELECT_PRIV, "SELECT"))
        result.append(_table_need(t, privilege, command, current_db, fold_case))
    return result


def allows(user: UserRecord, need: Need) -> bool:
    held = user.privileges
    if ADMIN_PRIV in held or need.privilege in held:
        return True
    if need.db is None:
        return False
    scopes = [need.db] if need.table is None else [need.db, f"{need.db}.{need.table}"]
    return any((s, need.privilege) in user.grants or (s, ADMIN_PRIV) in user.grants for s in scopes)


def denial(user: str, need: Need) -> SqlError:
    """MySQL's error for a need not met: 1142 for a table, 1044 for a database, 1227 global."""
    if need.table is not None:
        return SqlError(
            errors.TABLE_ACCESS_DENIED,
            f"{need.command} command denied to user '{user}'@'%' for table '{need.table}'",
        )
    if need.db is not None:
        return SqlError(errors.DB_ACCESS_DENIED, f"Access denied for user '{user}'@'%' to database '{need.db}'")
    return SqlError(
        errors.SPECIFIC_ACCESS_DENIED,
        f"Access denied; you need (at least one of) the {need.privilege} privilege(s) for this operation",
    )


def check(user: UserRecord | None, name: str, wanted: list[Need]) -> None:
    """Raise the denial of the first need ``user`` (None: unknown user) does not meet."""
    for need in wanted:
        if user is None or not allows(user, need):
            raise denial(name, need)


def may_see_database(user: UserRecord | None, db: str, fold_case: bool = True) -> bool:
    """Any data privilege on the database or on one of its tables."""
    if user is None:
        return False
    if user.privileges & DATA_PRIVILEGES:
        return True
    db = folded(db, fold_case)
    return any(scope == db or scope.startswith(db + ".") for scope, _ in user.grants)


def may_see_table(user: UserRecord | None, db: str, table: str, fold_case: bool = True) -> bool:
    if user is None:
        return False
    if user.privileges & DATA_PRIVILEGES:
        return True
    db, table = folded(db, fold_case), folded(table, fold_case)
    return any(scope in (db, f"{db}.{table}") for scope, _ in user.grants)


def granted(user: UserRecord, scope: Scope, privileges: frozenset[str]) -> UserRecord:
    """``user`` with ``privileges`` added at ``scope``."""
    if scope.is_global:
        return replace(user, privileges=user.privileges | privileges)
    return replace(user, grants=user.grants | {(scope.key, p) for p in privileges})


def revoked(user: UserRecord, scope: Scope, privileges: frozenset[str]) -> UserRecord:
    """``user`` without ``privileges`` at exactly ``scope`` (as in Doris and MySQL:
    a revoke at one level leaves grants at other levels alone)."""
    if scope.is_global:
        return replace(user, privileges=user.privileges - privileges)
    gone = {(scope.key, p) for p in privileges}
    return replace(user, grants=user.grants - gone)


def doris_name(privilege: str) -> str:
    """``SELECT_PRIV`` -> ``Select_priv``, as Doris's SHOW GRANTS spells them."""
    return privilege.capitalize()


def grants_row(user: UserRecord) -> tuple[str | None, ...]:
    """One row of Doris's SHOW GRANTS (see ``GRANTS_COLUMNS``)."""

    def listed(privileges: set[str] | frozenset[str]) -> str:
        return ",".join(doris_name(p) for p in sorted(privileges))

    by_scope: dict[str, set[str]] = {}
    for key, privilege in user.grants:
        by_scope.setdefault(key, set()).add(privilege)
    dbs = [f"{CATALOG}.{k}: {listed(v)}" for k, v in sorted(by_scope.items()) if "." not in k]
    tables = [f"{CATALOG}.{k}: {listed(v)}" for k, v in sorted(by_scope.items()) if "." in k]
    return (
        f"'{user.name}'@'%'",
        "ROOT" if user.name == "root" else "",
        "Yes" if user.auth_string else "No",
        "",
        listed(user.privileges) or None,
        None,
        "; ".join(dbs) or None,
        "; ".join(tables) or None,
        None,
        None,
        None,
    )


GRANTS_COLUMNS = (
    "UserIdentity",
    "Comment",
    "Password",
    "Roles",
    "GlobalPrivs",
    "CatalogPrivs",
    "DatabasePrivs",
    "TablePrivs",
    "ColPrivs",
    "ResourcePrivs",
    "WorkloadGroupPrivs",
)
