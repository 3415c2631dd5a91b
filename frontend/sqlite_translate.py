"""MySQL text to SQLite text for the embedded backend (sqlglot): databases
qualified as the session's ATTACHed schemas, MySQL's types and functions,
CREATE TABLE's keys as CREATE INDEX, EXPLAIN in MySQL's columns. Run in the
backend's worker threads only (parsing a long statement takes seconds)."""

from __future__ import annotations

import datetime
import hashlib
import heapq
import json
import re
import sqlite3
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from frontend.result import SqlWarning
from frontend.sqlite_types import declared_type
from frontend.sqlparse import ByteBoundedCache, parse
from frontend.sqltext import source_labels
from frontend.wire.results import format_float

CACHED_STATEMENT = 4096  # longer statements are not cached
# Functions the translation calls (registered by ``register_functions`` and the session connection)
GROUP_CONCAT = "fe_group_concat"
DIVISOR = "fe_divisor"
CAST_CHECK = "fe_cast_check"
LAST_INSERT_ID = "fe_last_insert_id"  # the session connection's (SqliteSession)
ROW_COUNT = "fe_row_count"  # the session connection's (SqliteSession)


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
    # A table of a server's own schema (mysql.user, ...) that it names: answered as MySQL answers
    # a user without access to it (1142), not as an unknown database
    system_table: tuple[str, str] | None = None
    # SELECT ... FOR UPDATE / LOCK IN SHARE MODE / FOR SHARE: inside a transaction it takes
    # the write lock first and reads the latest committed rows (SqliteSession)
    locking: bool = False


# Bounded by the statements' text (each entry is at most CACHED_STATEMENT bytes in and about as much out).
_TRANSLATED: ByteBoundedCache[tuple[str, str | None], Translation] = ByteBoundedCache(
    1024 * 1024, CACHED_STATEMENT, lambda key: 2 * len(key[0])
)


def translate(sql: str, database: str | None) -> Translation:
    """MySQL text -> (SQLite text, databases it names, whether it returns rows); cached."""
    return _TRANSLATED.get((sql, database), lambda: translate_tree(parse(sql), database, sql))


def label_columns(tree: exp.Expr, source: str | None) -> None:
    """Each unaliased item of the outermost SELECT (the first of a UNION)
    aliased with MySQL's label for it: a column as the client named it, any
    other expression as written in ``source`` (``sqltext.source_labels``), not
    as sqlglot prints it again. An expression whose label is also a name the
    statement uses keeps SQLite's label (an alias could capture that name in
    ORDER BY or GROUP BY)."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select) or source is None:
        return
    items = select.expressions
    if not items or all(isinstance(i, exp.Alias | exp.Star) for i in items):
        return
    labels = source_labels(source)
    if labels is None or len(labels) != len(items):
        return
    names: set[str] | None = None
    for item, label in zip(items, labels, strict=True):
        if isinstance(item, exp.Alias | exp.Star) or (isinstance(item, exp.Column) and item.is_star):
            continue
        if isinstance(item, exp.Column):
            label = item.name
        else:
            if names is None:
                names = {i.name.lower() for i in tree.find_all(exp.Identifier)}
            if label.lower() in names:
                continue
        item.replace(exp.alias_(item.copy(), exp.to_identifier(label, quoted=True)))


# Schemas a MySQL server has and the embedded backend does not: tools probe them.
SYSTEM_SCHEMAS = frozenset({"mysql", "performance_schema", "sys"})
_NOOPS = re.compile(r"^(?:LOCK\s+TABLES?|UNLOCK\s+TABLES?)\b", re.IGNORECASE)


def translate_tree(tree: exp.Expr, database: str | None, source: str | None = None) -> Translation:
    """As ``translate``, from a tree the caller gives up (it is changed);
    ``source``: the statement's text, for the column labels."""
    label_columns(tree, source)
    if isinstance(tree, exp.Command) and _NOOPS.match(f"{tree.name} {tree.expression.name if tree.expression else ''}"):
        return Translation("", frozenset(), noop=True)
    dbs: set[str] = set()
    system: tuple[str, str] | None = None
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
        if system is None and table.db.lower() in SYSTEM_SCHEMAS:
            system = (table.db.lower(), table.name)
    if isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() == "VIEW":
        _view_names(tree)
    if isinstance(tree, exp.Create | exp.Alter):
        _column_notes(tree)
    primary_key = frozenset(c.name.lower() for key in tree.find_all(exp.PrimaryKey) for c in key.expressions if c.name)
    for column in tree.find_all(exp.ColumnDef):
        declared_type(column, primary_key)
    if system is not None:
        return Translation("", frozenset(), system_table=system, writes=not isinstance(tree, exp.Query))
    index = _index_statement(tree)
    if index is not None:
        return Translation(index, frozenset(dbs), ddl=True, writes=True)
    then = _inline_indexes(tree)
    for current in list(tree.find_all(exp.CurrentSchema)):  # DATABASE(), SCHEMA(): SQLite's would say 'main'
        current.replace(exp.Literal.string(database) if database else exp.null())
    if not isinstance(tree, exp.Create | exp.Alter):  # a column DEFAULT keeps CURRENT_TIMESTAMP (constant for SQLite)
        strict = isinstance(tree, exp.Insert | exp.Update)  # MySQL's strict mode: these fail where a SELECT warns
        tree = tree.transform(lambda node: mysql_function(node, strict))
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
    locking = isinstance(tree, exp.Select) and bool(tree.args.get("locks"))
    if locking:
        tree.set("locks", None)  # SQLite has no row locks: the session takes its write lock instead
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
        locking=locking,
    )


def _changes(tree: exp.Expr) -> tuple[str, str, tuple[str, ...]] | None:
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
                data["collation"] = (value.name if isinstance(value, exp.Expr) else str(value)).lower()
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


def _guarded(tree: exp.Expr) -> str | None:
    """``tree``'s text with the liveness check ANDed into the WHERE of the
    statement and of every SELECT in it (subqueries, CTEs, INSERT ... SELECT):
    called once per row a loop visits, so a KILL stops even a long subquery."""
    copy = tree.copy()
    places = [n for n in copy.find_all(exp.Select, exp.Update, exp.Delete)]
    if not places:
        return None
    for node in places:
        check: exp.Expr = exp.Anonymous(this=LIVENESS_CHECK)
        where = node.args.get("where")
        node.set("where", exp.Where(this=exp.and_(exp.Paren(this=where.this), check) if where else check))
    return copy.sql(dialect="sqlite")


def _text_of_bytes(data: bytes) -> exp.Expr:
    """A text value SQLite cannot take as a literal (it contains NUL): its bytes, as text."""
    return exp.Cast(this=exp.HexString(this=data.hex()), to=exp.DataType.build("TEXT"))


def _charset_literal(node: exp.Expr) -> exp.Expr:
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


def _charset_literals(tree: exp.Expr) -> exp.Expr:
    """MySQL's literal forms SQLite lacks: charset introducers, N'..', NUL inside a string."""
    if tree.find(exp.Introducer, exp.National) is None and not any(
        "\x00" in lit.this for lit in tree.find_all(exp.Literal) if lit.is_string
    ):
        return tree
    return tree.transform(_charset_literal)


def sqlite_literals(tree: exp.Expr) -> exp.Expr:
    """``tree`` (changed) with MySQL's literal forms as SQLite reads them (a constant SELECT's own path)."""
    tree = _charset_literals(tree)
    _binary_literals(tree)
    return tree


def _binary_literals(tree: exp.Expr) -> None:
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


def _exact_literals(tree: exp.Expr) -> None:
    """Numbers beyond a double or an int64, where they are values (INSERT,
    UPDATE ... SET, comparisons), become text, so an exact column (DECIMAL,
    BIGINT UNSIGNED) stores and finds them digit for digit."""
    for literal in list(tree.find_all(exp.Literal)):
        if literal.is_string or not _needs_text(literal.this):
            continue
        node: exp.Expr = literal
        text = literal.this
        if isinstance(node.parent, exp.Neg):
            node, text = node.parent, "-" + text
        if isinstance(node.parent, _VALUE_PLACES):
            node.replace(exp.Literal.string(text))


def _inline_indexes(tree: exp.Expr) -> tuple[str, ...]:
    """CREATE TABLE's keys other than the PRIMARY KEY (``[UNIQUE] KEY name
    (cols)``, which SQLite lacks, and a column's UNIQUE) as the CREATE [UNIQUE]
    INDEX statements to run once the table exists, named as MySQL names them
    (FULLTEXT and SPATIAL are plain indexes here)."""
    schema = tree.this if isinstance(tree, exp.Create) else None
    if not isinstance(schema, exp.Schema) or not isinstance(schema.this, exp.Table):
        return ()
    table = schema.this
    exists = "IF NOT EXISTS " if tree.args.get("exists") else ""
    keys: list[tuple[str, str, list[exp.Expr]]] = []  # (UNIQUE or "", name or "", columns)
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


def _index_statement(tree: exp.Expr) -> str | None:
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
_RENAMED = {"SYSDATE": "now"}
_SESSION_COUNTERS = {"LAST_INSERT_ID": LAST_INSERT_ID, "ROW_COUNT": ROW_COUNT}  # the session connection's own


_UNITS = {"WEEK": ("DAY", 7), "QUARTER": ("MONTH", 3)}


def _date_arithmetic(node: exp.DateAdd | exp.DateSub) -> exp.Expr:
    """DATE_ADD/DATE_SUB as MySQL computes them: a date stays a date, a
    datetime keeps its time (sqlglot's SQLite DATE(x, '1 DAY') drops it)."""
    unit = (node.text("unit") or "DAY").upper()
    unit, factor = _UNITS.get(unit, (unit, 1))
    amount: exp.Expr = node.expression
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


def _group_concat(node: exp.GroupConcat) -> exp.Expr:
    """MySQL's GROUP_CONCAT([DISTINCT] v1[, v2 ...] [ORDER BY k [DESC], ...] [SEPARATOR s]) as the
    connection's aggregate (``sqlite_functions.GroupConcat``): SQLite 3.40 has no ORDER BY in an
    aggregate, no DISTINCT with a separator, and does not stop at group_concat_max_len."""
    inner = node.this
    keys: list[exp.Ordered] = []
    if isinstance(inner, exp.Order):
        keys = [k if isinstance(k, exp.Ordered) else exp.Ordered(this=k) for k in inner.expressions]
        inner = inner.this
    distinct = isinstance(inner, exp.Distinct)
    if distinct:
        parts = list(inner.expressions)
        inner = parts[0] if len(parts) == 1 else exp.Concat(expressions=parts)
    values = list(inner.expressions) if isinstance(inner, exp.Concat) else [inner]
    separator = node.args.get("separator")
    directions = "".join("D" if k.args.get("desc") else "A" for k in keys)
    return exp.Anonymous(
        this=GROUP_CONCAT,
        expressions=[
            separator if separator is not None else exp.Literal.string(","),
            exp.Literal.number(int(distinct)),
            exp.Literal.string(directions),
            exp.Literal.number(len(values)),
            *values,
            *(k.this for k in keys),
        ],
    )


def _nonzero_number(node: exp.Expr) -> bool:
    if isinstance(node, exp.Neg):
        node = node.this
    if not (isinstance(node, exp.Literal) and not node.is_string):
        return False
    try:
        return float(node.this) != 0
    except ValueError:
        return False


def mysql_function(node: exp.Expr, strict: bool = False) -> exp.Expr:
    """One node as SQLite computes MySQL's meaning of it; ``strict``: inside an
    INSERT or UPDATE, where MySQL's strict mode turns a division by 0 or a
    truncated CAST into an error."""
    if isinstance(node, exp.GroupConcat):
        return _group_concat(node)
    if isinstance(node, exp.Div | exp.Mod | exp.IntDiv) and not _nonzero_number(node.expression):
        # MySQL: NULL and warning 1365 (an error when strict) for a 0 divisor
        checked = exp.Anonymous(
            this=DIVISOR, expressions=[node.expression, exp.Literal.number(int(strict)), node.this.copy()]
        )
        node.set("expression", checked)
        return node
    if (
        isinstance(node, exp.Cast)
        and node.to.is_type(*exp.DataType.INTEGER_TYPES)
        and not (isinstance(node.this, exp.Literal) and not node.this.is_string)
    ):
        # MySQL warns 1292 (an error when strict) for text that is not an integer
        checked = exp.Anonymous(this=CAST_CHECK, expressions=[node.this, exp.Literal.number(int(strict))])
        node.set("this", checked)
        return node
    if isinstance(node, exp.Anonymous) and node.name.upper() in _SESSION_COUNTERS and len(node.expressions) <= 1:
        return exp.Anonymous(this=_SESSION_COUNTERS[node.name.upper()], expressions=node.expressions)
    if isinstance(node, exp.DateAdd | exp.DateSub):
        return _date_arithmetic(node)
    if isinstance(node, exp.Length) and node.args.get("binary"):  # MySQL's LENGTH counts bytes
        return exp.Length(this=exp.Cast(this=node.this, to=exp.DataType.build("BLOB")))
    if isinstance(node, exp.OnConflict) and node.args.get("duplicate"):
        # ON DUPLICATE KEY UPDATE -> SQLite's UPSERT; VALUES(col) -> excluded.col
        def values(n: exp.Expr) -> exp.Expr:
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


# ------------------------------------------------------------------ MySQL's functions on every connection

GROUP_CONCAT_MAX_LEN = 1024 * 1024  # MariaDB's default group_concat_max_len, in bytes
MAX_WARNINGS = 64  # MySQL's max_error_count: SHOW WARNINGS lists this many


class StatementWarnings:
    """What MySQL would tell in SHOW WARNINGS about the running statement,
    written by the connection's functions in the worker thread and read
    after the statement (the first batch of its rows) by the same thread.
    ``error``: a warning MySQL's strict mode makes the statement's error
    (the function then raised, so SQLite stopped the statement)."""

    def __init__(self) -> None:
        self.items: list[SqlWarning] = []
        self.count = 0
        self.error: SqlError | None = None
        self.groups = 0  # GROUP_CONCAT results so far (MySQL's "Row N was cut")

    def clear(self) -> None:
        self.items, self.count, self.error, self.groups = [], 0, None, 0

    def add(self, level: str, code: int, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_WARNINGS:
            self.items.append(SqlWarning(level, code, message))

    def fail(self, code: int, message: str) -> None:
        self.error = SqlError(code, message)
        raise sqlite3.OperationalError(message)


def _as_text(value: Any) -> str:
    """A value as MySQL turns it into a string (a double in its shortest form, bytes kept)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, float):
        return format_float(value)
    return str(value)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return _as_text(value).encode("utf-8", "surrogateescape")


def _digest(name: str) -> Callable[[Any], str | None]:
    def digest(value: Any) -> str | None:
        return None if value is None else hashlib.new(name, _as_bytes(value)).hexdigest()

    return digest


_SHA2 = {0: "sha256", 224: "sha224", 256: "sha256", 384: "sha384", 512: "sha512"}


def _hex(value: Any) -> str | None:
    """MySQL's HEX: a number's value in base 16 (rounded; negative as 64-bit), a string's bytes; NULL stays NULL."""
    if value is None:
        return None
    if isinstance(value, float) and value == value and abs(value) < 2.0**64:
        value = int(abs(value) + 0.5) * (1 if value >= 0 else -1)  # MySQL rounds half away from zero
    if isinstance(value, int):
        return format(value & 0xFFFFFFFFFFFFFFFF, "X")
    return _as_bytes(value).hex().upper()


_PLAIN_INTEGER = re.compile(r"\s*[+-]?\d+")


class _Reversed:
    """Orders the other way round: DESC keys, and the heap's largest-first."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]


def _sort_value(value: Any) -> tuple[int, Any]:
    """SQLite's order of types: NULL (first, as MySQL's), numbers, text, blobs."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, value) if isinstance(value, str) else (3, value)


def _group_concat_class(warnings: StatementWarnings) -> type:
    class GroupConcat:
        """The values in ORDER BY order, joined, cut at GROUP_CONCAT_MAX_LEN. Memory
        stays bounded: a value that sorts after others already filling the length
        can never be shown, so the largest is dropped while that holds (a heap)."""

        def __init__(self) -> None:
            self.heap: list[_Reversed] = []  # _Reversed((key, seq, text)): the largest on top
            self.size = 0  # characters kept, each value with one separator
            self.seen: set[str] = set()
            self.separator = ","
            self.seq = 0

        def step(self, separator: Any, distinct: int, directions: str, count: int, *args: Any) -> None:
            values = args[:count]
            if any(v is None for v in values):
                return  # MySQL skips a row with any NULL value
            text = "".join(map(_as_text, values))
            self.separator = "" if separator is None else _as_text(separator)
            if distinct:
                if text in self.seen:
                    return
                self.seen.add(text)
            key = tuple(
                _Reversed(_sort_value(v)) if d == "D" else _sort_value(v)
                for v, d in zip(args[count:], directions, strict=False)
            )
            self.seq += 1
            cost = len(text) + len(self.separator)
            heapq.heappush(self.heap, _Reversed((key, self.seq, text)))
            self.size += cost
            while len(self.heap) > 1:
                top = self.heap[0].value[2]
                top_cost = len(top) + len(self.separator)
                if self.size - top_cost - len(self.separator) < GROUP_CONCAT_MAX_LEN:
                    break
                heapq.heappop(self.heap)
                self.size -= top_cost
                self.seen.discard(top)

        def finalize(self) -> str | None:
            warnings.groups += 1
            if not self.heap:
                return None
            ordered = sorted(r.value for r in self.heap)
            joined = self.separator.join(text for _, _, text in ordered)
            raw = joined.encode("utf-8", "surrogateescape")
            if len(raw) <= GROUP_CONCAT_MAX_LEN:
                return joined
            warnings.add("Warning", 1260, f"Row {warnings.groups} was cut by GROUP_CONCAT()")
            return raw[:GROUP_CONCAT_MAX_LEN].decode("utf-8", "ignore")

    return GroupConcat


def register_functions(conn: sqlite3.Connection, warnings: StatementWarnings) -> None:
    """MySQL's functions SQLite lacks or computes otherwise, on ``conn``; their
    warnings go to ``warnings``."""

    def divisor(value: Any, strict: int, dividend: Any) -> Any:
        if value is None or dividend is None:
            return None  # NULL / 0 is NULL without a word
        try:
            zero = float(value) == 0 if not isinstance(value, bytes) else False
        except ValueError:
            zero = False
        if not zero:
            return value
        if strict:
            warnings.fail(1365, "Division by 0")
        warnings.add("Warning", 1365, "Division by 0")
        return None

    def cast_check(value: Any, strict: int) -> Any:
        if not isinstance(value, str | bytes):
            return value
        text = _as_text(value)
        m = _PLAIN_INTEGER.match(text)
        if m is not None and m.end() == len(text):
            return value
        shown = text if len(text) <= 64 else text[:64]
        message = f"Truncated incorrect INTEGER value: '{shown}'"
        if m is not None and not text[m.end() :].strip():
            warnings.add("Note", 1292, message)  # trailing spaces: MySQL only notes them
            return value
        if strict:
            warnings.fail(1292, message)
        warnings.add("Warning", 1292, message)
        return value

    def sha2(value: Any, bits: Any) -> str | None:
        name = _SHA2.get(bits) if isinstance(bits, int) else None
        if value is None:
            return None
        if name is None:
            warnings.add("Warning", 1583, "Incorrect parameters in the call to native function 'sha2'")
            return None
        return hashlib.new(name, _as_bytes(value)).hexdigest()

    deterministic = {"deterministic": True}
    conn.create_function("md5", 1, _digest("md5"), **deterministic)
    conn.create_function("sha1", 1, _digest("sha1"), **deterministic)
    conn.create_function("sha", 1, _digest("sha1"), **deterministic)
    conn.create_function("sha2", 2, sha2)
    conn.create_function("hex", 1, _hex, **deterministic)
    conn.create_function(DIVISOR, 3, divisor)
    conn.create_function(CAST_CHECK, 2, cast_check)
    conn.create_aggregate(GROUP_CONCAT, -1, _group_concat_class(warnings))
