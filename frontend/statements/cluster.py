"""Statements that act on the whole cluster: KILL (routed to the owner FE),
SHOW PROCESSLIST and ``information_schema.processlist`` (every FE asked in
parallel), SHOW KILL AUDIT (the registry's audit stream)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import MAX_CONNECTION_ID, is_query_id
from coordinator.pb import fecluster_pb2 as pb
from coordinator.processlist import COLUMNS, SCHEMA_COLUMNS, format_row, schema_row
from frontend.result import OK, Result, SqlWarning
from frontend.sqltext import FLAGS, USER, unquote
from frontend.statements import Handlers, Services
from frontend.statements.users import need_admin

if TYPE_CHECKING:
    from frontend.session import Session

# MariaDB's grammar: KILL [HARD | SOFT] [CONNECTION | QUERY] {id | USER user_name}
_KILL = re.compile(r"^kill(?:\s+(?:hard|soft))?(?:\s+(connection|query))?\s+(?:user\s+(.+)|(.+))$", FLAGS)
_PROCESSLIST = re.compile(r"^show\s+(full\s+)?processlist$", FLAGS)
_SHOW_AUDIT = re.compile(r"^show\s+kill\s+audit(?:\s+where\s+(.+?))?(?:\s+limit\s+(\d{1,6}))?$", FLAGS)
_AUDIT_COLUMNS = (
    "time", "requester", "received_on", "kind", "target", "target_user", "owner", "outcome", "requester_host", "count"
)  # fmt: skip
_AUDIT_NAMES = (
    "Time", "Requester", "ReceivedOn", "Kind", "Target", "TargetUser", "Owner", "Outcome", "RequesterHost", "Count"
)  # fmt: skip
_AUDIT_SCAN = 10_000  # entries read when a WHERE filters them


def parse_kill_target(kind: str | None, arg: str, own_id: int, user: str | None = None) -> pb.KillTarget:
    """``KILL [CONNECTION|QUERY] <arg>`` (or ``... USER <user>``) -> what to
    kill, or the error MySQL would give. A quoted KILL QUERY argument is a
    query id if it has the query id's shape, else a trace id."""
    kill_kind = pb.KILL_QUERY if (kind or "").lower() == "query" else pb.KILL_CONNECTION
    if user is not None:
        named = re.fullmatch(USER, user.strip(), FLAGS)  # 'bob' or 'bob'@'%': the host part is ignored
        if named is None or not unquote(named.group(1)):
            raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax near '{user[:60]}'")
        return pb.KillTarget(user=unquote(named.group(1)), kind=kill_kind, spare_connection_id=own_id)
    arg = arg.strip()
    if re.fullmatch(r"connection_id\s*\(\s*\)", arg, re.I):
        return pb.KillTarget(connection_id=own_id, kind=kill_kind)
    quoted = len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "'\""
    text = arg[1:-1] if quoted else arg
    if quoted and kill_kind == pb.KILL_QUERY and not text.isdigit():
        if is_query_id(text):
            return pb.KillTarget(query_id=text, kind=kill_kind)
        if not text or len(text) > 128:
            raise errors.unknown_query(text)
        return pb.KillTarget(trace_id=text, kind=kill_kind)
    if not re.fullmatch(r"[+-]?\d+", text):
        raise SqlError(
            errors.PARSE_ERROR,
            f"You have an error in your SQL syntax; check the manual for the right syntax to use near '{arg[:60]}'",
        )
    value = int(text)
    if not 0 < value <= MAX_CONNECTION_ID:
        raise errors.unknown_thread(value)
    return pb.KillTarget(connection_id=value, kind=kill_kind)


async def kill(services: Services, session: Session, m: re.Match[str]) -> Result:
    target = parse_kill_target(m.group(1), m.group(3) or "", session.id, user=m.group(2))
    outcome = await services.kill(target, session.user, session.host.rsplit(":", 1)[0])
    if not target.user and not target.trace_id:
        return OK
    # KILL USER and a trace id's KILL act on several sessions, on every FE: the
    # rows are the sessions (or statements) hit, as MariaDB's KILL USER says.
    session.warnings = [SqlWarning("Warning", errors.UNKNOWN_ERROR, f.message) for f in outcome.failures]
    return Result(affected_rows=outcome.killed, warnings=list(session.warnings))


async def cluster_rows(services: Services, session: Session, where: str = "") -> list[pb.ProcessRow]:
    """Every session the caller may see (matching ``where``, on each owner);
    FEs that did not answer become warnings."""
    local_only = not session.variables.get("show_all_fe_connection")
    rows, failures = await services.processlist(session.user, local_only, where)
    session.warnings = [SqlWarning("Warning", errors.UNKNOWN_ERROR, f.message) for f in failures]
    return rows


async def processlist(services: Services, session: Session, m: re.Match[str]) -> Result:
    full = bool(m.group(1))
    rows = await cluster_rows(services, session)
    return Result(list(COLUMNS), [format_row(r, session.id, full) for r in rows], warnings=list(session.warnings))


def references_processlist(tree: exp.Expr) -> bool:
    return any(
        t.name.lower() == "processlist" and t.db.lower() == "information_schema" for t in tree.find_all(exp.Table)
    )


def pushed_down_where(tree: exp.Expr) -> str:
    """The WHERE of ``SELECT ... FROM information_schema.processlist WHERE ...``
    that each owner can evaluate on its own rows ("" when there is none, or when
    it needs more than one row at a time: subqueries, or CURRENT_CONNECTED,
    which depends on who asks). The full query still runs on what comes back."""
    if not isinstance(tree, exp.Select) or tree.args.get("joins") or tree.args.get("with"):
        return ""
    where = tree.args.get("where")
    tables = list(tree.find_all(exp.Table))
    if where is None or len(tables) != 1 or where.find(exp.Select) is not None:
        return ""
    condition = where.this.copy()
    for column in condition.find_all(exp.Column):
        if column.name.upper() == "CURRENT_CONNECTED":
            return ""
        column.set("table", None)
        column.set("db", None)
    return condition.sql(dialect="mysql")


async def processlist_table(services: Services, session: Session, tree: exp.Expr) -> Result:
    """A query over ``information_schema.processlist``: the cluster's rows, then
    the query evaluated over them by the backend (off the event loop)."""
    rows = [schema_row(r, session.id) for r in await cluster_rows(services, session, pushed_down_where(tree))]
    query = tree.copy()
    for table in query.find_all(exp.Table):
        if table.db.lower() == "information_schema" and table.name.lower() == "processlist":
            table.set("db", None)
            table.set("this", exp.to_identifier("processlist"))
    result = await services.backend.query_rows(query, "processlist", SCHEMA_COLUMNS, rows)
    result.warnings = list(session.warnings)
    return result


async def show_audit(services: Services, session: Session, m: re.Match[str]) -> Result:
    """``SHOW KILL AUDIT [WHERE <condition on its columns>] [LIMIT n]``, newest first:
    filter by requester, FE, outcome, time, target, target user (ADMIN_PRIV)."""
    await need_admin(services, session)
    where, limit = m.group(1), int(m.group(2) or 100)
    entries = await services.read_audit(_AUDIT_SCAN if where else limit)
    rows = [tuple(e.get(c, "") for c in _AUDIT_COLUMNS) for e in entries]
    if not where:
        return Result(list(_AUDIT_NAMES), rows)
    try:
        query = sqlglot.parse_one(f"SELECT * FROM audit WHERE {where} LIMIT {limit}", read="mysql")
    except ParseError as e:
        raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax near '{where[:60]}'") from e
    result = await services.backend.query_rows(query, "audit", _AUDIT_NAMES, rows)
    result.columns = list(_AUDIT_NAMES)
    return result


HANDLERS: Handlers = [
    (_KILL, kill),
    (_PROCESSLIST, processlist),
    (_SHOW_AUDIT, show_audit),
]
