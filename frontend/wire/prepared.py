"""Prepared statements: the per-connection registry and the COM_STMT_* packets.

COM_STMT_PREPARE::  0x16, string<EOF> statement

COM_STMT_PREPARE_OK::

    int<1>  0x00
    int<4>  statement id
    int<2>  number of columns
    int<2>  number of parameters
    int<1>  0x00
    int<2>  warnings
    then one ColumnDefinition41 per parameter, an EOF unless CLIENT_DEPRECATE_EOF,
    then one per column, an EOF unless CLIENT_DEPRECATE_EOF
    (each block, and its EOF, only when its count is not 0)

COM_STMT_EXECUTE::

    int<1>  0x17
    int<4>  statement id
    int<1>  flags                (cursor type; we open no cursors)
    int<4>  iteration count      (always 1)
    -- when the statement has parameters: --
    bytes   NULL bitmap, (n + 7) // 8 bytes, parameter i is bit i
    int<1>  new-params-bound flag
    if 1:   int<2> per parameter: type in the low byte, 0x80 in the high byte = unsigned
    values of the parameters that are neither NULL nor sent as long data

When the flag is 0 the types of the previous execute apply (libmariadb sends
them only once). A first execute without types is refused (1210).

Binary parameter values:

    TINY 1, SHORT/YEAR 2, LONG/INT24 4, LONGLONG 8 bytes, little endian
    FLOAT 4, DOUBLE 8 bytes IEEE 754
    DATE/DATETIME/TIMESTAMP  int<1> length 0|4|7|11, int<2> year, month, day, h, m, s, int<4> microseconds
    TIME                     int<1> length 0|8|12, int<1> negative, int<4> days, h, m, s, int<4> microseconds
    everything else          string<lenenc>

COM_STMT_SEND_LONG_DATA:: 0x18, int<4> statement id, int<2> parameter, string<EOF> data  (no reply)
COM_STMT_CLOSE::          0x19, int<4> statement id  (no reply)
COM_STMT_RESET::          0x1A, int<4> statement id  (OK; drops long data)
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from coordinator.errors import SqlError
from frontend.wire import results as r
from frontend.wire.commands import (
    COM_STMT_CLOSE,
    COM_STMT_EXECUTE,
    COM_STMT_PREPARE,
    COM_STMT_RESET,
    COM_STMT_SEND_LONG_DATA,
    decode_text,
)
from frontend.wire.handshake import BINARY_CHARSET, UTF8MB4_GENERAL_CI
from frontend.wire.packets import DEFAULT_MAX_ALLOWED_PACKET, Cursor, MalformedPacket
from frontend.wire.sqltext import split_placeholders, substitute

ER_UNKNOWN_STMT_HANDLER = 1243
ER_WRONG_ARGUMENTS = 1210
ER_MAX_PREPARED_STMT_COUNT_REACHED = 1461
ER_PS_MANY_PARAM = 1390
ER_NET_PACKET_TOO_LARGE = 1153

MAX_PARAMS = 65535
"""The parameter count travels as int<2>."""

UNSIGNED_PARAM = 0x8000

_PARAM_COLUMN = r.Column("?", r.VAR_STRING, 0, r.BINARY_FLAG, BINARY_CHARSET)
"""How MySQL describes a parameter it has no type for."""

_INT_FORMATS = {
    r.TINY: (struct.Struct("<b"), struct.Struct("<B")),
    r.SHORT: (struct.Struct("<h"), struct.Struct("<H")),
    r.YEAR: (struct.Struct("<h"), struct.Struct("<H")),
    r.LONG: (struct.Struct("<i"), struct.Struct("<I")),
    r.INT24: (struct.Struct("<i"), struct.Struct("<I")),
    r.LONGLONG: (struct.Struct("<q"), struct.Struct("<Q")),
}
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")
_TEXT_TYPES = frozenset({r.VARCHAR, r.VAR_STRING, r.STRING, r.ENUM, r.SET, r.JSON})
_BYTES_TYPES = frozenset({r.TINY_BLOB, r.MEDIUM_BLOB, r.LONG_BLOB, r.BLOB, r.GEOMETRY, r.BIT})
_DECIMAL_TYPES = frozenset({r.DECIMAL, r.NEWDECIMAL})
_DATE_TYPES = frozenset({r.DATE, r.DATETIME, r.TIMESTAMP, r.NEWDATE})
_STMT_HEAD = struct.Struct("<IBI")


@dataclass(eq=False)
class PreparedStatement:
    id: int
    sql: str
    segments: list[str]
    """The text around the ``?`` markers (``param_count + 1`` pieces)."""
    columns: list[r.Column] = field(default_factory=list)
    param_types: list[int] | None = None
    """Type words of the last execute that bound them: type | 0x8000 when unsigned."""
    long_data: dict[int, bytearray] = field(default_factory=dict)
    long_data_size: int = 0
    long_data_error: SqlError | None = None
    """What went wrong in COM_STMT_SEND_LONG_DATA (which has no reply): the next execute reports it."""
    relayed: bool = False
    """It lives on the backend server (a relaying backend): its commands are relayed, with ids mapped."""

    @property
    def param_count(self) -> int:
        return len(self.segments) - 1

    def reset(self) -> None:
        self.long_data.clear()
        self.long_data_size = 0
        self.long_data_error = None


@dataclass
class Execution:
    statement: PreparedStatement
    flags: int
    iteration_count: int
    params: list[Any]

    def sql(self) -> str:
        """The statement with its parameters substituted as literals."""
        return substitute(self.statement.segments, self.params)


def unknown_statement(stmt_id: int, command: str) -> SqlError:
    return SqlError(ER_UNKNOWN_STMT_HANDLER, f"Unknown prepared statement handler ({stmt_id}) given to {command}")


class StatementRegistry:
    """The prepared statements of one connection."""

    def __init__(self, max_statements: int = 1024, max_long_data: int = DEFAULT_MAX_ALLOWED_PACKET) -> None:
        self.max_statements = max_statements
        self.max_long_data = max_long_data
        self._statements: dict[int, PreparedStatement] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._statements)

    def prepare(self, sql: str, columns: Sequence[r.Column] = (), relayed: bool = False) -> PreparedStatement:
        """Register ``sql``; raises SqlError 1461 past ``max_statements``, 1390 past 65535 markers.
        A ``relayed`` statement is the server's to read: only its id and text are kept here."""
        if len(self._statements) >= self.max_statements:
            raise SqlError(
                ER_MAX_PREPARED_STMT_COUNT_REACHED,
                f"Can't create more than max_prepared_stmt_count statements (current value: {self.max_statements})",
            )
        segments = [sql] if relayed else split_placeholders(sql)
        if len(segments) - 1 > MAX_PARAMS:
            raise SqlError(ER_PS_MANY_PARAM, "Prepared statement contains too many placeholders")
        stmt_id = self._next_id
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        while stmt_id in self._statements:  # wrapped around: skip ids still open (at most max_statements)
            stmt_id = self._next_id
            self._next_id = self._next_id % 0xFFFFFFFF + 1
        stmt = PreparedStatement(stmt_id, sql, segments, list(columns), relayed=relayed)
        self._statements[stmt_id] = stmt
        return stmt

    def get(self, stmt_id: int, command: str = "mysqld_stmt_execute") -> PreparedStatement:
        stmt = self._statements.get(stmt_id)
        if stmt is None:
            raise unknown_statement(stmt_id, command)
        return stmt

    def close(self, payload: bytes) -> PreparedStatement | None:
        """COM_STMT_CLOSE: no reply, unknown ids ignored."""
        cur = Cursor(payload)
        if cur.u8() != COM_STMT_CLOSE:
            raise MalformedPacket("not a COM_STMT_CLOSE")
        return self._statements.pop(cur.u32(), None)

    def forget(self, stmt_id: int) -> None:
        """A relayed prepare the server refused: its id goes back."""
        self._statements.pop(stmt_id, None)

    def peek(self, payload: bytes) -> PreparedStatement | None:
        """The statement a COM_STMT_* payload names, if any (no parse beyond the id)."""
        return self._statements.get(int.from_bytes(payload[1:5], "little")) if len(payload) >= 5 else None

    def reset(self, payload: bytes) -> PreparedStatement:
        """COM_STMT_RESET: drops the statement's long data; the caller answers OK."""
        cur = Cursor(payload)
        if cur.u8() != COM_STMT_RESET:
            raise MalformedPacket("not a COM_STMT_RESET")
        stmt = self.get(cur.u32(), "mysqld_stmt_reset")
        stmt.reset()
        return stmt

    def clear(self) -> None:
        """COM_RESET_CONNECTION / COM_CHANGE_USER: every statement goes."""
        self._statements.clear()

    def send_long_data(self, payload: bytes) -> None:
        """COM_STMT_SEND_LONG_DATA: append to the parameter's data; no reply.

        Errors cannot be answered here (the client reads no reply), so an
        unknown statement is ignored and an overflow is reported by the next execute.
        """
        cur = Cursor(payload)
        if cur.u8() != COM_STMT_SEND_LONG_DATA:
            raise MalformedPacket("not a COM_STMT_SEND_LONG_DATA")
        stmt_id = cur.u32()
        param = cur.u16()
        stmt = self._statements.get(stmt_id)
        if stmt is None or stmt.long_data_error is not None:
            return
        if param >= stmt.param_count:
            stmt.long_data_error = SqlError(ER_WRONG_ARGUMENTS, "Incorrect arguments to mysqld_stmt_send_long_data")
            return
        size = cur.remaining
        if stmt.long_data_size + size > self.max_long_data:
            stmt.long_data.clear()  # free it now: the execute fails anyway
            stmt.long_data_size = 0
            stmt.long_data_error = SqlError(
                ER_NET_PACKET_TOO_LARGE,
                "Parameter of prepared statement which is set through mysql_send_long_data() is longer than "
                "'max_allowed_packet' bytes",
            )
            return
        stmt.long_data.setdefault(param, bytearray()).extend(memoryview(payload)[cur.pos :])
        stmt.long_data_size += size

    def parse_execute(self, payload: bytes, charset: int = UTF8MB4_GENERAL_CI) -> Execution:
        """COM_STMT_EXECUTE -> the statement and its decoded parameters.

        Raises ``MalformedPacket`` on truncation, SqlError 1243 (unknown
        statement), 1210 (no parameter types ever bound) or 1153 (long data too big).
        Long data is consumed: the next execute starts without it.
        """
        cur = Cursor(payload)
        if cur.u8() != COM_STMT_EXECUTE:
            raise MalformedPacket("not a COM_STMT_EXECUTE")
        stmt_id, flags, iterations = cur.unpack(_STMT_HEAD)
        stmt = self.get(stmt_id)
        count = stmt.param_count
        if count == 0:
            return Execution(stmt, flags, iterations, [])
        error = stmt.long_data_error
        if error is not None:
            stmt.reset()  # reported once; the statement works again afterwards
            raise error
        bitmap = cur.take((count + 7) // 8)
        if cur.u8():
            raw = cur.take(2 * count)
            types = list(struct.unpack(f"<{count}H", raw))
        elif stmt.param_types is not None:
            types = stmt.param_types
        else:
            raise SqlError(ER_WRONG_ARGUMENTS, "Incorrect arguments to mysqld_stmt_execute")
        params: list[Any] = []
        long_data = stmt.long_data
        for i, word in enumerate(types):
            if bitmap[i >> 3] & (1 << (i & 7)):
                params.append(None)
            elif i in long_data:
                params.append(_from_bytes(word & 0xFF, bytes(long_data[i]), charset))
            else:
                params.append(read_param(cur, word, charset))
        stmt.param_types = types  # only once the packet parsed: a bad one must not poison later executes
        if long_data:
            stmt.reset()
        return Execution(stmt, flags, iterations, params)


def prepare_ok(stmt: PreparedStatement, deprecate_eof: bool, warnings: int = 0) -> list[bytes]:
    """COM_STMT_PREPARE_OK and its parameter/column definitions (no EOFs with DEPRECATE_EOF)."""
    columns = stmt.columns
    out = [
        struct.pack("<BIHHBH", 0, stmt.id, len(columns), stmt.param_count, 0, min(warnings, 0xFFFF)),
    ]
    if stmt.param_count:
        definition = r.column_definition(_PARAM_COLUMN)
        out.extend([definition] * stmt.param_count)
        if not deprecate_eof:
            out.append(r.eof_packet())
    if columns:
        out.extend(r.column_definition(c) for c in columns)
        if not deprecate_eof:
            out.append(r.eof_packet())
    return out


def parse_prepare(payload: bytes) -> bytes:
    """COM_STMT_PREPARE's statement, as bytes (decode with ``commands.decode_text``)."""
    if not payload or payload[0] != COM_STMT_PREPARE:
        raise MalformedPacket("not a COM_STMT_PREPARE")
    return payload[1:]


# ---------------------------------------------------------------- parameter values


def _from_bytes(kind: int, raw: bytes, charset: int) -> Any:
    """A string-like parameter (or long data) as Python: bytes for binary types, else text/Decimal."""
    if kind in _BYTES_TYPES:
        return raw
    if kind in _DECIMAL_TYPES:
        try:
            return Decimal(raw.decode("ascii"))
        except (UnicodeDecodeError, InvalidOperation) as e:
            raise MalformedPacket(f"invalid DECIMAL parameter {raw[:40]!r}") from e
    return decode_text(raw, charset)


def _read_datetime(cur: Cursor, kind: int) -> Any:
    length = cur.u8()
    if length == 0:
        return "0000-00-00" if kind == r.DATE else "0000-00-00 00:00:00"
    if length not in (4, 7, 11):
        raise MalformedPacket(f"invalid date length {length}")
    year = cur.u16()
    month, day = cur.u8(), cur.u8()
    hour = minute = second = micro = 0
    if length >= 7:
        hour, minute, second = cur.u8(), cur.u8(), cur.u8()
    if length == 11:
        micro = cur.u32()
    try:
        if kind == r.DATE:  # a DATE is a date, whatever length it came in (Connector/J sends 7 bytes)
            return dt.date(year, month, day)
        return dt.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        # A date Python cannot hold (zero month/day, year 0): pass MySQL's own text on.
        text = f"{year:04d}-{month:02d}-{day:02d}"
        if kind == r.DATE:
            return text
        text += f" {hour:02d}:{minute:02d}:{second:02d}"
        return f"{text}.{micro:06d}" if micro else text


def _read_time(cur: Cursor) -> dt.timedelta:
    length = cur.u8()
    if length == 0:
        return dt.timedelta(0)
    if length not in (8, 12):
        raise MalformedPacket(f"invalid time length {length}")
    negative = cur.u8()
    days = cur.u32()
    hour, minute, second = cur.u8(), cur.u8(), cur.u8()
    micro = cur.u32() if length == 12 else 0
    try:
        value = dt.timedelta(days=days, hours=hour, minutes=minute, seconds=second, microseconds=micro)
    except OverflowError as e:
        raise MalformedPacket("TIME parameter out of range") from e
    return -value if negative else value


def read_param(cur: Cursor, word: int, charset: int = UTF8MB4_GENERAL_CI) -> Any:
    """One binary-protocol parameter of type word ``word`` (type | 0x8000 if unsigned)."""
    kind = word & 0xFF
    formats = _INT_FORMATS.get(kind)
    if formats is not None:
        fmt = formats[1] if word & UNSIGNED_PARAM else formats[0]
        return cur.unpack(fmt)[0]
    if kind == r.DOUBLE:
        return cur.unpack(_DOUBLE)[0]
    if kind == r.FLOAT:
        return cur.unpack(_FLOAT)[0]
    if kind == r.NULL:
        return None
    if kind in _DATE_TYPES:
        return _read_datetime(cur, kind)
    if kind == r.TIME:
        return _read_time(cur)
    if kind in _TEXT_TYPES or kind in _BYTES_TYPES or kind in _DECIMAL_TYPES:
        return _from_bytes(kind, cur.lenenc_bytes(), charset)
    raise MalformedPacket(f"unknown parameter type {kind}")
