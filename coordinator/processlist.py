"""SHOW PROCESSLIST rows: the 14 columns of the Doris page, in its order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from coordinator.pb import fecluster_pb2 as pb

COLUMNS = (
    "CurrentConnected",
    "Id",
    "User",
    "Host",
    "LoginTime",
    "Catalog",
    "Db",
    "Command",
    "Time",
    "State",
    "QueryId",
    "Info",
    "FE",
    "CloudCluster",
)
# information_schema.processlist spells the same columns in upper snake case,
# and adds TRACE_ID (as current Doris does) after them, then where the session's
# statements run over a relaying backend: the host (host:port) and the thread id
# there (the server's own processlist ID), so an operator can find it on that host.
SCHEMA_COLUMNS = (
    "CURRENT_CONNECTED",
    "ID",
    "USER",
    "HOST",
    "LOGIN_TIME",
    "CATALOG",
    "DB",
    "COMMAND",
    "TIME",
    "STATE",
    "QUERY_ID",
    "INFO",
    "FE",
    "CLOUD_CLUSTER",
    "TRACE_ID",
    "BACKEND_HOST",
    "BACKEND_THREAD",
)
INFO_LIMIT = 100


def format_row(row: pb.ProcessRow, caller_id: int, full: bool) -> tuple[Any, ...]:
    # NULL while the session sleeps (as MariaDB shows it): a finished
    # statement's text is nobody's business.
    info = (row.info if full else row.info[:INFO_LIMIT]) or None
    return (
        "Yes" if row.id == caller_id else "No",
        row.id,
        row.user,
        row.host,
        row.login_time,
        row.catalog,
        row.db,
        row.command,
        row.time,
        row.state,
        row.query_id,
        info,
        row.fe,
        row.cloud_cluster or None,
    )


def schema_row(row: pb.ProcessRow, caller_id: int) -> tuple[Any, ...]:
    """An information_schema.processlist row: the full row, then TRACE_ID,
    BACKEND_HOST and BACKEND_THREAD (NULL without a backend connection)."""
    return (
        *format_row(row, caller_id, True),
        row.trace_id or None,
        row.backend_host or None,
        row.backend_thread or None,
    )


def row_dict(row: pb.ProcessRow) -> dict[str, Any]:
    """A processlist row as JSON (REST, the CLI): every field by name; an empty
    CloudCluster or TraceId is null, as SQL shows it."""
    return {
        "id": row.id,
        "user": row.user,
        "host": row.host,
        "login_time": row.login_time,
        "catalog": row.catalog,
        "db": row.db,
        "command": row.command,
        "time": row.time,
        "state": row.state,
        "query_id": row.query_id,
        "info": row.info,
        "fe": row.fe,
        "cloud_cluster": row.cloud_cluster or None,
        "trace_id": row.trace_id or None,
        "backend_host": row.backend_host or None,
        "backend_thread": row.backend_thread or None,
    }


@dataclass(frozen=True)
class Narrowing:
    """What a processlist WHERE pins down before any row is built: ``ID = n``,
    ``USER = 'x'`` (and ``IN`` lists) among its top-level ANDs. An owner then
    builds rows only for the sessions it admits and, when ``complete`` (the
    condition is nothing else), evaluates nothing more: at 20,000 sessions
    that is a dict walk instead of a table loaded into SQLite."""

    ids: frozenset[int] | None = None
    users: frozenset[str] | None = None
    complete: bool = False

    def admits(self, conn_id: int, user: str) -> bool:
        return (self.ids is None or conn_id in self.ids) and (self.users is None or user in self.users)


def _pinned(term: exp.Expr) -> tuple[str, set[Any]] | None:
    """``("ID", {5})`` for ``ID = 5``, ``("USER", {"a", "b"})`` for ``USER IN ('a', 'b')``."""
    if isinstance(term, exp.EQ):
        column, values = term.this, [term.expression]
        if isinstance(values[0], exp.Column):
            column, values = values[0], [term.this]
    elif isinstance(term, exp.In) and not term.args.get("query"):
        column, values = term.this, list(term.expressions)
    else:
        return None
    if not isinstance(column, exp.Column) or not values or not all(isinstance(v, exp.Literal) for v in values):
        return None
    name = column.name.upper()
    if name == "ID" and all(not v.is_string and v.this.isdigit() for v in values):
        return name, {int(v.this) for v in values}
    if name == "USER" and all(v.is_string for v in values):
        return name, {v.this for v in values}
    return None


def narrowing(condition: exp.Expr) -> Narrowing:
    """The Narrowing of a parsed WHERE condition (no narrowing when it pins nothing)."""
    terms = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    terms = [t.unnest() for t in terms]
    ids: set[int] | None = None
    users: set[str] | None = None
    rest = 0
    for term in terms:
        pinned = _pinned(term)
        if pinned is None:
            rest += 1
        elif pinned[0] == "ID":
            ids = pinned[1] if ids is None else ids & pinned[1]
        else:
            users = pinned[1] if users is None else users & pinned[1]
    return Narrowing(
        None if ids is None else frozenset(ids), None if users is None else frozenset(users), complete=rest == 0
    )
