"""MySQL's column types on SQLite: the declared types the embedded backend
writes for MySQL's (``declared_type``) and reads back (``mysql_declared_type``),
the converters that give drivers MySQL's values, the collation that orders
exact numbers stored as text, and how a wire parameter is bound (``bindable``)."""

from __future__ import annotations

import datetime
import decimal
import sqlite3
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from frontend.result import sized_int
from frontend.wire.results import format_timedelta

# Declared types of the exact columns (see declared_type): "TEXT" in the name
# gives TEXT affinity, and neither may contain "INT" (that would be INTEGER).
EXACT_DECIMAL = "DECIMAL_TEXT_S"  # + the scale: the converter pads to it, as MySQL prints
UNSIGNED_BIGINT = "UNSIGNED_BIG_TEXT"
NUMERIC_COLLATION = "fe_numeric"
MAX_DECIMAL_SCALE = 30  # MySQL's maximum


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


def compare_numeric(a: str, b: str) -> int:
    if a == b:
        return 0
    ka, kb = _numeric_key(a), _numeric_key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)


_SIZED_INTEGERS = {
    "TINYINT": "TINYINT", "UTINYINT": "TINYINT_UNSIGNED", "SMALLINT": "SMALLINT", "USMALLINT": "SMALLINT_UNSIGNED",
    "MEDIUMINT": "MEDIUMINT", "UMEDIUMINT": "MEDIUMINT_UNSIGNED", "INT": "INT", "UINT": "INT_UNSIGNED",
}  # fmt: skip


def declared_type(column: exp.ColumnDef, primary_key: frozenset[str] = frozenset()) -> None:
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
    if name in _SIZED_INTEGERS or name == "BOOLEAN":
        key = column.name.lower() in primary_key or any(isinstance(k, exp.PrimaryKeyColumnConstraint) for k in kinds)
        if not key:
            sized = _SIZED_INTEGERS.get(name, "TINYINT")
            # MySQL keeps one display width, TINYINT(1) (BOOL's type): drivers read it as a boolean
            if name == "BOOLEAN" or (name == "TINYINT" and [e.sql("mysql") for e in kind.expressions] == ["1"]):
                sized = "TINYINT(1)"
            column.set("kind", exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=sized))
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
    elif name in ("CHAR", "NCHAR"):  # SQLite's TEXT(n) would read back as VARCHAR (TEXT affinity either way)
        text = f"CHAR({params[0] if params else 1})"
    elif name in ("TINYTEXT", "MEDIUMTEXT", "LONGTEXT"):  # their lengths are MySQL's (TEXT affinity)
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


def bindable(value: Any) -> Any:
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
