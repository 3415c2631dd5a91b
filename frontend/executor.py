"""The statement dispatcher: the FE's own statements (``frontend.statements``)
are recognised by small regular expressions, so cluster statements never pay
for a sqlglot parse; everything else goes to the backend, except a few
SELECTs the FE answers itself (session functions, information_schema.processlist).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from frontend import constants, lexer
from frontend.result import Result
from frontend.sqlparse import ByteBoundedCache, parse, without_doris_clauses
from frontend.sqltext import FLAGS, statement_text
from frontend.statements import Handlers, Services, cluster, databases, metadata, transactions, users, variables
from frontend.variables import VERSION

if TYPE_CHECKING:
    from frontend.session import Session

_SELECT_INT = re.compile(r"^select\s+(-?\d{1,18})$", FLAGS)
# The embedded backend parses a statement into a tree of about 500 bytes per
# byte of text (1 MB of INSERT took 600 MB), in a worker that shares the GIL
# with the event loop: what one statement may cost is bounded, and so is the
# number parsed at once.
MAX_EMBEDDED_STATEMENT = 256 * 1024
_PARSE_SLOTS = asyncio.Semaphore(2)
PARSE_CACHE_ENTRY = 1024  # longer statements are parsed off the loop (4 KB took up to 30 ms), never cached
# Bounded by the statements' text; a tree costs some tens of times its text.
_PARSED: ByteBoundedCache[str, exp.Expr] = ByteBoundedCache(256 * 1024, PARSE_CACHE_ENTRY, len)


Prepared = tuple[str, Sequence[Any]]  # a prepared statement's text (``?`` markers) and its parameters
_BINDABLE_START = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(?:select|insert|update|delete|replace)\b", FLAGS)


def _bindable(tree: exp.Expr, param_count: int, db: str | None) -> bool:
    """Whether the backend may run ``tree`` with bound parameters: a data
    statement over tables, nothing the FE answers itself, no @variables."""
    try:
        return (
            isinstance(tree, exp.Select | exp.Insert | exp.Update | exp.Delete)
            and not _is_constant_select(tree)
            and sum(1 for _ in tree.find_all(exp.Placeholder)) == param_count
            and tree.find(exp.Parameter, exp.SessionParameter) is None
            and not cluster.references_processlist(tree)
            and metadata.information_schema_tables(tree, db) is None
        )
    except SqlError:
        return False  # the text path gives the error


# A prepared statement's text -> the text the backend binds (None: not
# bindable, the text path runs it). SQLite's authorizer checks every execute.
BoundPlan = str | None
_BOUND: ByteBoundedCache[tuple[str, str | None, bool, int], BoundPlan] = ByteBoundedCache(
    256 * 1024, PARSE_CACHE_ENTRY, lambda key: len(key[0])
)


def _bound_plan(template: str, db: str | None, fold_case: bool, param_count: int) -> BoundPlan:
    text = statement_text(template)
    try:
        tree = _parse(text)
        return text if _bindable(tree, param_count, db) else None
    except SqlError:
        return None  # the text path gives the error


def _parse(sql: str) -> exp.Expr:
    """Cached: callers must not change the tree (copy it first)."""
    return _PARSED.get(sql, lambda: parse(sql))


def _is_constant_select(tree: exp.Expr) -> bool:
    return (
        isinstance(tree, exp.Select)
        and not tree.args.get("from")
        and not tree.args.get("with")
        and tree.find(exp.Table) is None
        and not any(f.name.upper() in _SESSION_STATE_FUNCTIONS for f in tree.find_all(exp.Anonymous))
    )


# Functions of the session's backend connection: a SELECT naming them goes there.
_SESSION_STATE_FUNCTIONS = {"SLEEP", "LAST_INSERT_ID", "ROW_COUNT", "FOUND_ROWS"}


def session_value(session: Session, node: exp.Expr) -> Any:
    """The value of a session function or ``@@variable``; KeyError for anything else."""
    if isinstance(node, exp.SessionParameter):
        return session.variables.get(node.name)
    if isinstance(node, exp.Parameter):  # @v: NULL until set, as in MySQL
        return session.user_variables.get(node.name.lower())
    name = node.sql_name().upper() if isinstance(node, exp.Func) else ""
    if isinstance(node, exp.Anonymous):
        name = node.name.upper()
    if name in ("DATABASE", "SCHEMA", "CURRENTSCHEMA", "CURRENT_SCHEMA"):
        return session.db
    if name == "CONNECTION_ID":
        return session.id
    if name in ("CURRENT_USER", "CURRENTUSER"):
        return f"{session.user}@%"  # the account the session runs as (every account is user@'%')
    if name in ("USER", "SESSION_USER", "SYSTEM_USER"):
        return f"{session.user}@{session.host.rsplit(':', 1)[0]}"  # who logged in, and from where
    if name in ("NOW", "SYSDATE", "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP", "CURRENT_DATETIME"):
        return datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    if name in ("CURDATE", "CURRENT_DATE"):
        return datetime.now().strftime("%Y-%m-%d")
    if name in ("CURTIME", "CURRENT_TIME"):
        return datetime.now().strftime("%H:%M:%S")
    if name in ("VERSION", "CURRENT_VERSION"):  # sqlglot's CurrentVersion would become SQLite's version
        return VERSION
    raise KeyError(name)


def _literal(value: Any) -> exp.Expr:
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        value = int(value)
    return exp.Literal.number(value) if isinstance(value, int | float) else exp.Literal.string(str(value))


def _user_variables(session: Session, tree: exp.Expr) -> exp.Expr:
    """``tree`` (changed) with each ``@v`` replaced by its value."""
    if tree.find(exp.Parameter) is None:
        return tree
    return tree.transform(lambda n: _literal(session_value(session, n)) if isinstance(n, exp.Parameter) else n)


@dataclass(frozen=True)
class Route:
    """Where a statement goes over a relaying backend: to the engine as sent
    (``relay``), or to the FE's own handlers (with ``text``, the statement as
    the server would read it: comments gone, executable comments kept); what
    the FE observes of a relayed one (the database a ``USE`` selects, a SET
    that may change the sql_mode the lexer reads quotes by)."""

    relay: bool
    text: str = ""
    use: str | None = None
    sql_mode: bool = False


RELAY = Route(relay=True)
# Session variables the FE keeps for itself (time limits, trace ids, the
# processlist's scope, idle timeouts): a SET naming one is the FE's to carry out.
FE_VARIABLES = frozenset(
    {
        "session_context",
        "query_timeout",
        "max_execution_time",
        "show_all_fe_connection",
        "max_user_connections",
        "wait_timeout",
        "interactive_timeout",
        "cloud_cluster",
    }
)
# Families of the lexer's that the FE carries out over a relaying backend. The
# rest (USE, transactions, SLEEP, roles) are the engine's, observed as they pass.
_FE_FAMILIES = frozenset({"kill", "processlist", "kill_audit", "accounts", "set", "processlist_table", "connection_id"})


def route(session: Session, sql: str) -> Route:
    """Whether a statement is the engine's (relayed as the client sent it) or
    the FE's, read by ``frontend.lexer`` as the server would read it."""
    big = len(sql) > lexer.MAX_CLASSIFY
    # A long statement is read only as far as its first 64 KB: what the FE owns
    # is short, and nothing of a user's may cost the loop more than that.
    head = sql[: lexer.MAX_CLASSIFY] if big else sql
    c = lexer.classify(head, session.quote_modes, fe_variables=FE_VARIABLES, current_db=session.db)
    owned = c.owned
    if big and owned is not None and owned in _FE_FAMILIES:
        raise SqlError(errors.NOT_SUPPORTED, f"statements of the FE's own longer than {lexer.MAX_CLASSIFY} bytes")
    if owned is None:
        if c.first_words[:2] in (("CREATE", "DATABASE"), ("CREATE", "SCHEMA")):
            # A new database is the cluster's: users granted on *.*.* reach it (frontend.backend_accounts).
            return Route(relay=False, text=c.text)
        if c.first_words[:1] == ("SET",):
            return Route(relay=True, sql_mode="sql_mode" in sql.lower())
        return RELAY
    if owned in _FE_FAMILIES or (owned == "warnings" and session.fe_answered):
        return Route(relay=False, text=c.text)
    if owned == "use":
        return Route(relay=True, use=c.database)
    return RELAY


class Executor:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Order matters once: users' SET PASSWORD before the generic SET.
        self._handlers: Handlers = [
            *cluster.HANDLERS,
            *users.HANDLERS,
            *databases.HANDLERS,
            *metadata.HANDLERS,
            *transactions.HANDLERS,
            *variables.HANDLERS,
        ]

    route = staticmethod(route)

    def immediate(self, sql: str) -> Result | None:
        """Statements answered without awaiting anything (``SELECT 1``, the
        connection pools' ping): no task, no parse."""
        m = _SELECT_INT.match(sql.strip().rstrip(";").strip())
        return Result([m.group(1)], [(int(m.group(1)),)]) if m else None

    async def run(
        self, session: Session, sql: str, prepared: Prepared | None = None, text: str | None = None
    ) -> Result:
        """Run ``sql``; ``prepared``, for a prepared statement's execute, is its
        text with ``?`` markers and the parameters that ``sql`` substitutes;
        ``text``: the statement as the lexer read it (a relaying backend's FE statements)."""
        if not self.services.backend.relays:
            if len(sql) > MAX_EMBEDDED_STATEMENT:  # before any scan of it
                raise SqlError(
                    errors.NOT_SUPPORTED,
                    f"statements longer than {MAX_EMBEDDED_STATEMENT >> 10} KB on the embedded backend"
                    " (split it, or use a MySQL backend)",
                )
            if prepared is not None:
                bound = await self._bound(session, *prepared)
                if bound is not None:
                    return bound
        text = statement_text(sql) if text is None else text
        if not text:
            raise SqlError(errors.EMPTY_QUERY, "Query was empty")
        if variables.SHOW_WARNINGS.match(text) is None:
            session.warnings = []
        for pattern, handler in self._handlers:
            m = pattern.match(text)
            if m:
                return await handler(self.services, session, m)
        return await self._general(session, text)

    async def _general(self, session: Session, text: str) -> Result:
        relays = self.services.backend.relays
        if not relays:
            text = without_doris_clauses(text)  # a Doris backend reads them itself
        cached = len(text) <= PARSE_CACHE_ENTRY
        # Longer statements are parsed off the loop (seconds for a bulk INSERT),
        # a few at a time, and handed to the backend as a tree, so it does not
        # parse them again.
        try:
            if cached:
                tree = _parse(text)
            else:
                async with _PARSE_SLOTS:
                    tree = await asyncio.to_thread(parse, text)
        except SqlError:
            if relays:  # syntax sqlglot lacks: the server's to judge
                return self._warnings(session, await session.backend.execute(text, session.db))
            raise
        if cluster.references_processlist(tree):
            return await cluster.processlist_table(self.services, session, tree)
        if relays:
            # Only a statement naming CONNECTION_ID() reaches here: the FE's id in
            # a constant SELECT; anywhere else the server's statement, as sent.
            if _is_constant_select(tree):
                return await self._constant_select(session, tree, text)
            return self._warnings(session, await session.backend.execute(text, session.db))
        schema_tables = metadata.information_schema_tables(tree, session.db)
        if schema_tables is not None:  # built from what the user may see: no privilege check needed
            for current in list(tree.find_all(exp.CurrentSchema)):  # DATABASE(): the session's, not SQLite's 'main'
                current.replace(_literal(session.db))
            return await metadata.information_schema_query(self.services, session, tree, schema_tables)
        if _is_constant_select(tree):
            return self._warnings(session, await self._constant_select(session, tree, text))
        # No privilege check here: SQLite's authorizer checks every table it
        # actually reads or writes against the user's grants (sqlite_authorizer).
        if not cached:
            result = await session.backend.execute(text, session.db, _user_variables(session, tree))
        elif tree.find(exp.Parameter) is not None:  # a copy: the cached tree stays as parsed
            result = await session.backend.execute(text, session.db, _user_variables(session, tree.copy()))
        else:
            result = await session.backend.execute(text, session.db)
        return self._warnings(session, result)

    async def _bound(self, session: Session, template: str, params: Sequence[Any]) -> Result | None:
        """A prepared data statement with its parameters bound by the backend
        (parsed, checked and translated once per text); None for anything else,
        which takes the text path with the parameters substituted."""
        if len(template) > PARSE_CACHE_ENTRY or not _BINDABLE_START.match(template):
            return None
        fold = self.services.backend.names_fold_case
        plan = _BOUND.get(
            (template, session.db, fold, len(params)), lambda: _bound_plan(template, session.db, fold, len(params))
        )
        if plan is None:
            return None
        session.warnings = []
        return self._warnings(session, await session.backend.execute_bound(plan, session.db, params))

    @staticmethod
    def _warnings(session: Session, result: Result) -> Result:
        if result.warnings:
            session.warnings = list(result.warnings)  # SHOW WARNINGS, answered by the FE
        return result

    async def _constant_select(self, session: Session, tree: exp.Expr, text: str = "") -> Result:
        def substitute(node: exp.Expr) -> exp.Expr:
            try:
                return _literal(session_value(session, node))
            except KeyError:
                return node

        query = tree.copy().transform(substitute)
        unknown = query.find(exp.Anonymous)
        if unknown is not None:
            raise SqlError(errors.NO_SUCH_FUNCTION, f"FUNCTION {unknown.name} does not exist")
        assert isinstance(query, exp.Select) and isinstance(tree, exp.Select)
        # The columns are named as the client wrote them, not as substituted.
        columns = constants.labels(text, tree.expressions)  # MySQL's labels: the items as the client wrote them
        # Folded here only for the embedded backend; a server computes its own constants.
        relays = self.services.backend.relays
        row = constants.fold(query) if query.args.get("where") is None and not relays else None
        if row is not None:
            return Result(columns, [row])  # typed as MySQL types them, without a trip through SQLite
        result = await self.services.backend.constant_select(query)
        result.columns = columns
        if result.wire_columns is not None:  # the backend's own types, under the client's names
            result.wire_columns = [
                replace(c, name=n, org_name=n) for c, n in zip(result.wire_columns, result.columns, strict=False)
            ]
        return result
