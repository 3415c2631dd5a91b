"""The statement executor: cluster statements (KILL, SHOW PROCESSLIST, users)
are recognised by small regular expressions so they never pay for a sqlglot
parse; everything else is translated and run on the backend."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlglot
from mysql_mimic.errors import MysqlError
from mysql_mimic.intercept import expression_to_value, setitem_kind
from sqlglot import exp
from sqlglot.errors import ParseError

from coordinator import errors
from coordinator.errors import SqlError
from coordinator.ids import MAX_CONNECTION_ID, is_query_id
from coordinator.pb import fecluster_pb2 as pb
from coordinator.processlist import COLUMNS, SCHEMA_COLUMNS, format_row
from coordinator.users import KNOWN_PRIVILEGES
from frontend.backend import CACHED_STATEMENT, check_db_name
from frontend.result import OK, Result, Warning

if TYPE_CHECKING:
    from frontend.node import Node
    from frontend.session import Session

_F = re.IGNORECASE | re.DOTALL
_NAME = r"(?:'(?:[^'\\]|\\.|'')*'|`(?:[^`]|``)*`|\"(?:[^\"\\]|\\.)*\"|[A-Za-z0-9_.$-]+)"
_USER = rf"({_NAME})(?:\s*@\s*{_NAME})?"
_STRING = r"'((?:[^'\\]|\\.|'')*)'"

_KILL = re.compile(r"^kill(?:\s+(connection|query))?\s+(.+)$", _F)
_PROCESSLIST = re.compile(r"^show\s+(full\s+)?processlist$", _F)
_SHOW_WARNINGS = re.compile(r"^show\s+(warnings|errors)(?:\s+limit\s+\d+)?$", _F)
_SHOW_GRANTS = re.compile(rf"^show\s+grants(?:\s+for\s+(?:current_user(?:\s*\(\s*\))?|{_USER}))?$", _F)
_SHOW_DATABASES = re.compile(r"^show\s+(?:databases|schemas)$", _F)
_SHOW_TABLES = re.compile(r"^show\s+(?:full\s+)?tables(?:\s+(?:from|in)\s+(\S+))?$", _F)
_SHOW_VARIABLES = re.compile(rf"^show\s+(?:global\s+|session\s+)?variables(?:\s+like\s+{_STRING})?$", _F)
_SHOW_AUDIT = re.compile(r"^show\s+kill\s+audit(?:\s+limit\s+(\d+))?$", _F)
_CREATE_USER = re.compile(
    rf"^create\s+user\s+(if\s+not\s+exists\s+)?{_USER}(?:\s+identified\s+by\s+(password\s+)?{_STRING})?$", _F
)
_DROP_USER = re.compile(rf"^drop\s+user\s+(if\s+exists\s+)?{_USER}$", _F)
_GRANT = re.compile(rf"^grant\s+(.+?)\s+on\s+(\S+)\s+to\s+{_USER}$", _F)
_REVOKE = re.compile(rf"^revoke\s+(.+?)\s+on\s+(\S+)\s+from\s+{_USER}$", _F)
_SET_PASSWORD = re.compile(
    rf"^set\s+password(?:\s+for\s+{_USER})?\s*=\s*(?:password\s*\(\s*{_STRING}\s*\)|{_STRING})$", _F
)
_USE = re.compile(r"^use\s+(`[^`]+`|\S+)$", _F)
_CREATE_DB = re.compile(r"^create\s+(?:database|schema)\s+(if\s+not\s+exists\s+)?(`[^`]+`|\S+)$", _F)
_DROP_DB = re.compile(r"^drop\s+(?:database|schema)\s+(if\s+exists\s+)?(`[^`]+`|\S+)$", _F)
_SELECT_INT = re.compile(r"^select\s+(-?\d{1,18})$", _F)
_SLEEP = re.compile(r"^select\s+sleep\s*\(\s*(\d+(?:\.\d*)?)\s*\)$", _F)
_SET = re.compile(r"^set\s", _F)
_NO_OP = re.compile(r"^(?:begin|start\s+transaction|commit|rollback)\b", _F)

VERSION = "5.7.99"
VERSION_COMMENT = "fecluster"


_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "Z": "\x1a"}


def unescape(text: str, quote: str = "'") -> str:
    """The value of a MySQL string literal's body: backslash escapes and doubled quotes."""
    if "\\" not in text and quote * 2 not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        elif c == quote and text[i + 1 : i + 2] == quote:
            out.append(quote)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "'`\"":
        return unescape(name[1:-1], name[0])
    return name


def strip_comments(sql: str) -> str:
    """Drop ``/* */``, ``-- `` and ``#`` comments outside quotes, so a commented
    KILL or SHOW PROCESSLIST is still ours (applications tag statements)."""
    if "/*" not in sql and "--" not in sql and "#" not in sql:
        return sql
    out, i, n, quote = [], 0, len(sql), ""
    while i < n:
        c = sql[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(sql[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
            out.append(c)
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
            continue
        elif c == "#" or (sql.startswith("--", i) and (i + 2 == n or sql[i + 2] in " \t\r\n")):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


_SECRET_STATEMENT = re.compile(r"\b(?:identified|password)\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'")


def redact(sql: str) -> str:
    """What processlist and logs may show: no password literals (MySQL shows <secret>)."""
    if _SECRET_STATEMENT.search(sql):
        return _QUOTED.sub("'<secret>'", sql)
    return sql


def _password_hash(text: str) -> str:
    """``IDENTIFIED BY PASSWORD '*<40 hex>'``: the stored mysql_native_password hash itself."""
    if re.fullmatch(r"\*[0-9A-Fa-f]{40}", text):
        return text[1:].lower()
    raise SqlError(errors.PARSE_ERROR, "IDENTIFIED BY PASSWORD takes a hash: '*' and 40 hex digits")


async def _need_admin(session: Session) -> None:
    """ADMIN_PRIV as the user table says now (a REVOKE elsewhere counts at once)."""
    user = await session.node.users.fresh(session.user)
    if user is None or not user.is_admin:
        raise SqlError(
            errors.SPECIFIC_ACCESS_DENIED,
            "Access denied; you need (at least one of) the ADMIN_PRIV privilege(s) for this operation",
        )


def _privileges(text: str) -> frozenset[str]:
    names = {p.strip().upper().replace(" ", "_") for p in text.split(",")}
    if names & {"ALL", "ALL_PRIVILEGES"}:
        return KNOWN_PRIVILEGES
    unknown = names - KNOWN_PRIVILEGES
    if unknown:
        raise SqlError(errors.PARSE_ERROR, f"Unknown privilege: {', '.join(sorted(unknown))}")
    return frozenset(names)


def _global_scope(scope: str) -> None:
    if scope not in ("*.*.*", "*.*"):
        raise SqlError(errors.NOT_SUPPORTED, f"only global privileges (ON *.*.*) are supported, not ON {scope}")


def parse_kill_target(kind: str | None, arg: str, own_id: int) -> pb.KillTarget:
    """``KILL [CONNECTION|QUERY] <arg>`` -> what to kill, or the error MySQL would give."""
    kill_kind = pb.KILL_QUERY if (kind or "").lower() == "query" else pb.KILL_CONNECTION
    arg = arg.strip()
    if re.fullmatch(r"connection_id\s*\(\s*\)", arg, re.I):
        return pb.KillTarget(connection_id=own_id, kind=kill_kind)
    quoted = len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "'\""
    text = arg[1:-1] if quoted else arg
    if quoted and kill_kind == pb.KILL_QUERY and not text.isdigit():
        if not is_query_id(text):
            raise errors.unknown_query(text)
        return pb.KillTarget(query_id=text, kind=kill_kind)
    if not re.fullmatch(r"[+-]?\d+", text):
        raise SqlError(
            errors.PARSE_ERROR,
            f"You have an error in your SQL syntax; check the manual for the right syntax to use near '{arg[:60]}'",
        )
    value = int(text)
    if not 0 < value <= MAX_CONNECTION_ID:
        raise errors.unknown_thread(value)
    return pb.KillTarget(connection_id=value, kind=kill_kind)


# ---------------------------------------------------------------- constants


_CONSTANT_DB = sqlite3.connect(":memory:")  # evaluates FROM-less SELECTs on the loop thread


@lru_cache(maxsize=1024)
def _parse(sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql, read="mysql")
    except ParseError as e:
        raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax: {e}") from e
    if tree is None:
        raise SqlError(errors.PARSE_ERROR, "You have an error in your SQL syntax")
    return tree


def _is_constant_select(tree: exp.Expression) -> bool:
    return (
        isinstance(tree, exp.Select)
        and not tree.args.get("from")
        and not tree.args.get("with")
        and tree.find(exp.Table) is None
        and not any(f.name.upper() == "SLEEP" for f in tree.find_all(exp.Anonymous))
    )


def _references_processlist(tree: exp.Expression) -> bool:
    return any(
        t.name.lower() == "processlist" and t.db.lower() == "information_schema" for t in tree.find_all(exp.Table)
    )


class Executor:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._handlers: list[tuple[re.Pattern[str], Callable[[Session, re.Match[str]], Awaitable[Result]]]] = [
            (_SLEEP, self._sleep),
            (_KILL, self._kill),
            (_PROCESSLIST, self._processlist),
            (_SHOW_WARNINGS, self._show_warnings),
            (_USE, self._use),
            (_SET_PASSWORD, self._set_password),
            (_SET, self._set),
            (_SHOW_GRANTS, self._show_grants),
            (_SHOW_DATABASES, self._show_databases),
            (_SHOW_TABLES, self._show_tables),
            (_SHOW_VARIABLES, self._show_variables),
            (_SHOW_AUDIT, self._show_audit),
            (_CREATE_USER, self._create_user),
            (_DROP_USER, self._drop_user),
            (_GRANT, self._grant),
            (_REVOKE, self._revoke),
            (_CREATE_DB, self._create_db),
            (_DROP_DB, self._drop_db),
            (_NO_OP, self._no_op),
        ]

    def immediate(self, sql: str) -> Result | None:
        """Statements answered without awaiting anything (``SELECT 1``, the
        connection pools' ping): no task, no parse."""
        m = _SELECT_INT.match(sql.strip().rstrip(";").strip())
        return Result([m.group(1)], [(int(m.group(1)),)]) if m else None

    async def run(self, session: Session, sql: str) -> Result:
        text = strip_comments(sql).strip().rstrip(";").strip()
        if not text:
            raise SqlError(errors.EMPTY_QUERY, "Query was empty")
        keep_warnings = _SHOW_WARNINGS.match(text) is not None
        if not keep_warnings:
            session.warnings = []
        for pattern, handler in self._handlers:
            m = pattern.match(text)
            if m:
                return await handler(session, m)
        return await self._general(session, text)

    # ------------------------------------------------------------ fast paths

    async def _sleep(self, session: Session, m: re.Match[str]) -> Result:
        await asyncio.sleep(float(m.group(1)))
        return Result([f"SLEEP({m.group(1)})"], [(0,)])

    async def _no_op(self, session: Session, m: re.Match[str]) -> Result:
        return OK

    # ------------------------------------------------------------ cluster statements

    async def _kill(self, session: Session, m: re.Match[str]) -> Result:
        target = parse_kill_target(m.group(1), m.group(2), session.id)
        await self.node.router.kill(target, session.user)
        return OK

    async def _cluster_rows(self, session: Session) -> list[pb.ProcessRow]:
        local_only = not session.variables.get("show_all_fe_connection")
        rows, failures = await self.node.router.processlist(session.user, local_only=local_only)
        session.warnings = [Warning("Warning", errors.UNKNOWN_ERROR, f.message) for f in failures]
        return rows

    async def _processlist(self, session: Session, m: re.Match[str]) -> Result:
        full = bool(m.group(1))
        rows = await self._cluster_rows(session)
        return Result(list(COLUMNS), [format_row(r, session.id, full) for r in rows], warnings=list(session.warnings))

    async def _show_warnings(self, session: Session, m: re.Match[str]) -> Result:
        rows = [(w.level, w.code, w.message) for w in session.warnings]
        if m.group(1).lower() == "errors":
            rows = [r for r in rows if r[0] == "Error"]
        return Result(["Level", "Code", "Message"], rows)

    async def _show_audit(self, session: Session, m: re.Match[str]) -> Result:
        await _need_admin(session)
        limit = int(m.group(1) or 100)
        entries = await self.node.registry_read(self.node.registry.audit_entries(limit))
        cols = ["time", "requester", "received_on", "kind", "target", "owner", "outcome"]
        return Result([c.capitalize() for c in cols], [tuple(e.get(c, "") for c in cols) for e in entries])

    # ------------------------------------------------------------ users

    async def _create_user(self, session: Session, m: re.Match[str]) -> Result:
        await _need_admin(session)
        name, password = _unquote(m.group(2)), unescape(m.group(4) or "")
        auth_string = _password_hash(password) if m.group(3) else None
        await self.node.users.create(name, password, bool(m.group(1)), auth_string=auth_string)
        return OK

    async def _drop_user(self, session: Session, m: re.Match[str]) -> Result:
        await _need_admin(session)
        await self.node.users.drop(_unquote(m.group(2)), bool(m.group(1)))
        return OK

    async def _grant(self, session: Session, m: re.Match[str]) -> Result:
        await _need_admin(session)
        privileges = _privileges(m.group(1))
        _global_scope(m.group(2))
        await self.node.users.grant(_unquote(m.group(3)), privileges)
        return OK

    async def _revoke(self, session: Session, m: re.Match[str]) -> Result:
        await _need_admin(session)
        privileges = _privileges(m.group(1))
        _global_scope(m.group(2))
        await self.node.users.revoke(_unquote(m.group(3)), privileges)
        return OK

    async def _set_password(self, session: Session, m: re.Match[str]) -> Result:
        name = _unquote(m.group(1)) if m.group(1) else session.user
        if name != session.user:
            await _need_admin(session)
        password = m.group(2) if m.group(2) is not None else m.group(3)
        await self.node.users.set_password(name, unescape(password or ""))
        return OK

    async def _show_grants(self, session: Session, m: re.Match[str]) -> Result:
        name = _unquote(m.group(1)) if m.group(1) else session.user
        if name != session.user:
            await _need_admin(session)
        user = await self.node.users.fresh(name)
        if user is None:
            raise SqlError(errors.NO_SUCH_USER, f"There is no such grant defined for user '{name}' on host '%'")
        privileges = ", ".join(sorted(user.privileges)) or "USAGE"
        return Result([f"Grants for {name}@%"], [(f"GRANT {privileges} ON *.*.* TO '{name}'@'%'",)])

    # ------------------------------------------------------------ databases

    async def _use(self, session: Session, m: re.Match[str]) -> Result:
        await session.use(_unquote(m.group(1)))
        return OK

    async def _show_databases(self, session: Session, m: re.Match[str]) -> Result:
        names = ["information_schema", *self.node.backend.databases()]
        return Result(["Database"], [(n,) for n in names])

    async def _show_tables(self, session: Session, m: re.Match[str]) -> Result:
        db = _unquote(m.group(1)) if m.group(1) else session.db
        if db is None:
            raise SqlError(errors.NO_DB, "No database selected")
        if not self.node.backend.has_database(db):
            raise SqlError(errors.BAD_DB, f"Unknown database '{db}'")
        result = await session.backend.execute(
            f"SELECT name FROM `{db}`.sqlite_master WHERE type = 'table' ORDER BY name", db
        )
        return Result([f"Tables_in_{db}"], result.rows)

    async def _create_db(self, session: Session, m: re.Match[str]) -> Result:
        self.node.backend.create_database(check_db_name(_unquote(m.group(2))), bool(m.group(1)))
        return Result(affected_rows=1)

    async def _drop_db(self, session: Session, m: re.Match[str]) -> Result:
        name = _unquote(m.group(2))
        self.node.backend.drop_database(check_db_name(name), bool(m.group(1)))
        if session.db and session.db.lower() == name.lower():
            session.db = None
        return OK

    # ------------------------------------------------------------ variables

    async def _show_variables(self, session: Session, m: re.Match[str]) -> Result:
        rows = [(k, None if v is None else str(v)) for k, v in session.variables.list()]
        if m.group(1):
            pattern = re.compile("^" + re.escape(m.group(1)).replace("%", ".*").replace("_", ".") + "$", re.I)
            rows = [r for r in rows if pattern.match(r[0])]
        return Result(["Variable_name", "Value"], rows)

    async def _set(self, session: Session, m: re.Match[str]) -> Result:
        tree = _parse(m.string)
        if not isinstance(tree, exp.Set):
            raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax near '{m.string[:60]}'")
        try:
            for item in tree.expressions:
                kind = setitem_kind(item)
                if kind == "VARIABLE":
                    left = item.this.left
                    name = left.name
                    if isinstance(left, exp.Parameter):
                        raise SqlError(errors.NOT_SUPPORTED, "User-defined variables are not supported")
                    session.variables.set(name, expression_to_value(item.this.right))
                elif kind in ("NAMES", "CHARACTER SET"):
                    charset = item.name if item.name != "DEFAULT" else "utf8mb4"
                    for var in ("character_set_client", "character_set_connection", "character_set_results"):
                        session.variables.set(var, charset)
                elif kind == "TRANSACTION":
                    continue
                else:
                    raise SqlError(errors.NOT_SUPPORTED, f"Unsupported SET statement: {kind}")
        except MysqlError as e:
            raise SqlError(int(e.code), e.msg) from e
        return OK

    # ------------------------------------------------------------ general SQL

    async def _general(self, session: Session, text: str) -> Result:
        if len(text) > CACHED_STATEMENT:
            return await session.backend.execute(text, session.db)  # bulk statements: parsed off the loop
        tree = _parse(text)
        if _references_processlist(tree):
            return await self._processlist_table(session, tree)
        if _is_constant_select(tree):
            return self._constant_select(session, tree)
        return await session.backend.execute(text, session.db)

    def _session_value(self, session: Session, node: exp.Expression) -> Any:
        if isinstance(node, exp.SessionParameter):
            try:
                return session.variables.get(node.name)
            except MysqlError as e:
                raise SqlError(errors.UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{node.name}'") from e
        name = node.sql_name().upper() if isinstance(node, exp.Func) else ""
        if isinstance(node, exp.Anonymous):
            name = node.name.upper()
        if name in ("DATABASE", "SCHEMA", "CURRENTSCHEMA", "CURRENT_SCHEMA"):
            return session.db
        if name == "CONNECTION_ID":
            return session.id
        if name in ("USER", "CURRENT_USER", "CURRENTUSER", "SESSION_USER", "SYSTEM_USER"):
            return f"{session.user}@{session.host.rsplit(':', 1)[0]}"
        if name in ("VERSION",):
            return VERSION
        raise KeyError(name)

    def _constant_select(self, session: Session, tree: exp.Expression) -> Result:
        assert isinstance(tree, exp.Select)
        columns = [p.alias_or_name if p.alias else p.sql(dialect="mysql") for p in tree.expressions]

        def substitute(node: exp.Expression) -> exp.Expression:
            try:
                value = self._session_value(session, node)
            except KeyError:
                return node
            if value is None:
                return exp.null()
            if isinstance(value, bool):
                value = int(value)
            return exp.Literal.number(value) if isinstance(value, int) else exp.Literal.string(str(value))

        query = tree.copy().transform(substitute)
        if query.find(exp.Anonymous):
            name = query.find(exp.Anonymous).name  # type: ignore[union-attr]
            raise SqlError(errors.NO_SUCH_FUNCTION, f"FUNCTION {name} does not exist")
        try:
            cursor = _CONSTANT_DB.execute(query.sql(dialect="sqlite"))
        except sqlite3.Error as e:
            raise SqlError(errors.UNKNOWN_ERROR, str(e)) from e
        return Result(columns, cursor.fetchall())

    async def _processlist_table(self, session: Session, tree: exp.Expression) -> Result:
        rows = [format_row(r, session.id, True) for r in await self._cluster_rows(session)]
        query = tree.copy()
        for table in query.find_all(exp.Table):
            if table.db.lower() == "information_schema":
                table.set("db", None)
                table.set("this", exp.to_identifier("processlist"))
        db = sqlite3.connect(":memory:")
        try:
            db.execute(f"CREATE TABLE processlist ({', '.join(SCHEMA_COLUMNS)})")
            db.executemany(f"INSERT INTO processlist VALUES ({', '.join('?' * len(SCHEMA_COLUMNS))})", rows)
            cursor = db.execute(query.sql(dialect="sqlite"))
            return Result([d[0] for d in cursor.description], cursor.fetchall(), warnings=list(session.warnings))
        except sqlite3.Error as e:
            raise SqlError(errors.UNKNOWN_ERROR, str(e)) from e
        finally:
            db.close()
