"""The storage behind an FE, as an interface: ``Backend`` (one per FE: the
catalogue, and queries over rows the FE already holds) and ``BackendSession``
(one per client session, opened on its first statement).

``frontend.backend_url.open_backend`` chooses the implementation from ``--backend``.
Everything backend-specific lives behind these two types: the statement
modules and the session core never touch SQLite (or any other engine).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.users import UserRecord
from frontend.result import Result
from frontend.wire.answer import Command

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


@dataclass(frozen=True)
class Column:
    """One column of a table as the backend declares it (DESCRIBE, information_schema)."""

    name: str
    declared_type: str  # the backend's declared type, e.g. INTEGER, TEXT(20), DECIMAL(10,2)
    nullable: bool
    default: str | None  # the default's SQL text
    primary_key: int  # 0: not in the primary key; else its position in it, from 1


@dataclass(frozen=True)
class Index:
    """A secondary index (SHOW INDEX); the primary key is ``Column.primary_key``."""

    name: str
    unique: bool
    columns: list[str]


@dataclass(frozen=True)
class BackendLogin:
    """Who a session's backend connection logs in as, and how it speaks: a
    relaying backend (MySQL) connects as the session's own user, with the
    client's protocol options, so the engine judges every statement and its
    answers can be relayed byte for byte."""

    user: str
    stage1: bytes | None  # SHA1(password) learned at login (b"": no password; None: unknown)
    capabilities: int = 0  # the client's CLIENT_* flags (DEPRECATE_EOF, FOUND_ROWS, MULTI_STATEMENTS ...)
    charset: int = 45  # the client's collation id (utf8mb4_general_ci)


class BackendSession(Protocol):
    async def execute(self, sql: str, database: str | None, tree: exp.Expr | None = None) -> Result:
        """Run ``sql``; ``tree``, when given, is its parse (the caller's to give up)."""
        ...

    async def execute_bound(self, sql: str, database: str | None, params: Sequence[Any]) -> Result:
        """Run ``sql`` with its ``?`` markers bound to ``params`` (a prepared statement's execute)."""
        ...

    @property
    def in_transaction(self) -> bool:
        """A transaction is open (or BEGIN was said): the wire's SERVER_STATUS_IN_TRANS."""
        ...

    @property
    def autocommit(self) -> bool: ...

    async def begin(self) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def set_autocommit(self, on: bool) -> None: ...

    async def savepoint(self, verb: str, name: str) -> None:
        """``verb`` is SAVEPOINT, ROLLBACK TO SAVEPOINT or RELEASE SAVEPOINT."""
        ...

    async def relay_set(self, sql: str) -> None:
        """A session-scoped SET the FE has applied to its own variables, for a
        backend that keeps session variables itself (MySQL); a no-op elsewhere."""
        ...

    @property
    def thread_id(self) -> int:
        """The backend's id for this session's connection (MySQL's thread id), 0 if none."""
        ...

    def close(self) -> None: ...

    # A relaying backend (MySQL) only: commands relayed as the client sent them.

    def relay(
        self,
        payload: bytes,
        command: Command,
        database: str | None,
        interrupted: Callable[[], SqlError | None],
        statement_id: int = 0,
    ) -> AsyncGenerator[bytes, None]:
        """The server's answer to ``payload``, as framed packets (``frontend.mysql_backend.MysqlSession``)."""
        ...

    def interrupt(self) -> None:
        """Stop the relayed statement on the server; its answer still comes."""
        ...

    def has_statement(self, statement_id: int) -> bool: ...

    def grants_changed(self) -> None:
        """The session user's grants changed: the server must apply them before the next statement."""
        ...

    @property
    def connected(self) -> bool:
        """The backend connection is open (a relaying backend's; the embedded one: always)."""
        ...

    async def send_only(self, payload: bytes) -> None: ...


class Backend(Protocol):
    relays: bool
    """True for a backend that is a SQL server of its own (MySQL): statements go
    to it as written (SLEEP, SET and user variables included), the answer comes
    back with its own metadata. False for the embedded one (the FE translates)."""
    names_fold_case: bool
    """Database and table names compare case-insensitively (SQLite; a MySQL
    server with lower_case_table_names != 0): what grants are compared with."""

    async def start(self) -> None:
        """Learn what the backend is (before the FE serves)."""
        ...

    def session(
        self,
        on_thread: Callable[[int], None] | None = None,
        *,
        login: BackendLogin | None = None,
        user: Callable[[], UserRecord | None] | None = None,
        lock_wait_timeout: Callable[[], float] | None = None,
    ) -> BackendSession:
        """``on_thread`` is called when the session's backend connection opens
        (its thread id). ``login``: who a relaying backend's connection logs in
        as; ``user``: whose grants the embedded backend's authorizer checks;
        ``lock_wait_timeout``: how long an embedded write waits for a lock."""
        ...

    async def databases(self) -> list[str]: ...

    async def has_database(self, name: str) -> bool: ...

    async def create_database(self, name: str, if_not_exists: bool) -> None: ...

    async def drop_database(self, name: str, if_exists: bool) -> None: ...

    async def kill_threads(self, thread_ids: Sequence[int | tuple[str, int]]) -> None:
        """Kill backend connections left by a dead FE (no-op for an embedded backend)."""
        ...

    async def tables(self, database: str) -> list[str]: ...

    async def columns(self, database: str, table: str) -> list[Column]:
        """SqlError 1049 / 1146 when the database / table does not exist."""
        ...

    async def indexes(self, database: str, table: str) -> list[Index]: ...

    async def constant_select(self, query: exp.Select) -> Result:
        """A FROM-less SELECT whose session functions the caller has substituted."""
        ...

    async def query_rows(
        self, query: exp.Expr, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> Result:
        """``query`` over one table of rows the FE holds (information_schema.processlist)."""
        ...

    async def query_tables(
        self, query: exp.Expr, tables: Mapping[str, tuple[Sequence[str], Sequence[tuple[Any, ...]]]]
    ) -> Result:
        """``query`` over tables of rows the FE holds: name -> (columns, rows)."""
        ...

    def shutdown(self) -> None: ...


def check_db_name(name: str) -> str:
    if not valid_db_name(name):
        raise SqlError(errors.BAD_DB, f"Incorrect database name '{name}'")
    return name


def valid_db_name(name: str) -> bool:
    return _DB_NAME.match(name) is not None
