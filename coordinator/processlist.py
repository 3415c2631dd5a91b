"""SHOW PROCESSLIST rows: the 14 columns of the Doris page, in its order."""

from __future__ import annotations

from typing import Any

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
# and adds TRACE_ID (as current Doris does) after them.
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
    """An information_schema.processlist row: the full row, then TRACE_ID."""
    return (*format_row(row, caller_id, True), row.trace_id or None)


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
    }
