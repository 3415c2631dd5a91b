"""Result packets: OK, ERR, EOF, column definitions and rows (text and binary).

OK_Packet (CLIENT_PROTOCOL_41, no CLIENT_SESSION_TRACK)::

    int<1>      header              0x00 (0xFE when it ends a result set under CLIENT_DEPRECATE_EOF)
    int<lenenc> affected rows
    int<lenenc> last insert id
    int<2>      status flags
    int<2>      warnings
    string<EOF> info

ERR_Packet::

    int<1>      0xFF
    int<2>      error code
    string[1]   '#'
    string[5]   SQLSTATE
    string<EOF> message

EOF_Packet::

    int<1>      0xFE
    int<2>      warnings
    int<2>      status flags

A text result set is: column count (``int<lenenc>``), one ColumnDefinition41 per
column, an EOF unless CLIENT_DEPRECATE_EOF, the rows, and a terminator: an EOF,
or with CLIENT_DEPRECATE_EOF an OK with header 0xFE. That OK reports **0**
affected rows (Connector/J reads the field as an update count).

ColumnDefinition41::

    string<lenenc> catalog          "def"
    string<lenenc> schema
    string<lenenc> table            (alias)
    string<lenenc> org_table
    string<lenenc> name             (alias)
    string<lenenc> org_name
    int<lenenc>    length of the fixed fields, always 0x0C
    int<2>         character set    63 (binary) for numbers and temporals
    int<4>         column length    display width in bytes
    int<1>         type
    int<2>         flags
    int<1>         decimals
    int<2>         filler           0x0000

Text row: per column ``string<lenenc>`` of the value as MySQL prints it, or 0xFB
for NULL. Binary row: 0x00, a NULL bitmap of ``(n + 7 + 2) // 8`` bytes in which
column i is bit ``i + 2``, then each non-NULL value in its binary form (see
``binary_value``).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from coordinator.errors import sqlstate
from frontend.result import SizedInt
from frontend.wire.handshake import BINARY_CHARSET, UTF8MB4_GENERAL_CI
from frontend.wire.packets import lenenc_bytes, lenenc_int

# Column types (int<1>).
DECIMAL = 0
TINY = 1
SHORT = 2
LONG = 3
FLOAT = 4
DOUBLE = 5
NULL = 6
TIMESTAMP = 7
LONGLONG = 8
INT24 = 9
DATE = 10
TIME = 11
DATETIME = 12
YEAR = 13
NEWDATE = 14
VARCHAR = 15
BIT = 16
TIMESTAMP2 = 17
DATETIME2 = 18
TIME2 = 19
JSON = 245
NEWDECIMAL = 246
ENUM = 247
SET = 248
TINY_BLOB = 249
MEDIUM_BLOB = 250
LONG_BLOB = 251
BLOB = 252
VAR_STRING = 253
STRING = 254
GEOMETRY = 255

BLOB_TYPES = frozenset({TINY_BLOB, MEDIUM_BLOB, LONG_BLOB, BLOB})
INTEGER_TYPES = frozenset({TINY, SHORT, LONG, LONGLONG, INT24, YEAR})
TEMPORAL_TYPES = frozenset({DATE, DATETIME, TIMESTAMP, TIME, NEWDATE})

# Column flags (int<2>).
NOT_NULL_FLAG = 1
PRI_KEY_FLAG = 2
UNIQUE_KEY_FLAG = 4
MULTIPLE_KEY_FLAG = 8
BLOB_FLAG = 16
UNSIGNED_FLAG = 32
ZEROFILL_FLAG = 64
BINARY_FLAG = 128
ENUM_FLAG = 256
AUTO_INCREMENT_FLAG = 512
TIMESTAMP_FLAG = 1024
SET_FLAG = 2048
NO_DEFAULT_VALUE_FLAG = 4096
ON_UPDATE_NOW_FLAG = 8192
NUM_FLAG = 32768

# Server status flags (int<2>).
SERVER_STATUS_IN_TRANS = 1
SERVER_STATUS_AUTOCOMMIT = 2
SERVER_MORE_RESULTS_EXISTS = 8
SERVER_QUERY_NO_GOOD_INDEX_USED = 16
SERVER_QUERY_NO_INDEX_USED = 32
SERVER_STATUS_CURSOR_EXISTS = 64
SERVER_STATUS_LAST_ROW_SENT = 128
SERVER_STATUS_DB_DROPPED = 256
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 512
SERVER_STATUS_METADATA_CHANGED = 1024
SERVER_QUERY_WAS_SLOW = 2048
SERVER_PS_OUT_PARAMS = 4096
SERVER_STATUS_IN_TRANS_READONLY = 8192
SERVER_SESSION_STATE_CHANGED = 16384

NOT_FIXED_DEC = 31
"""``decimals`` of a FLOAT/DOUBLE without a fixed scale."""

_HH = struct.Struct("<HH")
_ERR_HEAD = struct.Struct("<BH")
_COLUMN_TAIL = struct.Struct("<BHIBHBxx")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: int = VAR_STRING
    length: int = 0
    flags: int = 0
    charset: int = UTF8MB4_GENERAL_CI
    decimals: int = 0
    table: str = ""
    org_table: str = ""
    schema: str = ""
    org_name: str = ""

    @property
    def unsigned(self) -> bool:
        return bool(self.flags & UNSIGNED_FLAG)


# ---------------------------------------------------------------- column inference

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1
_NUMERIC = BINARY_FLAG  # numbers carry BINARY with charset 63, as MySQL sends them


@lru_cache(maxsize=4096)
def _simple(name: str, kind: str) -> Column:
    if kind == "int":
        return Column(name, LONGLONG, 20, _NUMERIC, BINARY_CHARSET)
    if kind == "uint":
        return Column(name, LONGLONG, 20, _NUMERIC | UNSIGNED_FLAG, BINARY_CHARSET)
    if kind == "bool":
        return Column(name, TINY, 1, _NUMERIC, BINARY_CHARSET)
    if kind == "float":
        return Column(name, DOUBLE, 22, _NUMERIC, BINARY_CHARSET, NOT_FIXED_DEC)
    if kind == "bytes":
        return Column(name, BLOB, 65535, BINARY_FLAG | BLOB_FLAG, BINARY_CHARSET)
    if kind == "str":
        return Column(name, VAR_STRING, 1020, 0, UTF8MB4_GENERAL_CI)
    if kind == "datetime":
        return Column(name, DATETIME, 19, BINARY_FLAG, BINARY_CHARSET)
    if kind == "datetime6":
        return Column(name, DATETIME, 26, BINARY_FLAG, BINARY_CHARSET, 6)
    if kind == "date":
        return Column(name, DATE, 10, BINARY_FLAG, BINARY_CHARSET)
    if kind == "time":
        return Column(name, TIME, 10, BINARY_FLAG, BINARY_CHARSET)
    if kind == "time6":
        return Column(name, TIME, 17, BINARY_FLAG, BINARY_CHARSET, 6)
    if kind == "null":
        return Column(name, NULL, 0, BINARY_FLAG, BINARY_CHARSET)
    raise ValueError(kind)


# MySQL's integer types: wire type and display width (signed, unsigned), as MariaDB sends them.
_INTEGER_TYPES = {
    "TINYINT": (TINY, 4, 3),
    "SMALLINT": (SHORT, 6, 5),
    "MEDIUMINT": (INT24, 9, 8),
    "INT": (LONG, 11, 10),
    "BIGINT": (LONGLONG, 20, 20),
}


@lru_cache(maxsize=4096)
def _sized(name: str, kind: str, unsigned: bool) -> Column:
    wire_type, width, unsigned_width = _INTEGER_TYPES[kind]
    flags = _NUMERIC | (UNSIGNED_FLAG if unsigned else 0)
    return Column(name, wire_type, unsigned_width if unsigned else width, flags, BINARY_CHARSET)


def column_for_value(name: str, value: Any) -> Column:
    """The column a backend that declares nothing gets, from one sample value."""
    if value is None:
        return _simple(name, "null")
    if isinstance(value, bool):
        return _simple(name, "bool")
    if isinstance(value, int):
        if isinstance(value, SizedInt):
            return _sized(name, value.kind, value.unsigned)
        if _INT64_MIN <= value <= _INT64_MAX:
            return _simple(name, "int")
        if 0 <= value <= _UINT64_MAX:
            return _simple(name, "uint")
        return Column(name, NEWDECIMAL, len(str(value)) + 1, BINARY_FLAG, BINARY_CHARSET, 0)
    if isinstance(value, float):
        return _simple(name, "float")
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        scale = min(-exponent, 30) if isinstance(exponent, int) and exponent < 0 else 0
        digits = len(value.as_tuple().digits)
        return Column(name, NEWDECIMAL, min(max(digits, scale + 1) + 2, 67), BINARY_FLAG, BINARY_CHARSET, scale)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _simple(name, "bytes")
    if isinstance(value, str):
        return _simple(name, "str")
    if isinstance(value, dt.datetime):
        return _simple(name, "datetime6" if value.microsecond else "datetime")
    if isinstance(value, dt.date):
        return _simple(name, "date")
    if isinstance(value, dt.timedelta):
        return _simple(name, "time6" if value.microseconds else "time")
    if isinstance(value, dt.time):
        return _simple(name, "time6" if value.microsecond else "time")
    return _simple(name, "str")


def infer_columns(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Column]:
    """One column per name, typed from its first non-NULL value in ``rows``."""
    columns = []
    for i, name in enumerate(names):
        sample = None
        for row in rows:
            if row[i] is not None:
                sample = row[i]
                break
        columns.append(column_for_value(name, sample))
    return columns


def stable_columns(names: Sequence[str], rows: Sequence[Sequence[Any]], unseen_as_text: bool = False) -> list[Column]:
    """Columns whose binary encoding fits **every** value (``infer_columns`` looks at one).

    The binary protocol writes each value in its column's type, so a column
    whose values differ in kind must be widened: signed and unsigned 64-bit
    integers to DECIMAL, DATE with DATETIME to DATETIME, the larger scale wins;
    anything else mixed becomes a string column (every value has a text form).
    ``unseen_as_text``: a column with no value in ``rows`` is a string column,
    not NULL (rows that come later may have values).
    """
    columns = []
    for i, name in enumerate(names):
        chosen: Column | None = None
        for row in rows:
            value = row[i]
            if value is None:
                continue
            column = column_for_value(name, value)
            if chosen is None:
                chosen = column
            elif column is not chosen:
                chosen = _widen(name, chosen, column)
        if chosen is None:
            chosen = _simple(name, "str" if unseen_as_text else "null")
        columns.append(chosen)
    return columns


def _widen(name: str, a: Column, b: Column) -> Column:
    types = {a.type, b.type}
    if len(types) == 1 and a.flags == b.flags:
        return a if (a.decimals, a.length) >= (b.decimals, b.length) else b
    if types <= {LONGLONG, NEWDECIMAL, TINY}:
        if types == {LONGLONG, TINY} and a.flags == b.flags:
            return a if a.type == LONGLONG else b
        decimals = max(a.decimals if a.type == NEWDECIMAL else 0, b.decimals if b.type == NEWDECIMAL else 0)
        return Column(name, NEWDECIMAL, 67, BINARY_FLAG, BINARY_CHARSET, decimals)
    if types == {DATE, DATETIME}:
        return a if a.type == DATETIME else b
    return _simple(name, "str")


# ---------------------------------------------------------------- simple packets


def ok_packet(
    affected_rows: int = 0,
    last_insert_id: int = 0,
    status: int = SERVER_STATUS_AUTOCOMMIT,
    warnings: int = 0,
    info: bytes = b"",
    header: int = 0x00,
) -> bytes:
    # DB-API backends report an unknown count as -1: the protocol has no such value.
    affected_rows, last_insert_id = max(affected_rows, 0), max(last_insert_id, 0)
    if affected_rows < 0xFB and last_insert_id < 0xFB:
        head = bytes((header, affected_rows, last_insert_id))
    else:
        head = bytes((header,)) + lenenc_int(affected_rows) + lenenc_int(last_insert_id)
    return head + _HH.pack(status, min(warnings, 0xFFFF)) + info


def eof_packet(warnings: int = 0, status: int = SERVER_STATUS_AUTOCOMMIT) -> bytes:
    return b"\xfe" + _HH.pack(min(warnings, 0xFFFF), status)


def err_packet(code: int, message: str, state: str | None = None, *, protocol41: bool = True) -> bytes:
    """ERR with ``state`` or the SQLSTATE ``coordinator.errors`` gives ``code``.

    ``protocol41=False`` leaves out the '#' and SQLSTATE, for errors sent before
    the greeting (1040, 1053): the client has not negotiated CLIENT_PROTOCOL_41
    yet and libmysqlclient would read the marker as part of the message.
    """
    text = message.encode("utf-8", "replace")
    if not protocol41:
        return _ERR_HEAD.pack(0xFF, code) + text
    state_bytes = (state or sqlstate(code)).encode("ascii", "replace")[:5].ljust(5, b"0")
    return _ERR_HEAD.pack(0xFF, code) + b"#" + state_bytes + text


@lru_cache(maxsize=256)
def result_end(deprecate_eof: bool, status: int = SERVER_STATUS_AUTOCOMMIT, warnings: int = 0) -> bytes:
    """The packet after the last row: 0xFE-OK with 0 affected rows, or EOF."""
    if deprecate_eof:
        return b"\xfe\x00\x00" + _HH.pack(status, min(warnings, 0xFFFF))
    return eof_packet(warnings, status)


# ---------------------------------------------------------------- column definitions


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@lru_cache(maxsize=8192)
def column_definition(column: Column) -> bytes:
    """ColumnDefinition41 payload (cached: the same columns repeat across answers)."""
    return b"".join(
        (
            b"\x03def",
            lenenc_bytes(_enc(column.schema)),
            lenenc_bytes(_enc(column.table)),
            lenenc_bytes(_enc(column.org_table)),
            lenenc_bytes(_enc(column.name)),
            lenenc_bytes(_enc(column.org_name)),
            _COLUMN_TAIL.pack(
                0x0C, column.charset, column.length & 0xFFFFFFFF, column.type, column.flags, column.decimals
            ),
        )
    )


def result_header(
    columns: Sequence[Column], deprecate_eof: bool, status: int = SERVER_STATUS_AUTOCOMMIT
) -> tuple[bytes, ...]:
    """Column count, the definitions, and the EOF that older clients expect after them."""
    return _result_header(tuple(columns), deprecate_eof, status)


@lru_cache(maxsize=4096)
def _result_header(columns: tuple[Column, ...], deprecate_eof: bool, status: int) -> tuple[bytes, ...]:
    # Cached whole: the same few column lists answer most statements.
    out = [lenenc_int(len(columns))]
    out.extend(column_definition(c) for c in columns)
    if not deprecate_eof:
        out.append(eof_packet(0, status))
    return tuple(out)


# ---------------------------------------------------------------- text values


def format_float(value: float) -> str:
    """A double as the server prints it: the shortest digits that read back the same value.

    Fixed notation while the decimal point sits within 15 digits left of / 14
    zeros right of the digits (or inside them), else ``<d>[.<ddd>]e<exp>``:
    ``1e14`` -> ``100000000000000``, ``1e15`` -> ``1e15``, ``1.5e-7`` -> ``0.00000015``,
    ``1e-16`` -> ``1e-16`` (compared with MariaDB 10.11's output).
    """
    magnitude = abs(value)
    if 1e-4 <= magnitude < 1e15:
        text = repr(value)  # Python prints this range in fixed notation already
        return text[:-2] if text.endswith(".0") else text
    if value != value or magnitude == float("inf"):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")  # MySQL has none; strtod reads these
    if value == 0:
        return "-0" if str(value)[0] == "-" else "0"
    exact = Decimal(repr(magnitude)).normalize()
    digits = "".join(map(str, exact.as_tuple().digits))
    decpt = len(digits) + int(exact.as_tuple().exponent)
    sign = "-" if value < 0 else ""
    if -14 <= decpt <= 15 or 0 < decpt < len(digits):
        return sign + format(exact, "f")
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{decpt - 1}"


def format_datetime(value: dt.datetime) -> str:
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return f"{text}.{value.microsecond:06d}" if value.microsecond else text


def format_timedelta(value: dt.timedelta) -> str:
    """``[-]HH:MM:SS[.ffffff]``; hours go past 24 (MySQL TIME spans +-838 hours)."""
    sign = ""
    if value < dt.timedelta(0):
        sign, value = "-", -value
    seconds = value.days * 86400 + value.seconds
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{value.microseconds:06d}" if value.microseconds else text


def format_time(value: dt.time) -> str:
    text = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return f"{text}.{value.microsecond:06d}" if value.microsecond else text


def encode_str(value: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError:
        # Text decoded with surrogateescape goes back to its bytes; anything else
        # unencodable (a lone surrogate) is replaced rather than failing the answer.
        try:
            return value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace")


def text_value(value: Any) -> bytes:
    """One non-NULL value as the bytes MySQL's text protocol carries."""
    kind = type(value)
    if kind is str:
        return encode_str(value)
    if kind is int:
        return str(value).encode()
    if kind is bytes:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return b"1" if value else b"0"
    if kind is float:
        return format_float(value).encode()
    if kind is Decimal:
        return format(value, "f").encode()
    if isinstance(value, dt.datetime):
        return format_datetime(value).encode()
    if isinstance(value, dt.date):
        return value.isoformat().encode()
    if isinstance(value, dt.timedelta):
        return format_timedelta(value).encode()
    if isinstance(value, dt.time):
        return format_time(value).encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(int(value)).encode()
    if isinstance(value, float):
        return format_float(value).encode()
    return encode_str(str(value))


def text_row(row: Iterable[Any]) -> bytes:
    """A text-protocol row payload."""
    parts: list[bytes] = []
    append = parts.append
    for value in row:
        if value is None:
            append(b"\xfb")
            continue
        raw = text_value(value)
        n = len(raw)
        append(bytes((n,)) if n < 0xFB else lenenc_int(n))
        append(raw)
    return b"".join(parts)


def text_rows(rows: Iterable[Iterable[Any]]) -> Iterator[bytes]:
    """Row payloads one by one, for bounded-memory streaming."""
    for row in rows:
        yield text_row(row)


# ---------------------------------------------------------------- binary values


def _from_text(value: bytes | str, time: bool = False) -> Any:
    """A temporal in its text form (a relaying backend's row) as a date, datetime or timedelta."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    try:
        if time:
            negative = text.startswith("-")
            h, m, s = text.lstrip("-").split(":")
            delta = dt.timedelta(hours=int(h), minutes=int(m), seconds=float(s))
            return -delta if negative else delta
        if len(text) <= 10:
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None  # the zero date (0000-00-00) and friends


_TYPE_NAMES = {
    **dict.fromkeys(INTEGER_TYPES, "BIGINT"),
    FLOAT: "DOUBLE",
    DOUBLE: "DOUBLE",
    DECIMAL: "DECIMAL",
    NEWDECIMAL: "DECIMAL",
    DATE: "DATE",
    NEWDATE: "DATE",
    DATETIME: "DATETIME",
    TIMESTAMP: "DATETIME",
    TIME: "TIME",
    JSON: "JSON",
    NULL: "NULL",
}


def type_name(column: Column) -> str:
    """A relayed column's type as the gRPC API names types."""
    if column.charset == BINARY_CHARSET and column.type in (*BLOB_TYPES, VAR_STRING, STRING, GEOMETRY, BIT):
        return "BLOB"
    return _TYPE_NAMES.get(column.type, "VARCHAR")


def python_value(column: Column, raw: bytes | None) -> Any:
    """A text-protocol value of a relayed column as the gRPC API carries it
    (int, float, bytes for binary strings, str for the rest: exact decimals and temporals as text)."""
    if raw is None:
        return None
    name = type_name(column)
    if name == "BIGINT":
        return int(raw)
    if name == "DOUBLE":
        return float(raw)
    if name == "BLOB":
        return raw
    return raw.decode("utf-8", "surrogateescape")


def _binary_datetime(value: Any) -> bytes:
    """DATE/DATETIME/TIMESTAMP: length 0 (zero date), 4 (date), 7 (+time), 11 (+microseconds)."""
    if isinstance(value, (bytes, str)):
        value = _from_text(value)
    if isinstance(value, dt.datetime):
        if value.microsecond:
            return struct.pack(
                "<BHBBBBBI",
                11,
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        if value.hour or value.minute or value.second:
            return struct.pack(
                "<BHBBBBB", 7, value.year, value.month, value.day, value.hour, value.minute, value.second
            )
        return struct.pack("<BHBB", 4, value.year, value.month, value.day)
    if isinstance(value, dt.date):
        return struct.pack("<BHBB", 4, value.year, value.month, value.day)
    return b"\x00"  # a value that is no date (e.g. the string '0000-00-00') is the zero date


def _binary_time(value: Any) -> bytes:
    """TIME: length 0 (zero), 8 (sign, days, h, m, s), 12 (+microseconds)."""
    if isinstance(value, (bytes, str)):
        value = _from_text(value, time=True)
    if isinstance(value, dt.time):
        value = dt.timedelta(
            hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
        )
    if not isinstance(value, dt.timedelta):
        return b"\x00"
    negative = value < dt.timedelta(0)
    if negative:
        value = -value
    days, seconds, micros = value.days, value.seconds, value.microseconds
    if not (days or seconds or micros):
        return b"\x00"
    hms = (seconds // 3600, seconds // 60 % 60, seconds % 60)
    if micros:
        return struct.pack("<BBIBBBI", 12, negative, days, *hms, micros)
    return struct.pack("<BBIBBB", 8, negative, days, *hms)


def _packer(fmt: str) -> Callable[[Any], bytes]:
    pack = struct.Struct(fmt).pack
    return lambda value: pack(value)


_SIGNED = {
    TINY: _packer("<b"),
    SHORT: _packer("<h"),
    YEAR: _packer("<h"),
    LONG: _packer("<i"),
    INT24: _packer("<i"),
    LONGLONG: _packer("<q"),
}
_UNSIGNED = {
    TINY: _packer("<B"),
    SHORT: _packer("<H"),
    YEAR: _packer("<H"),
    LONG: _packer("<I"),
    INT24: _packer("<I"),
    LONGLONG: _packer("<Q"),
}
_FLOAT = _packer("<f")
_DOUBLE = _packer("<d")


def binary_value(column: Column, value: Any) -> bytes:
    """One non-NULL value in the binary protocol's form for ``column.type``.

    Integers are fixed-width little endian (signed unless UNSIGNED_FLAG); FLOAT
    and DOUBLE are IEEE 754; temporals use the compact forms above; everything
    else (DECIMAL, strings, blobs, JSON, BIT, ...) is ``string<lenenc>`` of the
    text form. Raises ``ValueError`` when the value does not fit the type.
    """
    kind = column.type
    try:
        if kind in INTEGER_TYPES:
            table = _UNSIGNED if column.flags & UNSIGNED_FLAG else _SIGNED
            return table[kind](int(value))
        if kind == DOUBLE:
            return _DOUBLE(float(value))
        if kind == FLOAT:
            return _FLOAT(float(value))
    except (struct.error, TypeError, OverflowError) as e:
        raise ValueError(f"value {value!r} does not fit column {column.name!r} of type {kind}") from e
    if kind in (DATE, DATETIME, TIMESTAMP, NEWDATE):
        return _binary_datetime(value)
    if kind == TIME:
        return _binary_time(value)
    return lenenc_bytes(text_value(value))


def binary_row(columns: Sequence[Column], row: Sequence[Any]) -> bytes:
    """A binary-protocol row payload: 0x00, NULL bitmap (offset 2), values."""
    bitmap = bytearray((len(columns) + 9) // 8)
    values: list[bytes] = []
    for i, (column, value) in enumerate(zip(columns, row, strict=True)):
        if value is None or column.type == NULL:
            bit = i + 2
            bitmap[bit >> 3] |= 1 << (bit & 7)
        else:
            values.append(binary_value(column, value))
    return b"\x00" + bytes(bitmap) + b"".join(values)


def binary_rows(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    for row in rows:
        yield binary_row(columns, row)


def result_set(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    deprecate_eof: bool,
    status: int = SERVER_STATUS_AUTOCOMMIT,
    warnings: int = 0,
    binary: bool = False,
) -> Iterator[bytes]:
    """Every payload of one result set, header to terminator, lazily."""
    yield from result_header(columns, deprecate_eof, status)
    yield from (binary_rows(columns, rows) if binary else text_rows(rows))
    yield result_end(deprecate_eof, status, warnings)
