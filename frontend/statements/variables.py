"""Session state statements: SET (``SET autocommit`` reaches the session's
backend connection), SHOW VARIABLES, SHOW WARNINGS, SLEEP."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from coordinator import errors
from coordinator.errors import SqlError
from frontend.result import OK, Result
from frontend.sqltext import FLAGS, STRING, like, unescape
from frontend.statements import Handlers, Services
from frontend.statements.users import need_admin
from frontend.variables import expression_value

if TYPE_CHECKING:
    from frontend.session import Session

SHOW_WARNINGS = re.compile(r"^show\s+(warnings|errors)(?:\s+limit\s+\d+)?$", FLAGS)
_SHOW_VARIABLES = re.compile(rf"^show\s+(?:global\s+|session\s+)?variables(?:\s+like\s+{STRING})?$", FLAGS)
_SLEEP = re.compile(r"^select\s+sleep\s*\(\s*(\d+(?:\.\d*)?)\s*\)$", FLAGS)
_SET = re.compile(r"^set\s", FLAGS)
# What PyMySQL, mysqlclient and Connector/J send on every connect: no parse for it.
_SET_NAMES = re.compile(r"^set\s+names\s+'?([A-Za-z0-9_]+)'?(?:\s+collate\s+'?[A-Za-z0-9_]+'?)?$", FLAGS)
_CHARSET_VARIABLES = ("character_set_client", "character_set_connection", "character_set_results")
_NOT_RELAYED = ("character_set_", "collation_", "session_context")  # the FE's own business
MAX_SET_STATEMENT = 64 * 1024  # a SET is parsed on the loop: bound what that may cost


async def sleep(services: Services, session: Session, m: re.Match[str]) -> Result:
    if services.backend.relays:  # the backend's own SLEEP: a KILL must be seen to stop it there
        return await session.backend.execute(m.string, session.db)
    await asyncio.sleep(float(m.group(1)))
    return Result([f"SLEEP({m.group(1)})"], [(0,)])


async def show_warnings(services: Services, session: Session, m: re.Match[str]) -> Result:
    rows = [(w.level, w.code, w.message) for w in session.warnings]
    if m.group(1).lower() == "errors":
        rows = [r for r in rows if r[0] == "Error"]
    return Result(["Level", "Code", "Message"], rows)


async def show_variables(services: Services, session: Session, m: re.Match[str]) -> Result:
    rows = [(k, None if v is None else str(v)) for k, v in session.variables.list()]
    if m.group(1) is not None:
        pattern = unescape(m.group(1))
        rows = [r for r in rows if like(pattern, r[0])]
    return Result(["Variable_name", "Value"], rows)


async def set_global(services: Services, session: Session, name: str, value: object) -> None:
    """``SET GLOBAL``: in force on every FE of the cluster (kept in Redis); ADMIN_PRIV."""
    await need_admin(services, session)
    await services.set_global(name.lower(), session.variables.checked(name, value))


async def set_session_context(session: Session, text: str) -> None:
    """Doris's ``SET session_context = 'trace_id:<id>'``: the id shows in
    information_schema.processlist and ``KILL QUERY '<id>'`` finds the session
    from any FE (through the registry, written before this statement answers)."""
    trace = ""
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, _, value = part.partition(":")
        if key.strip().lower() == "trace_id":
            trace = value.strip()
    if len(trace) > 128:
        raise SqlError(errors.WRONG_VALUE_FOR_VAR, "a trace_id is at most 128 characters")
    session.variables.set("session_context", text)
    await session.set_trace_id(trace)


def _syntax_error(sql: str) -> SqlError:
    return SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax near '{sql[:60]}'")


async def set_names(services: Services, session: Session, m: re.Match[str]) -> Result:
    charset = m.group(1) if m.group(1).upper() != "DEFAULT" else "utf8mb4"
    for name in _CHARSET_VARIABLES:
        session.variables.set(name, charset)
    return OK


async def set_statement(services: Services, session: Session, m: re.Match[str]) -> Result:
    sql = m.string
    if len(sql) > MAX_SET_STATEMENT:
        raise SqlError(errors.NOT_SUPPORTED, f"SET statements longer than {MAX_SET_STATEMENT} bytes are not supported")
    try:
        tree = sqlglot.parse_one(sql, read="mysql")
    except ParseError as e:
        raise _syntax_error(sql) from e
    if not isinstance(tree, exp.Set):
        raise _syntax_error(sql)
    relay: list[exp.Expr] = []  # what a relaying backend is told (its own session variables)
    for item in tree.expressions:
        kind = (item.text("kind") or "").upper()
        if kind in ("NAMES", "CHARACTER SET"):
            # A relaying backend's connection speaks the client's character set (answers are relayed as sent).
            charset = item.name if item.name.upper() != "DEFAULT" else "utf8mb4"
            for name in _CHARSET_VARIABLES:
                session.variables.set(name, charset)
            relay.append(item)
        elif kind == "TRANSACTION":
            relay.append(item)
        elif kind in ("", "GLOBAL", "PERSIST", "PERSIST_ONLY", "SESSION", "LOCAL") and isinstance(item.this, exp.EQ):
            left = item.this.left
            if isinstance(left, exp.Parameter):  # SET @v = value: the session's user variable
                session.set_user_variable(left.name, expression_value(item.this.right, session.variables))
                relay.append(item)
                continue
            value = expression_value(item.this.right, session.variables)
            scope = (left.text("kind") if isinstance(left, exp.SessionParameter) else "") or kind
            if scope.upper() in ("GLOBAL", "PERSIST", "PERSIST_ONLY"):  # the cluster's, never the backend's
                await set_global(services, session, left.name, value)
            elif left.name.lower() == "session_context":
                await set_session_context(session, session.variables.checked(left.name, value))
            else:
                session.variables.set(left.name, value)
                if left.name.lower() == "autocommit":
                    await session.backend.set_autocommit(bool(session.variables.get("autocommit")))
                elif not left.name.lower().startswith(_NOT_RELAYED):
                    relay.append(item)
        else:
            raise SqlError(errors.NOT_SUPPORTED, f"Unsupported SET statement: {kind or item.sql('mysql')[:60]}")
    if relay and services.backend.relays:  # session variables behave as on the backend
        whole = len(relay) == len(tree.expressions)
        await session.backend.relay_set(sql if whole else "SET " + ", ".join(i.sql(dialect="mysql") for i in relay))
    return OK


HANDLERS: Handlers = [
    (_SLEEP, sleep),
    (SHOW_WARNINGS, show_warnings),
    (_SHOW_VARIABLES, show_variables),
    (_SET_NAMES, set_names),
    (_SET, set_statement),
]
