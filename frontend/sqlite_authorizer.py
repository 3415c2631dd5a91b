"""What a connection of the embedded backend may do: the seal every
connection carries (no ATTACH/DETACH but the backend's own, no PRAGMA but a
few reads, no extensions, no virtual tables) and, on a session's connection,
the user's grants, decided on what SQLite itself reports it is about to touch."""

from __future__ import annotations

import sqlite3

# PRAGMAs that only read a table's definition: allowed on the backend's own catalogue
# connections (DESCRIBE, information_schema); a session's connection allows none.
READ_ONLY_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
_REFUSED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
# Virtual tables that would show raw pages or other statements, if this SQLite has them.
_REFUSED_TABLES = frozenset({"sqlite_dbpage", "dbstat", "sqlite_stmt", "sqlite_dbdata", "sqlite_dbptr"})


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
        return sqlite3.SQLITE_OK
