"""System variables: one schema per FE, one set of values per session.

A variable is ``(type, default, dynamic)``; a session reads its own value,
else the default. ``expression_value`` turns the right-hand side of a ``SET``
into a value: literals, ``ON``/``OFF``/``DEFAULT``, bare words, ``@@other``
and ``CONCAT(...)`` of those (Connector/J sends
``sql_mode = concat(@@sql_mode, ',STRICT_TRANS_TABLES')`` on every connect).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError

VERSION = "5.7.99"  # what Doris reports: drivers and ORMs gate features on it
VERSION_COMMENT = "fecluster"

Schema = dict[str, tuple[Callable[[Any], Any], Any, bool]]


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        word = value.strip().upper()
        if word in ("ON", "TRUE", "1"):
            return True
        if word in ("OFF", "FALSE", "0"):
            return False
        raise ValueError(value)
    return bool(value)


def schema(cloud_cluster: str = "") -> Schema:
    utf8 = "utf8mb4"
    return {
        "auto_increment_increment": (int, 1, True),
        "autocommit": (_bool, True, True),
        "character_set_client": (str, utf8, True),
        "character_set_connection": (str, utf8, True),
        "character_set_database": (str, utf8, True),
        "character_set_results": (str, utf8, True),
        "character_set_server": (str, utf8, True),
        "collation_connection": (str, "utf8mb4_general_ci", True),
        "collation_database": (str, "utf8mb4_general_ci", True),
        "collation_server": (str, "utf8mb4_general_ci", True),
        "external_user": (str, "", False),
        "init_connect": (str, "", True),
        "interactive_timeout": (int, 28800, True),
        "innodb_lock_wait_timeout": (int, 50, True),  # s: how long an embedded write waits for a lock (1205)
        "lower_case_table_names": (int, 0, True),
        "max_allowed_packet": (int, 67108864, True),
        "max_execution_time": (int, 0, True),  # ms, 0: no limit (MySQL)
        "query_timeout": (int, 0, True),  # s, 0: no limit (Doris's, whose default is 900)
        "max_user_connections": (int, 0, True),  # the cluster default per user, 0: no limit
        "session_context": (str, "", True),  # Doris: 'trace_id:<id>' names the session's work
        "net_buffer_length": (int, 16384, True),
        "net_write_timeout": (int, 60, True),
        "performance_schema": (_bool, False, False),
        "sql_auto_is_null": (_bool, False, True),
        "sql_mode": (str, "", True),
        "sql_select_limit": (int, None, True),
        "system_time_zone": (str, "UTC", False),
        "time_zone": (str, "SYSTEM", True),
        "transaction_read_only": (_bool, False, True),
        "transaction_isolation": (str, "REPEATABLE-READ", True),
        "tx_isolation": (str, "REPEATABLE-READ", True),
        "version": (str, VERSION, False),
        "version_comment": (str, VERSION_COMMENT, False),
        "wait_timeout": (int, 28800, True),
        "event_scheduler": (str, "OFF", True),
        "default_storage_engine": (str, "sqlite", True),
        "default_tmp_storage_engine": (str, "sqlite", True),
        "show_all_fe_connection": (_bool, True, True),
        "cloud_cluster": (str, cloud_cluster, False),
    }


def unknown(name: str) -> SqlError:
    return SqlError(errors.UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{name}'")


class Variables:
    """One session's values over a shared schema; a value the session did not
    set comes from ``cluster`` (``SET GLOBAL``, cluster-wide), else the default."""

    def __init__(self, variable_schema: Schema, cluster: Mapping[str, Any] | None = None) -> None:
        self.schema = variable_schema
        self.cluster: Mapping[str, Any] = cluster if cluster is not None else {}
        self._values: dict[str, Any] = {}

    def _entry(self, name: str) -> tuple[Callable[[Any], Any], Any, bool]:
        entry = self.schema.get(name.lower())
        if entry is None:
            raise unknown(name)
        return entry

    def get(self, name: str) -> Any:
        name = name.lower()
        if name in self._values:
            return self._values[name]
        default = self._entry(name)[1]
        return self.cluster.get(name, default)

    def set(self, name: str, value: Any, force: bool = False) -> None:
        self._values[name.lower()] = self.checked(name, value, force)

    def checked(self, name: str, value: Any, force: bool = False) -> Any:
        """``value`` as the variable's type, or the error MySQL gives."""
        kind, default, dynamic = self._entry(name)
        if not dynamic and not force:
            raise SqlError(errors.READ_ONLY_VARIABLE, f"Variable '{name}' is a read only variable")
        if value is None or value is DEFAULT:
            return default
        try:
            return kind(value)
        except (TypeError, ValueError) as e:
            raise SqlError(
                errors.WRONG_VALUE_FOR_VAR, f"Variable '{name}' can't be set to the value of '{value}'"
            ) from e

    def list(self) -> list[tuple[str, Any]]:
        return [(name, self.get(name)) for name in sorted(self.schema)]


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()


def expression_value(node: exp.Expr, variables: Variables) -> Any:
    """The value a ``SET`` assigns; SqlError 1235 for what is not a constant."""
    if isinstance(node, exp.Boolean):
        return node.this
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        return float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(node, exp.Neg):
        return -expression_value(node.this, variables)
    if isinstance(node, exp.SessionParameter):
        return variables.get(node.name)
    if isinstance(node, exp.Concat | exp.DPipe) or (isinstance(node, exp.Anonymous) and node.name.upper() == "CONCAT"):
        parts = node.expressions if node.expressions else [node.this, node.expression]
        values = [expression_value(p, variables) for p in parts]
        return None if any(v is None for v in values) else "".join(str(v) for v in values)
    if isinstance(node, exp.Column | exp.Identifier | exp.Var):
        word = node.name
        if word.upper() == "DEFAULT":
            return DEFAULT
        return word  # SET sql_mode = TRADITIONAL, SET autocommit = ON
    raise SqlError(errors.NOT_SUPPORTED, f"SET to a non-constant expression is not supported: {node.sql('mysql')}")
