"""The embedded backend: SQLite behind a MySQL dialect translated by sqlglot.

Each database is one SQLite file in the data directory (several FEs on one
host may share it: WAL mode and a busy timeout), attached to a session's
SQLite connection on first use. Every SQLite call runs in a worker thread so
the event loop stays free; a KILL interrupts it with ``sqlite3.interrupt()``
(and ``SLEEP()`` inside SQL sleeps in short slices that notice it).

Sealed: every connection it opens has an authorizer (``_Seal``) that refuses
ATTACH/DETACH (except the backend's own, run with a flag set), and so
``VACUUM INTO``, every PRAGMA but a few read-only ones (and the pragma
table-valued functions), ``load_extension`` and virtual tables. Error
messages never carry the data directory's paths.

A session's result is streamed: its first batch comes with the answer, the
rest (``Result.more``) is fetched a batch at a time in a worker thread as the
client reads, so a SELECT of millions of rows holds one batch in the FE.
Results the FE builds itself (information_schema, constant SELECTs) are
fetched whole and capped (``MAX_RESULT_ROWS``, ``MAX_RESULT_BYTES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlglot import exp

from coordinator import errors
from coordinator.errors import SqlError
from frontend.backend import Column, Index, check_db_name, valid_db_name
from frontend.result import Result, sized_int
from frontend.sqlparse import ByteBoundedCache, parse
from frontend.wire.results import format_timedelta

T = TypeVar("T")
MAX_ATTACHED = 10  # SQLite's default SQLITE_MAX_ATTACHED
CACHED_STATEMENT = 4096  # longer statements are not cached
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another FE's lock on a shared data directory
FETCH_BATCH = 1000
TYPED_ROWS = 10 * FETCH_BATCH  # at most this many rows read ahead to type a column NULL so far
MAX_RESULT_ROWS = 1_000_000
MAX_RESULT_BYTES = 64 * 1024 * 1024  # estimated: text and blob lengths, 8 per number, 16 per value
# PRAGMAs that only read a table's definition: allowed on the backend's own catalogue
# connections (DESCRIBE, information_schema); a session's connection allows none.
READ_ONLY_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
_REFUSED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
# Virtual tables that would show raw pages or other statements, if this SQLite has them.
_REFUSED_TABLES = frozenset({"sqlite_dbpage", "dbstat", "sqlite_stmt", "sqlite_dbdata", "sqlite_dbptr"})
# Declared types of the exact columns (see _declared_type): "TEXT" in the name
# gives TEXT affinity, and neither may contain "INT" (that would be INTEGER).
EXACT_DECIMAL = "DECIMAL_TEXT_S"  # + the scale: the converter pads to it, as MySQL prints
UNSIGNED_BIGINT = "UNSIGNED_BIG_TEXT"
NUMERIC_COLLATION = "fe_numeric"
MAX_DECIMAL_SCALE = 30  # MySQL's maximum
_SAVEPOINT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


class _Seal:
    """The authorizer of every connection the backend opens. ``own`` is set
    while the backend runs its own ATTACH/DETACH (the only ones allowed)."""

    def __init__(self, pragmas: frozenset[str] = frozenset()) -> None:
        self.own = False
        self.pragmas = pragmas

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_OK if self.own else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            return sqlite3.SQLITE_OK if (arg1 or "").lower() in self.pragmas else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _REFUSED_FUNCTIONS else sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_READ and (arg1 or "").lower() in _REFUSED_TABLES:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _or_text(parse: Callable[[str], Any]) -> Callable[[bytes], Any]:
    """A converter that gives the stored text back when it is not a valid value
    (SQLite stores whatever it was given; MySQL would have refused it)."""

    def convert(raw: bytes) -> Any:
        try:
            return parse(_text(raw))
        except (ValueError, ArithmeticError):
            return _text(raw)

    return convert


def _time(text: str) -> datetime.timedelta:
    """MySQL's TIME text, ``[-][D ]HH:MM:SS[.ffffff]`` (mysqlclient sends the day part)."""
    sign = -1 if text.startswith("-") else 1
    days, _, clock = text.lstrip("-").rpartition(" ")
    hours, minutes, seconds = clock.split(":")
    value = datetime.timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds))
    return sign * value


# Values of columns declared with these types come back as MySQL's drivers
# expect them (sqlite3.PARSE_DECLTYPES: the first word of the declared type).
_CONVERTERS: dict[str, Callable[[bytes], Any]] = {
    "DECIMAL": _or_text(decimal.Decimal),  # tables made before exact DECIMAL: NUMERIC, 15 digits
    "DATE": _or_text(lambda text: datetime.date.fromisoformat(text[:10])),  # MySQL keeps a datetime's date
    "DATETIME": _or_text(datetime.datetime.fromisoformat),
    "TIMESTAMP": _or_text(datetime.datetime.fromisoformat),
    "TIME": _or_text(_time),
    "BLOB": bytes,
    UNSIGNED_BIGINT: _or_text(lambda text: sized_int("BIGINT", True)(int(text))),
}
# Integer columns narrower than BIGINT or UNSIGNED (declared e.g. "SMALLINT_UNSIGNED"):
# their values carry the declared type to the wire. A value SQLite holds beyond the
# type's range (it enforces none) reads as the range's end, as MySQL's non-strict mode stores it.
_INTEGER_RANGES = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32, "BIGINT": 64}


def _integer_converter(kind: str, unsigned: bool) -> Callable[[bytes], Any]:
    bits = _INTEGER_RANGES[kind]
    low, high = (0, (1 << bits) - 1) if unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    cls = sized_int(kind, unsigned)

    def convert(raw: bytes) -> Any:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = round(float(raw))  # a fraction SQLite kept: MySQL rounds it
            except (ValueError, OverflowError):
                return _text(raw)  # text SQLite kept in an integer column
        return cls(min(max(value, low), high))

    return convert


for _kind in _INTEGER_RANGES:
    _CONVERTERS[_kind] = _integer_converter(_kind, False)
    if _kind != "BIGINT":  # BIGINT UNSIGNED is stored as text: UNSIGNED_BIGINT
        _CONVERTERS[f"{_kind}_UNSIGNED"] = _integer_converter(_kind, True)
# DECIMAL(p,s) and BIGINT UNSIGNED need more than a double's 15 digits or an
# int64: they are stored as exact text (the declared type's "TEXT" gives the
# column TEXT affinity) and compared as numbers by the NUMERIC_COLLATION that
# every connection registers, so WHERE, ORDER BY, MIN/MAX, UNIQUE and indexes
# order them as MySQL does. Arithmetic on them is SQLite's (a double).
_EXACT_CONTEXT = decimal.Context(prec=100)


def _decimal_converter(scale: int) -> Callable[[bytes], Any]:
    exponent = decimal.Decimal(1).scaleb(-scale)
    return _or_text(lambda text: _EXACT_CONTEXT.quantize(decimal.Decimal(text), exponent))


for _scale in range(MAX_DECIMAL_SCALE + 1):
    _CONVERTERS[f"{EXACT_DECIMAL}{_scale}"] = _decimal_converter(_scale)
for _name, _convert in _CONVERTERS.items():
    sqlite3.register_converter(_name, _convert)
_BLOB_TYPES = {"BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY"}
_DATETIME_TYPES = {"DATETIME", "DATETIME64", "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMPLTZ", "TIMESTAMPNTZ"}
_DECIMAL_TYPES = {"DECIMAL", "BIGDECIMAL", "DECIMAL32", "DECIMAL64", "DECIMAL128", "DECIMAL256"}


def _numeric_key(text: str) -> tuple[int, decimal.Decimal | str]:
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return (1, text)  # not a number (SQLite stores what it is given): after every number
    return (0, value) if value.is_finite() else (1, text)


def _compare_numeric(a: str, b: str) -> int:
    if a == b:
        return 0
    ka, kb = _numeric_key(a), _numeric_key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)  # type: ignore[operator]


_SIZED_INTEGERS = {
    "TINYINT": "TINYINT", "UTINYINT": "TINYINT_UNSIGNED", "SMALLINT": "SMALLINT", "USMALLINT": "SMALLINT_UNSIGNED",
    "MEDIUMINT": "MEDIUMINT", "UMEDIUMINT": "MEDIUMINT_UNSIGNED", "INT": "INT", "UINT": "INT_UNSIGNED",
}  # fmt: skip


def _declared_type(column: exp.ColumnDef, primary_key: frozenset[str] = frozenset()) -> None:
    """A MySQL column type as the SQLite declared type our converters and
    DESCRIBE read (sqlglot would write DECIMAL as REAL, TIMESTAMP as TIMESTAMPTZ).
    A primary key's integer column stays SQLite's INTEGER (the rowid: point
    lookups in one b-tree), so it goes out as BIGINT."""
    kind = column.args.get("kind")
    if not isinstance(kind, exp.DataType):
        return
    name = kind.this.name if hasattr(kind.this, "name") else str(kind.this)
    constraints = column.args.get("constraints") or ()
    kinds = [c.args.get("kind") for c in constraints]
    if any(isinstance(k, exp.AutoIncrementColumnConstraint) for k in kinds):
        if kind.is_type(*exp.DataType.INTEGER_TYPES):
            column.set("kind", exp.DataType.build("INTEGER"))  # SQLite's AUTOINCREMENT needs INTEGER PRIMARY KEY
        return
    if name in _SIZED_INTEGERS:
        key = column.name.lower() in primary_key or any(isinstance(k, exp.PrimaryKeyColumnConstraint) for k in kinds)
        if not key:
            column.set("kind", exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=_SIZED_INTEGERS[name]))
        return
    params = [e.sql("mysql") for e in kind.expressions]
    exact = False
    if name in _DECIMAL_TYPES:
        precision = int(params[0]) if params and params[0].isdigit() else 10
        scale = int(params[1]) if len(params) > 1 and params[1].isdigit() else 0
        text, exact = f"{EXACT_DECIMAL}{min(scale, MAX_DECIMAL_SCALE)}({precision},{scale})", True
    elif name == "UBIGINT":
        text, exact = UNSIGNED_BIGINT, True
    elif name in _DATETIME_TYPES:
        text = ("TIMESTAMP" if name.startswith("TIMESTAMP") else "DATETIME") + (f"({params[0]})" if params else "")
    elif name in ("DATE", "TIME"):
        text = name
    elif name in _BLOB_TYPES:
        text = "BLOB"
    else:
        return
    column.set("kind", exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=text))
    if exact:
        collate = exp.CollateColumnConstraint(this=exp.var(NUMERIC_COLLATION))
        column.append("constraints", exp.ColumnConstraint(kind=collate))


def mysql_declared_type(declared: str) -> str:
    """A column's SQLite declared type as the MySQL type it stands for."""
    if declared.endswith("_UNSIGNED"):
        return declared.removesuffix("_UNSIGNED") + " UNSIGNED"
    if declared.startswith(EXACT_DECIMAL):
        return "DECIMAL" + declared[declared.index("(") :]
    if declared == UNSIGNED_BIGINT:
        return "BIGINT UNSIGNED"
    return declared


def _sealed(
    path: str = ":memory:", detect_types: int = 0, pragmas: frozenset[str] = frozenset()
) -> tuple[sqlite3.Connection, _Seal]:
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT, detect_types=detect_types
    )
    conn.create_collation(NUMERIC_COLLATION, _compare_numeric)
    seal = _Seal(pragmas)
    conn.set_authorizer(seal)
    return conn, seal


def _unseen_column(rows: list[tuple[Any, ...]]) -> bool:
    """Some column has no value but NULL in ``rows``."""
    return bool(rows) and any(all(row[i] is None for row in rows) for i in range(len(rows[0])))


def _value_size(value: Any) -> int:
    if isinstance(value, str | bytes):
        return 16 + len(value)
    return 16


def _fetch(cursor: sqlite3.Cursor) -> list[tuple[Any, ...]]:
    """All rows, in batches, within the caps (SqlError 1105 past them)."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    while batch := cursor.fetchmany(FETCH_BATCH):
        time.sleep(0)  # hand the GIL to the event loop now, not after the 5 ms switch interval
        rows.extend(batch)
        size += sum(_value_size(v) for row in batch for v in row) + 56 * len(batch)
        if len(rows) > MAX_RESULT_ROWS or size > MAX_RESULT_BYTES:
            cursor.close()
            raise SqlError(
                errors.UNKNOWN_ERROR,
                f"Result too large: more than {MAX_RESULT_ROWS} rows or {MAX_RESULT_BYTES >> 20} MB;"
                " add a LIMIT or a WHERE",
            )
    return rows


def sql_error(e: sqlite3.Error, data_dir: Path | None = None) -> SqlError:
    """A SQLite error as MySQL words, never with a path of the data directory."""
    text = str(e)
    if data_dir is not None:
        text = text.replace(str(data_dir), "<data>")
    if isinstance(e, sqlite3.OperationalError) and text == "interrupted":
        return errors.interrupted()
    if text.startswith(("not authorized", "authorization denied")) or re.match(r"access to \S+ is prohibited", text):
        return SqlError(errors.SPECIFIC_ACCESS_DENIED, "Access denied; the embedded backend does not allow this")
    m = re.match(r"no such table: (\S+)", text)
    if m:
        return SqlError(errors.NO_SUCH_TABLE, f"Table '{m.group(1)}' doesn't exist")
    if text.endswith("syntax error") or text.startswith("incomplete input"):
        return SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax: {text}")
    m = re.match(r"unknown database (\S+)", text)
    if m:
        return SqlError(errors.BAD_DB, f"Unknown database '{m.group(1)}'")
    m = re.match(r"no such savepoint: (\S+)", text)
    if m:
        return SqlError(errors.NO_SUCH_FUNCTION, f"SAVEPOINT {m.group(1)} does not exist")
    # A path we did not expect (two or more slashes): say nothing of it.
    text = re.sub(r"[^\s'\"]*/[^\s'\"]*/[^\s'\"]*", "<path>", text)
    return SqlError(errors.UNKNOWN_ERROR, text)


async def _settle(future: asyncio.Future[Any]) -> None:
    """Wait for an interrupted worker to let go, whatever it raises (its
    "interrupted" must not replace the cancel) and even if cancelled again."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" noise


class SqliteBackend:
    relays = False
    names_fold_case = True  # SQLite's table names; database files are named in lower case

    async def start(self) -> None:
        pass

    def __init__(self, data_dir: Path, max_threads: int = 32) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(max_threads, thread_name_prefix="sqlite")

    def path(self, name: str) -> Path:
        return self.data_dir / f"{check_db_name(name).lower()}.sqlite"

    async def _in_thread(self, work: Callable[[sqlite3.Connection], T], path: str = ":memory:") -> T:
        """``work`` on a private, sealed connection in a worker thread; a cancel interrupts it."""
        conn, _ = _sealed(path, pragmas=READ_ONLY_PRAGMAS)
        # interrupt() only stops a statement already running: a cancel that lands
        # while the worker is still queued or loading rows must stop it too.
        cancelled = threading.Event()
        conn.set_progress_handler(cancelled.is_set, 10_000)
        future = asyncio.get_running_loop().run_in_executor(self.pool, work, conn)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            conn.interrupt()
            await _settle(future)
            raise
        except sqlite3.Error as e:
            raise sql_error(e, self.data_dir) from e
        finally:
            self.pool.submit(conn.close)

    async def tables(self, database: str) -> list[str]:
        def names(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                " ORDER BY name"  # SQLite's own (sqlite_sequence, sqlite_stat1) are not the user's
            ).fetchall()
            return [r[0] for r in rows]

        return await self._in_thread(names, str(self.path(database)))

    async def columns(self, database: str, table: str) -> list[Column]:
        """The table's columns (SqlError 1146 when there is no such table)."""

        def read(conn: sqlite3.Connection) -> list[Column]:
            rows = conn.execute('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (table,))
            found = [Column(r[0], mysql_declared_type(r[1] or ""), not r[2], r[3], int(r[4])) for r in rows]
            if not found:
                raise SqlError(errors.NO_SUCH_TABLE, f"Table '{database}.{table}' doesn't exist")
            return found

        if not self.exists(database):
            raise SqlError(errors.BAD_DB, f"Unknown database '{database}'")
        return await self._in_thread(read, str(self.path(database)))

    async def indexes(self, database: str, table: str) -> list[Index]:
        """The table's secondary indexes (the primary key is in ``columns``)."""

        def read(conn: sqlite3.Connection) -> list[Index]:
            found = []
            for row in conn.execute('SELECT name, "unique", origin FROM pragma_index_list(?)', (table,)).fetchall():
                if row[2] == "pk":
                    continue  # a PRIMARY KEY's own index: reported as PRIMARY from the columns
                names = [r[0] for r in conn.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (row[0],))]
                name = row[0].removeprefix(_index_name(table, ""))  # older tables' indexes: as they were named
                found.append(Index(name, bool(row[1]), names))
            return found

        return await self._in_thread(read, str(self.path(database)))

    async def constant_select(self, query: exp.Select) -> Result:
        sql = query.transform(_mysql_function).sql(dialect="sqlite")
        columns = [p.alias_or_name if p.alias else p.sql(dialect="mysql") for p in query.expressions]

        def run(conn: sqlite3.Connection) -> Result:
            return Result(columns, _fetch(conn.execute(sql)))

        return await self._in_thread(run)

    async def query_rows(
        self, query: exp.Expression, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> Result:
        return await self.query_tables(query, {table: (columns, rows)})

    async def query_tables(
        self, query: exp.Expression, tables: Mapping[str, tuple[Sequence[str], Sequence[tuple[Any, ...]]]]
    ) -> Result:
        sql = query.sql(dialect="sqlite")

        def run(conn: sqlite3.Connection) -> Result:
            for table, (columns, rows) in tables.items():
                conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
                conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
            cursor = conn.execute(sql)
            return Result([d[0] for d in cursor.description or ()], _fetch(cursor))

        return await self._in_thread(run)

    def session(self, on_thread: Callable[[int], None] | None = None) -> SqliteSession:
        return SqliteSession(self)

    async def databases(self) -> list[str]:
        return sorted(p.stem for p in self.data_dir.glob("*.sqlite"))

    async def has_database(self, name: str) -> bool:
        return self.exists(name)

    def exists(self, name: str) -> bool:
        """``has_database`` for the worker threads."""
        return valid_db_name(name) and self.path(name).exists()

    async def kill_threads(self, thread_ids: Sequence[int]) -> None:
        return None  # an embedded backend dies with its FE

    async def create_database(self, name: str, if_not_exists: bool) -> None:
        path = self.path(name)
        if path.exists():
            if if_not_exists:
                return
            raise SqlError(errors.DB_CREATE_EXISTS, f"Can't create database '{name}'; database exists")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()

    async def drop_database(self, name: str, if_exists: bool) -> None:
        path = self.path(name)
        if not path.exists():
            if if_exists:
                return
            raise SqlError(errors.DB_DROP_EXISTS, f"Can't drop database '{name}'; database doesn't exist")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Translation(NamedTuple):
    sql: str  # SQLite's text
    databases: frozenset[str]  # the databases it names (attached before it runs)
    count_sql: str | None = None  # SELECT SQL_CALC_FOUND_ROWS: its row count without the LIMIT, for FOUND_ROWS()
    explain: bool = False  # EXPLAIN <statement>: SQLite's plan, answered in MySQL's EXPLAIN columns
    then: tuple[str, ...] = ()  # run right after it: CREATE TABLE's inline KEY/INDEX as CREATE INDEX


# Bounded by the statements' text (each entry is at most CACHED_STATEMENT bytes in and about as much out).
_TRANSLATED: ByteBoundedCache[tuple[str, str | None], Translation] = ByteBoundedCache(
    1024 * 1024, CACHED_STATEMENT, lambda key: 2 * len(key[0])
)


def translate(sql: str, database: str | None) -> Translation:
    """MySQL text -> (SQLite text, databases it names, whether it returns rows); cached."""
    return _TRANSLATED.get((sql, database), lambda: translate_tree(parse(sql), database))


def translate_tree(tree: exp.Expression, database: str | None) -> Translation:
    """As ``translate``, from a tree the caller gives up (it is changed)."""
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
    primary_key = frozenset(c.name.lower() for key in tree.find_all(exp.PrimaryKey) for c in key.expressions if c.name)
    for column in tree.find_all(exp.ColumnDef):
        _declared_type(column, primary_key)
    index = _index_statement(tree)
    if index is not None:
        return Translation(index, frozenset(dbs))
    then = _inline_indexes(tree)
    if not isinstance(tree, exp.Create | exp.Alter):  # a column DEFAULT keeps CURRENT_TIMESTAMP (constant for SQLite)
        tree = tree.transform(_mysql_function)
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
    return Translation(tree.sql(dialect="sqlite"), frozenset(dbs), count_sql, then=then)


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
            f"CREATE {unique}INDEX {exists}{_quoted(table.db)}.{_quoted(_index_name(table.name, name))}"
            f" ON {_quoted(table.name)} ({', '.join(c.sql(dialect='sqlite') for c in columns)})"
        )
    return tuple(statements)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


INDEX_NAME_SEPARATOR = "$"  # SQLite names indexes per database, MySQL per table: "<table>$<index>"


def _index_name(table: str, index: str) -> str:
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
            f"CREATE {unique}INDEX {exists}{_quoted(table.db)}.{_quoted(_index_name(table.name, index.name))}"
            f" ON {_quoted(table.name)} ({columns})"
        )
    if isinstance(tree, exp.Drop):
        on = tree.args.get("cluster")
        table = on.this if on is not None else None
        names = [t.name for t in tree.args.get("tables") or ()]
        if not isinstance(table, exp.Table) or len(names) != 1:
            return None
        exists = "IF EXISTS " if tree.args.get("exists") else ""
        return f"DROP INDEX {exists}{_quoted(table.db)}.{_quoted(_index_name(table.name, names[0]))}"
    return None


# MySQL functions SQLite lacks, as SQLite's own or the session connection's (``_FUNCTIONS``).
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


def _mysql_function(node: exp.Expression) -> exp.Expression:
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


def _explain_row(detail: str) -> tuple[Any, ...]:
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


_FUNCTIONS: dict[str, Callable[[], str]] = {"now": _now, "curdate": _curdate, "curtime": _curtime}


def _bindable(value: Any) -> Any:
    """A wire parameter as SQLite binds it, stored as the text form would store it."""
    if value is None or isinstance(value, float | bytes):
        return value
    if isinstance(value, int):
        # bool as 0/1; beyond an int64 as text (exact in a BIGINT UNSIGNED column)
        return int(value) if -(1 << 63) <= value < (1 << 63) else str(value)
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # a client's binary bytes, kept as surrogates by the wire layer
            return value.encode("utf-8", "surrogateescape")
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f")  # text: exact in a DECIMAL column, a number elsewhere
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return format_timedelta(value)
    return str(value)


class SqliteSession:
    """One client session's SQLite connection, opened on first use.

    Transactions are SQLite's own on this connection. ``BEGIN`` (and the first
    statement with autocommit off) is issued lazily, right before the next
    statement, after that statement's databases and the current one are
    attached: SQLite cannot ATTACH inside a transaction, so a transaction
    uses the databases attached when it began (a statement naming another
    one gets a clear error)."""

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self._conn: sqlite3.Connection | None = None
        self._seal = _Seal()
        self._attached: set[str] = set()
        self._cancelled = threading.Event()
        self._autocommit = True
        self._begin_pending = False  # BEGIN said, not yet issued (see the class doc)
        self._found_rows = 0  # FOUND_ROWS(): rows of the last SELECT (without its LIMIT if SQL_CALC_FOUND_ROWS)
        self._counting_rows = True  # a streamed SELECT adds its batches to _found_rows
        self.database: str | None = None

    @property
    def in_transaction(self) -> bool:
        return self._begin_pending or (self._conn is not None and self._conn.in_transaction)

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn, self._seal = _sealed(detect_types=sqlite3.PARSE_DECLTYPES)
            conn.create_function("sleep", 1, self._sleep)
            conn.create_function("found_rows", 0, lambda: self._found_rows)
            for name, function in _FUNCTIONS.items():
                conn.create_function(name, 0, function)
            # A KILL that lands before the worker has started the statement
            # (interrupt() is then a no-op) still stops it at its first steps.
            conn.set_progress_handler(self._cancelled.is_set, 10_000)
            self._conn = conn
        return self._conn

    def _sleep(self, seconds: float) -> int:
        deadline = time.monotonic() + float(seconds or 0)
        while (left := deadline - time.monotonic()) > 0:
            if self._cancelled.wait(min(left, 0.01)):
                raise sqlite3.OperationalError("interrupted")
        return 0

    def _own(self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> None:
        """The backend's own ATTACH/DETACH: the seal lets these through."""
        self._seal.own = True
        try:
            conn.execute(sql, params)
        finally:
            self._seal.own = False

    def _attach(self, conn: sqlite3.Connection, dbs: frozenset[str] | set[str]) -> None:
        missing = dbs - self._attached
        if not missing:
            return
        if conn.in_transaction:
            raise SqlError(
                errors.UNKNOWN_ERROR,
                f"database '{sorted(missing)[0]}' was not used when this transaction began:"
                " COMMIT or ROLLBACK first (the embedded backend cannot add one inside a transaction)",
            )
        for db in missing:
            path = self.backend.path(db)
            if not path.exists():
                raise SqlError(errors.BAD_DB, f"Unknown database '{db}'")
            if len(self._attached) >= MAX_ATTACHED:
                for old in list(self._attached - dbs):
                    self._own(conn, f'DETACH DATABASE "{old}"')
                    self._attached.discard(old)
            self._own(conn, "ATTACH DATABASE ? AS " + f'"{db}"', (str(path),))
            self._attached.add(db)

    def _begin_if_due(self, conn: sqlite3.Connection, dbs: frozenset[str]) -> None:
        if conn.in_transaction or (self._autocommit and not self._begin_pending):
            return
        wanted = set(dbs)
        if self.database and self.backend.exists(self.database):
            wanted.add(self.database.lower())
        self._attach(conn, frozenset(wanted))
        conn.execute("BEGIN")
        self._begin_pending = False

    def _run(self, sql: str, database: str | None, tree: exp.Expression | None, params: tuple[Any, ...] = ()) -> Result:
        try:
            # Translated here, in the worker thread: parsing must not stall the
            # event loop (seconds for a bulk INSERT); short statements are cached.
            if tree is not None:
                translation = translate_tree(tree, database)
            elif len(sql) <= CACHED_STATEMENT:
                translation = translate(sql, database)
            else:
                translation = translate_tree(parse(sql), database)
            conn = self._connection()
            self._attach(conn, translation.databases)
            self._begin_if_due(conn, translation.databases)
            if translation.then:
                return self._create_with_indexes(conn, translation)
            cursor = conn.execute(translation.sql, params)
            if translation.explain:
                return Result(list(EXPLAIN_COLUMNS), [_explain_row(row[3]) for row in cursor.fetchall()])
            if cursor.description is None:
                return Result(affected_rows=max(cursor.rowcount, 0))
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchmany(FETCH_BATCH)
            # The wire layer types the columns from the first rows: read on while a
            # column has shown nothing but NULL (a bounded number of batches).
            while len(rows) % FETCH_BATCH == 0 and len(rows) < TYPED_ROWS and _unseen_column(rows):
                batch = cursor.fetchmany(FETCH_BATCH)
                rows.extend(batch)
                if not batch:
                    break
            self._found_rows = len(rows)
            more = self._rest(cursor) if rows and len(rows) % FETCH_BATCH == 0 else None
            self._counting_rows = translation.count_sql is None
            if translation.count_sql is not None:
                self._found_rows = conn.execute(translation.count_sql).fetchone()[0]
            return Result(columns=columns, rows=rows, more=more)
        except sqlite3.Error as e:
            raise sql_error(e, self.backend.data_dir) from e

    @staticmethod
    def _create_with_indexes(conn: sqlite3.Connection, translation: Translation) -> Result:
        """CREATE TABLE and its keys' CREATE INDEX as one: all of them or none."""
        conn.execute("SAVEPOINT fe_create_table")
        try:
            conn.execute(translation.sql)
            for statement in translation.then:
                conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK TO fe_create_table")
            raise
        finally:
            conn.execute("RELEASE fe_create_table")
        return Result()

    async def _rest(self, cursor: sqlite3.Cursor) -> AsyncIterator[list[tuple[Any, ...]]]:
        """A large result's further rows, a batch per call in a worker thread
        (a KILL interrupts it): memory holds a batch, not the result."""
        try:
            while batch := await self._call(self._next_batch, cursor):
                yield batch
        finally:
            await self._call(cursor.close)  # the statement lets go of its read snapshot now

    def _next_batch(self, cursor: sqlite3.Cursor) -> list[tuple[Any, ...]]:
        try:
            batch = cursor.fetchmany(FETCH_BATCH)
        except sqlite3.Error as e:
            raise sql_error(e, self.backend.data_dir) from e
        if self._counting_rows:
            self._found_rows += len(batch)
        return batch

    async def _call(self, work: Callable[..., T], *args: Any) -> T:
        """``work`` in a worker thread; a cancel (KILL) interrupts SQLite and
        waits for the thread to let go of the connection."""
        self._cancelled.clear()
        future = asyncio.get_running_loop().run_in_executor(self.backend.pool, work, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Stop the statement in its thread, then wait for the thread to let
            # go of the connection before anyone uses it again, even if we are
            # cancelled again meanwhile.
            self._cancelled.set()
            if self._conn is not None:
                self._conn.interrupt()
            await _settle(future)
            raise

    async def execute(self, sql: str, database: str | None, tree: exp.Expression | None = None) -> Result:
        self.database = database
        return await self._call(self._run, sql, database, tree)

    async def execute_bound(self, sql: str, database: str | None, params: Sequence[Any]) -> Result:
        """``sql`` translated once (cached by its text) and its parameters bound
        by SQLite: a prepared statement's executes skip the parse."""
        self.database = database
        return await self._call(self._run, sql, database, None, tuple(map(_bindable, params)))

    # ------------------------------------------------------------ transactions

    def _end(self, verb: str) -> None:
        self._begin_pending = False
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute(verb)
            except sqlite3.Error as e:
                raise sql_error(e, self.backend.data_dir) from e

    async def begin(self) -> None:
        """BEGIN / START TRANSACTION: as in MySQL, an open transaction is committed first."""
        await self._call(self._end, "COMMIT")
        self._begin_pending = True

    async def commit(self) -> None:
        await self._call(self._end, "COMMIT")

    async def rollback(self) -> None:
        await self._call(self._end, "ROLLBACK")

    async def set_autocommit(self, on: bool) -> None:
        if on and not self._autocommit:
            await self._call(self._end, "COMMIT")  # MySQL: turning autocommit on commits
        self._autocommit = on

    async def savepoint(self, verb: str, name: str) -> None:
        """``SAVEPOINT``, ``ROLLBACK TO SAVEPOINT`` or ``RELEASE SAVEPOINT`` ``name``."""
        if not _SAVEPOINT_NAME.match(name):
            raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax near '{name[:60]}'")

        def run() -> None:
            conn = self._connection()
            if verb == "SAVEPOINT":
                if not conn.in_transaction and self._autocommit and not self._begin_pending:
                    return  # MySQL: a savepoint outside a transaction is gone at once
                self._begin_if_due(conn, frozenset())
            elif not conn.in_transaction:
                raise SqlError(errors.NO_SUCH_FUNCTION, f"SAVEPOINT {name} does not exist")
            try:
                conn.execute(f'{verb} "{name}"')
            except sqlite3.Error as e:
                raise sql_error(e, self.backend.data_dir) from e

        await self._call(run)

    async def relay_set(self, sql: str) -> None:
        return None  # the FE's variables are the session's

    @property
    def thread_id(self) -> int:
        return 0

    def close(self) -> None:
        if self._conn is not None:
            self._cancelled.set()
            self._conn.interrupt()
            conn, self._conn = self._conn, None
            self.backend.pool.submit(conn.close)  # an open transaction is rolled back
