"""MySQL text to SQLite text for the embedded backend (sqlglot): databases
qualified as the session's ATTACHed schemas, MySQL's types and functions,
CREATE TABLE's keys as CREATE INDEX, EXPLAIN in MySQL's columns. Run in the
backend's worker threads only (parsing a long statement takes seconds)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from frontend.sqlite_types import declared_type
from frontend.sqlparse import ByteBoundedCache, parse

CACHED_STATEMENT = 4096  # longer statements are not cached


class Translation(NamedTuple):
    sql: str  # SQLite's text
    databases: frozenset[str]  # the databases it names (attached before it runs)
    count_sql: str | None = None  # SELECT SQL_CALC_FOUND_ROWS: its row count without the LIMIT, for FOUND_ROWS()
    explain: bool = False  # EXPLAIN <statement>: SQLite's plan, answered in MySQL's EXPLAIN columns
    then: tuple[str, ...] = ()  # run right after it: CREATE TABLE's inline KEY/INDEX as CREATE INDEX
    ddl: bool = False  # changes the schema (CREATE, DROP, ALTER, ANALYZE): see sqlite_authorizer.Grants
    writes: bool = False  # may change rows or the schema (not a SELECT, SHOW or EXPLAIN)
    # A write as it runs inside a transaction: LIVENESS_CHECK() in every WHERE, so a KILL
    # stops it with an error SQLite rolls back to the statement (its interrupt would end
    # the whole transaction). None when it has no WHERE to carry it (INSERT ... VALUES).
    guarded: str | None = None
    target: tuple[str, str] | None = None  # INSERT/REPLACE: (database, table), for LAST_INSERT_ID
    # UPDATE: (database, table, the columns it sets), to count the rows it changes (MySQL's affected rows)
    changes: tuple[str, str, tuple[str, ...]] | None = None
    # A multi-row INSERT's row count for MySQL's info string ("Records: 3  Duplicates: 0"): the
    # number of rows given (-1: INSERT ... SELECT, as many as it inserts); None: no info string
    records: int | None = None
    ignore: bool = False  # INSERT IGNORE: the rows given but not inserted are the info's Duplicates
    noop: bool = False  # accepted and done nothing (LOCK TABLES / UNLOCK TABLES: one SQLite writer at a time anyway)


# Bounded by the statements' text (each entry is at most CACHED_STATEMENT bytes in and about as much out).
_TRANSLATED: ByteBoundedCache[tuple[str, str | None], Translation] = ByteBoundedCache(
    1024 * 1024, CACHED_STATEMENT, lambda key: 2 * len(key[0])
)


def translate(sql: str, database: str | None) -> Translation:
    """MySQL text -> (SQLite text, databases it names, whether it returns rows); cached."""
    return _TRANSLATED.get((sql, database), lambda: translate_tree(parse(sql), database))


_NOOPS = re.compile(r"^(?:LOCK\s+TABLES?|UNLOCK\s+TABLES?)\b", re.IGNORECASE)


def translate_tree(tree: exp.Expression, database: str | None) -> Translation:
    """As ``translate``, from a tree the caller gives up (it is changed)."""
    if isinstance(tree, exp.Command) and _NOOPS.match(f"{tree.name} {tree.expression.name if tree.expression else ''}"):
        return Translation("", frozenset(), noop=True)
    dbs: set[str] = set()
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        if not table.name or table.name.lower() in ctes:
            continue
        if not table.db and table.name.lower() == "dual" and isinstance(table.parent, exp.From):
            table.parent.pop()  # SELECT ... FROM DUAL: no table at all
            continue
        db = table.args.get("db")
        if db is None:
            if database is None:
                raise SqlError(errors.NO_DB, "No database selected")
            table.set("db", exp.to_identifier(database.lower()))
        else:
            db.set("this", db.name.lower())
        table.set("catalog", None)  # internal.db.t: the catalog is the FE's only one
        dbs.add(table.db.lower())
    if isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() == "VIEW":
        _view_names(tree)
    if isinstance(tree, exp.Create | exp.Alter):
        _column_notes(tree)
    primary_key = frozenset(c.name.lower() for key in tree.find_all(exp.PrimaryKey) for c in key.expressions if c.name)
    for column in tree.find_all(exp.ColumnDef):
        declared_type(column, primary_key)
    index = _index_statement(tree)
    if index is not None:
        return Translation(index, frozenset(dbs), ddl=True, writes=True)
    then = _inline_indexes(tree)
    if not isinstance(tree, exp.Create | exp.Alter):  # a column DEFAULT keeps CURRENT_TIMESTAMP (constant for SQLite)
        tree = tree.transform(mysql_function)
    tree = _charset_literals(tree)
    _binary_literals(tree)
    _exact_literals(tree)
    count_sql = None
    modifiers = (tree.args.get("operation_modifiers") or []) if isinstance(tree, exp.Select) else []
    if any(m.name.upper() == "SQL_CALC_FOUND_ROWS" for m in modifiers):
        tree.set("operation_modifiers", [m for m in modifiers if m.name.upper() != "SQL_CALC_FOUND_ROWS"] or None)
        unlimited = tree.copy()
        unlimited.set("limit", None)
        unlimited.set("offset", None)
        count_sql = f"SELECT COUNT(*) FROM ({unlimited.sql(dialect='sqlite')})"
    if isinstance(tree, exp.Describe) and isinstance(tree.this, exp.Query | exp.Insert | exp.Update | exp.Delete):
        return Translation(f"EXPLAIN QUERY PLAN {tree.this.sql(dialect='sqlite')}", frozenset(dbs), explain=True)
    ddl = isinstance(tree, exp.Create | exp.Drop | exp.Alter | exp.Analyze | exp.TruncateTable)
    writes = ddl or not isinstance(tree, exp.Query | exp.Describe | exp.Show)
    target = None
    changes = _changes(tree)
    records = None
    if isinstance(tree, exp.Insert):
        values = tree.expression
        if isinstance(values, exp.Values) and len(values.expressions) > 1:
            records = len(values.expressions)
        elif isinstance(values, exp.Query):
            records = -1
        source = tree.expression
        if isinstance(source, exp.Select) and source.args.get("where") is None:
            # SQLite copies ``INSERT INTO a SELECT * FROM b`` page by page (its
            # transfer optimization) without telling the authorizer it reads b;
            # any WHERE turns that off, so the read of b is checked.
            source.set("where", exp.Where(this=exp.true()))
        into = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if isinstance(into, exp.Table) and into.db:
            target = (into.db.lower(), into.name)
    guarded = _guarded(tree) if writes and not ddl else None
    return Translation(
        tree.sql(dialect="sqlite"),
        frozenset(dbs),
        count_sql,
        then=then,
        ddl=ddl,
        writes=writes,
        guarded=guarded,
        target=target,
        changes=changes,
        records=records,
        ignore=bool(tree.args.get("ignore")) if isinstance(tree, exp.Insert) else False,
    )


def _changes(tree: exp.Expression) -> tuple[str, str, tuple[str, ...]] | None:
    """An UPDATE's target and the columns it sets: SQLite counts the rows an
    UPDATE matched, MySQL's affected rows are those whose value changed."""
    if not isinstance(tree, exp.Update) or not isinstance(tree.this, exp.Table) or not tree.this.db:
        return None
    columns = []
    for assignment in tree.expressions:
        if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
            return None
        columns.append(assignment.this.name)
    return (tree.this.db.lower(), tree.this.name, tuple(columns)) if columns else None


def _view_names(tree: exp.Create) -> None:
    """A view's tables of its own database unqualified: SQLite resolves a view's
    names in the view's database and refuses (at every later read of the
    catalogue) a view that names a database."""
    view = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    query = tree.expression
    if not isinstance(view, exp.Table) or query is None:
        return
    for table in query.find_all(exp.Table):
        if table.db and table.db.lower() == view.db.lower():
            table.set("db", None)


# What MySQL's DDL says that SQLite has no place for (a column's CHARACTER SET,
# COLLATE and COMMENT, the table's COMMENT) rides in the table's own stored
# CREATE text as a comment SQLite keeps verbatim, so it follows the table
# through ALTER ... ADD COLUMN, RENAME and DROP; read back by ``notes``.
NOTE_COLUMN = "fe-column:"
NOTE_TABLE = "fe-table:"
_NOTE = re.compile(r"/\*\s*(fe-column:|fe-table:)(\{[^*]*(?:\*(?!/)[^*]*)*\})\s*\*/")


def _note(prefix: str, data: dict[str, str]) -> str:
    return prefix + json.dumps(data, ensure_ascii=True).replace("*", "\\u002a")  # never closes the comment


def notes(create_sql: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """A stored CREATE TABLE text's notes: {column (lower case): {charset, collation, comment}}, the table's."""
    columns: dict[str, dict[str, str]] = {}
    table: dict[str, str] = {}
    for m in _NOTE.finditer(create_sql):
        try:
            data = json.loads(m.group(2))
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if m.group(1) == NOTE_TABLE:
            table = data
        elif isinstance(data.get("name"), str):
            columns[data["name"].lower()] = data
    return columns, table


def _column_notes(tree: exp.Create | exp.Alter) -> None:
    """CHARACTER SET / COLLATE / COMMENT out of the column definitions (SQLite
    has none of them) and into notes; a FOREIGN KEY's table unqualified
    (SQLite's references name a table of the same database)."""
    defs = list(tree.find_all(exp.ColumnDef))
    for column in defs:
        data: dict[str, str] = {}
        for constraint in list(column.args.get("constraints") or ()):
            kind = constraint.args.get("kind")
            if isinstance(kind, exp.CharacterSetColumnConstraint):
                data["charset"] = kind.name.lower()
            elif isinstance(kind, exp.CollateColumnConstraint):
                value = kind.this
                data["collation"] = (value.name if isinstance(value, exp.Expression) else str(value)).lower()
            elif isinstance(kind, exp.CommentColumnConstraint):
                data["comment"] = kind.name
            else:
                continue
            constraint.pop()
        if data:
            column.add_comments([_note(NOTE_COLUMN, {"name": column.name, **data})])
    properties = tree.args.get("properties")
    comment = next(
        (p.name for p in (properties.expressions if properties else ()) if isinstance(p, exp.SchemaCommentProperty)),
        None,
    )
    if comment is not None and defs:
        defs[-1].add_comments([_note(NOTE_TABLE, {"comment": comment})])
    own = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    for reference in tree.find_all(exp.Reference):
        target = reference.this.this if isinstance(reference.this, exp.Schema) else reference.this
        if isinstance(target, exp.Table) and target.db:
            if isinstance(own, exp.Table) and own.db and target.db.lower() != own.db.lower():
                raise SqlError(
                    1215, "Cannot add foreign key constraint (the embedded backend keeps each database apart)"
                )
            target.set("db", None)


LIVENESS_CHECK = "fe_go"  # the session connection's function: 1, or an error once the statement is cancelled


def _guarded(tree: exp.Expression) -> str | None:
    """``tree``'s text with the liveness check ANDed into the WHERE of the
    statement and of every SELECT in it (subqueries, CTEs, INSERT ... SELECT):
    called once per row a loop visits, so a KILL stops even a long subquery."""
    copy = tree.copy()
    places = [n for n in copy.find_all(exp.Select, exp.Update, exp.Delete)]
    if not places:
        return None
    for node in places:
        check: exp.Expression = exp.Anonymous(this=LIVENESS_CHECK)
        where = node.args.get("where")
        node.set("where", exp.Where(this=exp.and_(exp.Paren(this=where.this), check) if where else check))
    return copy.sql(dialect="sqlite")


def _text_of_bytes(data: bytes) -> exp.Expression:
    """A text value SQLite cannot take as a literal (it contains NUL): its bytes, as text."""
    return exp.Cast(this=exp.HexString(this=data.hex()), to=exp.DataType.build("TEXT"))


def _charset_literal(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Introducer):  # _binary'..', _utf8mb4'..', _latin1 X'..'
        charset = node.name.lower()
        value = node.expression
        if charset == "_binary":
            if isinstance(value, exp.Literal) and value.is_string:
                return exp.HexString(this=value.this.encode("utf-8", "surrogateescape").hex())
            return value
        if isinstance(value, exp.HexString):
            return exp.Cast(this=value, to=exp.DataType.build("TEXT"))
        return value
    if isinstance(node, exp.National):  # N'..': a string (the national charset is utf8 here)
        return exp.Literal.string(node.this)
    if isinstance(node, exp.Literal) and node.is_string and "\x00" in node.this:
        # MySQL's \0 escape: SQLite refuses a NUL in statement text, so the value goes as bytes cast to text
        return _text_of_bytes(node.this.encode("utf-8", "surrogateescape"))
    return node


def _charset_literals(tree: exp.Expression) -> exp.Expression:
    """MySQL's literal forms SQLite lacks: charset introducers, N'..', NUL inside a string."""
    if tree.find(exp.Introducer, exp.National) is None and not any(
        "\x00" in lit.this for lit in tree.find_all(exp.Literal) if lit.is_string
    ):
        return tree
    return tree.transform(_charset_literal)


def sqlite_literals(tree: exp.Expression) -> exp.Expression:
    """``tree`` (changed) with MySQL's literal forms as SQLite reads them (a constant SELECT's own path)."""
    tree = _charset_literals(tree)
    _binary_literals(tree)
    return tree


def _binary_literals(tree: exp.Expression) -> None:
    """String literals that are not UTF-8 (a client's binary data: the wire
    layer keeps those bytes as surrogates) become blobs, X'...', byte for byte."""
    for literal in list(tree.find_all(exp.Literal)):
        text = literal.this
        if literal.is_string and not text.isascii() and any("\udc80" <= c <= "\udcff" for c in text):
            literal.replace(exp.HexString(this=text.encode("utf-8", "surrogateescape").hex()))


_INT64_MAX = (1 << 63) - 1
# Where a number is a value to store or compare with, not to compute with.
_VALUE_PLACES = (exp.Tuple, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.In, exp.Between)


def _needs_text(number: str) -> bool:
    """Whether SQLite would read this numeric literal inexactly (as a double)."""
    mantissa, _, exponent = number.lower().partition("e")
    if exponent:
        return False  # written as a double: it is one
    if "." not in mantissa:
        return abs(int(mantissa)) > _INT64_MAX
    return len(mantissa.replace(".", "").lstrip("0")) > 15


def _exact_literals(tree: exp.Expression) -> None:
    """Numbers beyond a double or an int64, where they are values (INSERT,
    UPDATE ... SET, comparisons), become text, so an exact column (DECIMAL,
    BIGINT UNSIGNED) stores and finds them digit for digit."""
    for literal in list(tree.find_all(exp.Literal)):
        if literal.is_string or not _needs_text(literal.this):
            continue
        node, text = literal, literal.this
        if isinstance(node.parent, exp.Neg):
            node, text = node.parent, "-" + text
        if isinstance(node.parent, _VALUE_PLACES):
            node.replace(exp.Literal.string(text))


def _inline_indexes(tree: exp.Expression) -> tuple[str, ...]:
    """CREATE TABLE's keys other than the PRIMARY KEY (``[UNIQUE] KEY name
    (cols)``, which SQLite lacks, and a column's UNIQUE) as the CREATE [UNIQUE]
    INDEX statements to run once the table exists, named as MySQL names them
    (FULLTEXT and SPATIAL are plain indexes here)."""
    schema = tree.this if isinstance(tree, exp.Create) else None
    if not isinstance(schema, exp.Schema) or not isinstance(schema.this, exp.Table):
        return ()
    table = schema.this
    exists = "IF NOT EXISTS " if tree.args.get("exists") else ""
    keys: list[tuple[str, str, list[exp.Expression]]] = []  # (UNIQUE or "", name or "", columns)
    for item in list(schema.expressions):
        if isinstance(item, exp.ColumnDef):
            for constraint in list(item.args.get("constraints") or ()):
                if isinstance(constraint.args.get("kind"), exp.UniqueColumnConstraint):
                    keys.append(("UNIQUE ", "", [exp.column(item.name)]))
                    constraint.pop()
            continue
        if isinstance(item, exp.UniqueColumnConstraint) and isinstance(item.this, exp.Schema):
            keys.append(("UNIQUE ", item.this.name, item.this.expressions))
        elif isinstance(item, exp.IndexColumnConstraint):
            keys.append(("", item.name, item.expressions))
        else:
            continue
        item.pop()
    statements, used = [], set()
    for unique, name, columns in keys:
        if not name:  # MySQL: the first column's name, then <name>_2, _3, ...
            base, n = columns[0].name, 2
            name = base
            while name.lower() in used:
                name, n = f"{base}_{n}", n + 1
        used.add(name.lower())
        statements.append(
            f"CREATE {unique}INDEX {exists}{_quoted(table.db)}.{_quoted(index_name(table.name, name))}"
            f" ON {_quoted(table.name)} ({', '.join(c.sql(dialect='sqlite') for c in columns)})"
        )
    return tuple(statements)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


INDEX_NAME_SEPARATOR = "$"  # SQLite names indexes per database, MySQL per table: "<table>$<index>"


def index_name(table: str, index: str) -> str:
    return f"{table}{INDEX_NAME_SEPARATOR}{index}"


def _index_statement(tree: exp.Expression) -> str | None:
    """CREATE/DROP INDEX as SQLite spells them: the schema goes on the index
    name (``CREATE INDEX d.i ON t (x)``, ``DROP INDEX d.i``), not the table."""
    kind = (tree.args.get("kind") or "").upper()
    if kind != "INDEX":
        return None
    if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Index):
        index = tree.this
        table = index.args.get("table")
        params = index.args.get("params")
        if not isinstance(table, exp.Table) or params is None:
            return None
        columns = ", ".join(c.sql(dialect="sqlite") for c in params.args.get("columns") or ())
        unique = "UNIQUE " if tree.args.get("unique") else ""
        exists = "IF NOT EXISTS " if tree.args.get("exists") else ""
        return (
            f"CREATE {unique}INDEX {exists}{_quoted(table.db)}.{_quoted(index_name(table.name, index.name))}"
            f" ON {_quoted(table.name)} ({columns})"
        )
    if isinstance(tree, exp.Drop):
        on = tree.args.get("cluster")
        table = on.this if on is not None else None
        names = [t.name for t in tree.args.get("tables") or ()]
        if not isinstance(table, exp.Table) or len(names) != 1:
            return None
        exists = "IF EXISTS " if tree.args.get("exists") else ""
        return f"DROP INDEX {exists}{_quoted(table.db)}.{_quoted(index_name(table.name, names[0]))}"
    return None


# MySQL functions SQLite lacks, as SQLite's own or the session connection's (``FUNCTIONS``).
_RENAMED = {"LAST_INSERT_ID": "last_insert_rowid", "ROW_COUNT": "changes", "SYSDATE": "now"}


_UNITS = {"WEEK": ("DAY", 7), "QUARTER": ("MONTH", 3)}


def _date_arithmetic(node: exp.DateAdd | exp.DateSub) -> exp.Expression:
    """DATE_ADD/DATE_SUB as MySQL computes them: a date stays a date, a
    datetime keeps its time (sqlglot's SQLite DATE(x, '1 DAY') drops it)."""
    unit = (node.text("unit") or "DAY").upper()
    unit, factor = _UNITS.get(unit, (unit, 1))
    amount: exp.Expression = node.expression
    if factor != 1:
        amount = exp.Mul(this=exp.Paren(this=amount), expression=exp.Literal.number(factor))
    if isinstance(node, exp.DateSub):
        amount = exp.Neg(this=exp.Paren(this=amount))
    modifier = exp.DPipe(
        this=exp.Cast(this=amount, to=exp.DataType.build("TEXT")), expression=exp.Literal.string(f" {unit}")
    )
    value = node.this
    short = exp.LTE(this=exp.Length(this=value.copy()), expression=exp.Literal.number(10))
    as_date = exp.Anonymous(this="date", expressions=[value.copy(), modifier.copy()])
    as_datetime = exp.Anonymous(this="datetime", expressions=[value.copy(), modifier])
    return exp.Case(ifs=[exp.If(this=short, true=as_date)], default=as_datetime)


def mysql_function(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.DateAdd | exp.DateSub):
        return _date_arithmetic(node)
    if isinstance(node, exp.Length) and node.args.get("binary"):  # MySQL's LENGTH counts bytes
        return exp.Length(this=exp.Cast(this=node.this, to=exp.DataType.build("BLOB")))
    if isinstance(node, exp.OnConflict) and node.args.get("duplicate"):
        # ON DUPLICATE KEY UPDATE -> SQLite's UPSERT; VALUES(col) -> excluded.col
        def values(n: exp.Expression) -> exp.Expression:
            if isinstance(n, exp.Anonymous) and n.name.upper() == "VALUES" and len(n.expressions) == 1:
                return exp.column(n.expressions[0].name, table="excluded")
            return n

        return exp.OnConflict(
            duplicate=False,
            expressions=[e.transform(values) for e in node.expressions],
            action=exp.var("DO UPDATE"),
        )
    if isinstance(node, exp.CurrentTimestamp | exp.CurrentDatetime):
        return exp.Anonymous(this="now")  # local time, as MySQL's NOW(); SQLite's CURRENT_TIMESTAMP is UTC
    if isinstance(node, exp.CurrentDate):
        return exp.Anonymous(this="curdate")
    if isinstance(node, exp.CurrentTime):
        return exp.Anonymous(this="curtime")
    if isinstance(node, exp.Anonymous) and node.name.upper() in _RENAMED and not node.expressions:
        return exp.Anonymous(this=_RENAMED[node.name.upper()])
    return node


EXPLAIN_COLUMNS = ("id", "select_type", "table", "type", "possible_keys", "key", "key_len", "ref", "rows", "Extra")
_PLAN_STEP = re.compile(
    r"^(SCAN|SEARCH)\s+(?:TABLE\s+)?(\S+)(?:\s+AS\s+\S+)?"
    r"(?:\s+USING\s+(?:(COVERING\s+)?INDEX\s+(\S+)|(INTEGER PRIMARY KEY)))?"
)


def explain_row(detail: str) -> tuple[Any, ...]:
    """One step of SQLite's query plan in MySQL's EXPLAIN columns; SQLite's own
    words stay in Extra (a step that is not a table access has only those)."""
    m = _PLAN_STEP.match(detail)
    if m is None:
        return (1, "SIMPLE", None, None, None, None, None, None, None, detail)
    verb, table, covering, index, rowid = m.groups()
    key = "PRIMARY" if rowid else ((index and index.partition(INDEX_NAME_SEPARATOR)[2]) or index)
    if verb == "SCAN":
        kind = "ALL" if key is None else "index"
    else:
        kind = "range" if re.search(r"[<>]", detail) else ("const" if rowid else "ref")
    extra = "Using index" if covering else None
    return (1, "SIMPLE", table.split(".")[-1], kind, key, key, None, None, None, extra or detail)


def _now() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _curdate() -> str:
    return datetime.date.today().isoformat()


def _curtime() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


FUNCTIONS: dict[str, Callable[[], str]] = {"now": _now, "curdate": _curdate, "curtime": _curtime}
