"""What a connection of the embedded backend may do: the seal every
connection carries (no ATTACH/DETACH but the backend's own, no PRAGMA but a
few reads, no extensions, no virtual tables) and, on a session's connection,
the user's grants, decided on what SQLite itself reports it is about to touch."""

from __future__ import annotations

import sqlite3

from coordinator.errors import SqlError
from coordinator.privileges import ALTER_PRIV, CREATE_PRIV, DROP_PRIV, LOAD_PRIV, SELECT_PRIV, Need, allows, denial
from coordinator.users import ADMIN_PRIV, UserRecord

# PRAGMAs that only read a table's definition: allowed on the backend's own catalogue
# connections (DESCRIBE, information_schema); a session's connection allows none.
READ_ONLY_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
_REFUSED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
# Virtual tables that would show raw pages or other statements, if this SQLite has them.
_REFUSED_TABLES = frozenset({"sqlite_dbpage", "dbstat", "sqlite_stmt", "sqlite_dbdata", "sqlite_dbptr"})
# The backend's own temporary trigger that counts the rows an UPDATE changes
# (MySQL's affected rows): its reads of OLD/NEW are not the user's, and no user
# statement may create or drop a trigger of that name (it would read unchecked).
CHANGES_TRIGGER = "fe_changes"
_TRIGGER_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_CREATE_TRIGGER,
        sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
        sqlite3.SQLITE_DROP_TRIGGER,
        sqlite3.SQLITE_DROP_TEMP_TRIGGER,
    }
)


class Seal:
    """The authorizer of every connection the backend opens. ``own`` is set
    while the backend runs its own ATTACH/DETACH (the only ones allowed)."""

    def __init__(self, pragmas: frozenset[str] = frozenset()) -> None:
        self.own = False
        self.pragmas = pragmas

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_OK if self.own else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            return sqlite3.SQLITE_OK if (arg1 or "").lower() in self.pragmas else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _REFUSED_FUNCTIONS else sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_READ and (arg1 or "").lower() in _REFUSED_TABLES:
            return sqlite3.SQLITE_DENY
        if action in _TRIGGER_ACTIONS and (arg1 or "").lower() == CHANGES_TRIGGER and not self.own:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


# SQLite's action -> (privilege, MySQL's command word, which argument names the table:
# 1 = arg1, 2 = arg2, 0 = none: the database itself). Triggers are the table's
# behaviour (ALTER); an index is the table's (CREATE/DROP on the table, as privileges.needs has it).
_ACTIONS: dict[int, tuple[str, str, int]] = {
    sqlite3.SQLITE_READ: (SELECT_PRIV, "SELECT", 1),
    sqlite3.SQLITE_INSERT: (LOAD_PRIV, "INSERT", 1),
    sqlite3.SQLITE_UPDATE: (LOAD_PRIV, "UPDATE", 1),
    sqlite3.SQLITE_DELETE: (LOAD_PRIV, "DELETE", 1),
    sqlite3.SQLITE_CREATE_TABLE: (CREATE_PRIV, "CREATE", 1),
    sqlite3.SQLITE_CREATE_VIEW: (CREATE_PRIV, "CREATE", 1),
    sqlite3.SQLITE_CREATE_INDEX: (CREATE_PRIV, "CREATE", 2),
    sqlite3.SQLITE_CREATE_TRIGGER: (ALTER_PRIV, "ALTER", 2),
    sqlite3.SQLITE_DROP_TABLE: (DROP_PRIV, "DROP", 1),
    sqlite3.SQLITE_DROP_VIEW: (DROP_PRIV, "DROP", 1),
    sqlite3.SQLITE_DROP_INDEX: (DROP_PRIV, "DROP", 2),
    sqlite3.SQLITE_DROP_TRIGGER: (ALTER_PRIV, "ALTER", 2),
    sqlite3.SQLITE_ALTER_TABLE: (ALTER_PRIV, "ALTER", 2),  # arg1 is the schema, arg2 the table
    sqlite3.SQLITE_ANALYZE: (ALTER_PRIV, "ALTER", 1),  # arg1 None: the whole database
    sqlite3.SQLITE_REINDEX: (ALTER_PRIV, "ALTER", 0),  # arg1 is an index
}
# The connection's own schemas: ":memory:" main and temp hold nothing but what
# the session itself made there, seen by nobody else.
_PRIVATE_SCHEMAS = frozenset({None, "main", "temp"})
_OK, _DENY = sqlite3.SQLITE_OK, sqlite3.SQLITE_DENY
_ROW_WRITES = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})


class Grants(Seal):
    """A session connection's authorizer: the seal, then the user's grants for
    every table SQLite reports it will read, write, create, drop or alter
    (under the schema name it reports: databases are ATTACHed schemas named
    as the database, in lower case), so what is checked is what SQLite runs.

    ``user`` is set before each statement (None: no check, the FE's own work;
    ADMIN_PRIV: the seal only). A denial is remembered in ``denied`` (the first
    of the statement) for the caller to answer MySQL's 1142/1044. Views and
    triggers run with the invoker's rights: SQLite reports a view's and a
    trigger's own table accesses, and each is checked against the session's
    user (MySQL's SQL SECURITY INVOKER; there is no DEFINER here). ``ddl``:
    the statement changes the schema, so SQLite's own catalogue accesses
    (``sqlite_master`` and its kin) are SQLite's doing, checked through the
    CREATE/DROP/ALTER action itself. Decisions are cached per user record
    (records are replaced, never changed, when grants change)."""

    def __init__(self) -> None:
        super().__init__()
        self.user: UserRecord | None = None
        self.check = False
        self.ddl = False
        self.denied: Need | None = None
        self._decided: dict[tuple[str, str, str | None], bool] = {}
        self._decided_for: UserRecord | None = None

    def start(self, check: bool, user: UserRecord | None, ddl: bool) -> bool:
        """Before a statement: ``check`` False for no check; ``user`` None for an
        unknown user (denied everything). True when the user's record changed
        since the last statement (statements SQLite keeps prepared must then be
        authorized again: the caller re-installs the authorizer)."""
        changed = user is not self._decided_for
        if changed:
            self._decided = {}
            self._decided_for = user
        self.check = check and not (user is not None and ADMIN_PRIV in user.privileges)
        self.user = user
        self.ddl = ddl
        self.denied = None
        return changed

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
        verdict = Seal.__call__(self, action, arg1, arg2, db, trigger)
        if action == sqlite3.SQLITE_ALTER_TABLE:
            db = arg1  # SQLite names the schema in the first argument here
        if verdict != _OK or not self.check or self.own or db in _PRIVATE_SCHEMAS or trigger == CHANGES_TRIGGER:
            return verdict
        rule = _ACTIONS.get(action)
        if rule is None:
            return _OK  # SELECT, FUNCTION, TRANSACTION, SAVEPOINT, RECURSIVE: nothing of anyone's
        privilege, command, which = rule
        if self.ddl and (which == 0 or action in _ROW_WRITES):
            return _OK  # a schema change's own work (DROP TABLE deletes the rows, CREATE INDEX reindexes)
        table = arg1 if which == 1 else (arg2 if which == 2 else None)
        schema = db.lower()  # type: ignore[union-attr]
        if table is not None:
            table = table.lower()
            if table.startswith("sqlite_"):  # SQLite's catalogue and statistics
                if self.ddl:
                    return _OK
                table = None  # read by a user's statement: the whole database's definition
        key = (privilege, schema, table)
        allowed = self._decided.get(key)
        if allowed is None:
            need = Need(privilege, command, schema, table)
            allowed = self.user is not None and allows(self.user, need)
            self._decided[key] = allowed
        if allowed:
            return _OK
        if self.denied is None:
            self.denied = Need(privilege, command, schema, table)
        return _DENY

    def denial(self, fallback_name: str) -> SqlError | None:
        """MySQL's error for the statement's first denial, if any."""
        if self.denied is None:
            return None
        return denial(self.user.name if self.user is not None else fallback_name, self.denied)
