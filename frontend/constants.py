"""FROM-less SELECTs of constants, evaluated the way MySQL types them.

``SELECT CAST('1.5' AS DECIMAL(30,10)), DATE '2026-11-27', 18446744073709551615``
must come back as DECIMAL, DATE and BIGINT UNSIGNED, exactly: evaluated by the
embedded backend they would pass through SQLite's 64-bit integers, doubles and
text. ``fold`` computes such a row in Python when every projection is a
literal, NULL, ``X'..'``, a negation or a CAST of one; anything else returns
None and goes to the backend.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from sqlglot import exp

from frontend.sqltext import source_labels

_INT_TYPES = {
    exp.DataType.Type.BIGINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.UBIGINT,
    exp.DataType.Type.UINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.TINYINT,
}
_TIME = re.compile(r"^(-)?(?:(\d+) )?(\d{1,3}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6}))?)?$")


# Folded on the event loop: only short literals, whose conversions cost microseconds
# (int('9' * 100000) and Decimal('1e600000') to int are quadratic); longer ones, and
# anything MySQL reads with a warning, go to the backend, which computes them in a worker.
MAX_FOLDED_TEXT = 100
_PLAIN_INTEGER = re.compile(r"^\s*[+-]?\d{1,20}\s*$")


class NotConstant(Exception):
    """The projection is not one ``fold`` evaluates."""


def _number(text: str) -> int | Decimal | float:
    """A numeric literal as MySQL types it: integer, DECIMAL, or DOUBLE with an exponent."""
    if len(text) > MAX_FOLDED_TEXT:
        raise NotConstant("long literal")
    if "e" in text.lower():
        return float(text)
    if "." in text:
        return Decimal(text)
    return int(text)


def _time(text: str, digits: int) -> dt.timedelta:
    m = _TIME.match(text.strip())
    if m is None:
        raise NotConstant(text)
    sign, days, hours, minutes, seconds, fraction = m.groups()
    micros = int((fraction or "").ljust(6, "0")[:6] or 0)
    micros -= micros % 10 ** (6 - digits)
    value = dt.timedelta(
        days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=int(seconds or 0), microseconds=micros
    )
    return -value if sign else value


def _cast(value: Any, to: exp.DataType) -> Any:
    if value is None:
        return None
    kind = to.this
    params = [int(p.name) for p in to.expressions if p.name.isdigit()]
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(text) > MAX_FOLDED_TEXT:
        raise NotConstant("long value")
    try:
        if kind in _INT_TYPES:
            if isinstance(value, str) and not _PLAIN_INTEGER.match(text):
                raise NotConstant(text)  # MySQL reads its leading digits, with a warning: the backend's to say
            number = Decimal(text.strip())
            if abs(number.adjusted()) > 40:
                raise NotConstant(text)
            return int(number.to_integral_value())
        if kind in (exp.DataType.Type.DECIMAL, exp.DataType.Type.BIGDECIMAL):
            scale = params[1] if len(params) > 1 else 0
            with localcontext(prec=66):  # MySQL's DECIMAL has up to 65 digits
                return Decimal(text.strip()).quantize(Decimal(1).scaleb(-scale))
        if kind in (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
            return float(text)
        if kind == exp.DataType.Type.DATE:
            return dt.date.fromisoformat(text.strip()[:10])
        if kind in (exp.DataType.Type.DATETIME, exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME64):
            stamp = dt.datetime.fromisoformat(text.strip())
            digits = params[0] if params else 0
            return stamp.replace(microsecond=stamp.microsecond - stamp.microsecond % 10 ** (6 - digits))
        if kind == exp.DataType.Type.TIME:
            return _time(text, params[0] if params else 0)
        if kind in (exp.DataType.Type.CHAR, exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT):
            return text
        if kind in (exp.DataType.Type.BINARY, exp.DataType.Type.VARBINARY):
            return value if isinstance(value, bytes) else text.encode()
    except (InvalidOperation, ValueError) as e:
        raise NotConstant(text) from e
    raise NotConstant(kind)


def value_of(node: exp.Expr) -> Any:
    if isinstance(node, exp.Alias):
        return value_of(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return int(node.this)
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else _number(node.this)
    if isinstance(node, exp.HexString):
        return bytes.fromhex(node.this if len(node.this) % 2 == 0 else "0" + node.this)
    if isinstance(node, exp.Neg):
        inner = value_of(node.this)
        if isinstance(inner, int | float | Decimal):
            return -inner
    if isinstance(node, exp.Cast) and isinstance(node.to, exp.DataType):
        return _cast(value_of(node.this), node.to)
    raise NotConstant(type(node).__name__)


def fold(query: exp.Select) -> tuple[Any, ...] | None:
    """The one row of a SELECT of constants, or None if it is not one."""
    try:
        return tuple(value_of(p) for p in query.expressions)
    except NotConstant:
        return None


def labels(text: str, items: list[exp.Expr]) -> list[str]:
    """The column labels MySQL gives a SELECT's ``items`` written as ``text``: an
    alias, else the item as the client wrote it (``sqltext.source_labels``),
    else (text not read) as sqlglot prints it."""
    written = source_labels(text)
    if written is None or len(written) != len(items):
        written = None
    return [
        p.alias_or_name if p.alias else (written[i] if written is not None else p.sql(dialect="mysql"))
        for i, p in enumerate(items)
    ]
