"""Lexical facts about SQL text the protocol layer needs, and value literals.

- ``placeholders`` / ``split_placeholders``: the ``?`` markers of a prepared
  statement, skipping those inside quotes, backticks and comments.
- ``literal``: a Python value as a MySQL literal, for substituting parameters.

Tokens skipped (MySQL's default SQL mode, backslash escapes on)::

    '...'   "..."   with \\x escapes and doubled quotes
    `...`           with doubled backticks
    /* ... */       except /*! ... */ and /*M! ... */, whose body MySQL runs as SQL
    -- ...          "--" then whitespace, to the end of the line
    # ...           to the end of the line

An unterminated quote or comment runs to the end of the text. The scan is one
regex pass whose repeats are possessive, so it is linear in the text length
whatever the input.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

_TOKEN = re.compile(
    r"""
      '(?:[^'\\]|\\.|'')*+(?:'|\\?\Z)
    | "(?:[^"\\]|\\.|"")*+(?:"|\\?\Z)
    | `(?:[^`]|``)*+(?:`|\Z)
    | /\*(?![!]|M!)(?:[^*]|\*(?!/))*+(?:\*/|\Z)
    | --(?=\s|\Z)[^\n]*+
    | \#[^\n]*+
    | (?P<mark>[?;])
    """,
    re.VERBOSE | re.DOTALL,
)


def _marks(sql: str, which: str) -> list[int]:
    return [m.start() for m in _TOKEN.finditer(sql) if m.group("mark") == which]


def placeholders(sql: str) -> list[int]:
    """Offsets of the ``?`` parameter markers."""
    return _marks(sql, "?")


def split_placeholders(sql: str) -> list[str]:
    """The text around the markers: ``len(result) == param_count + 1``."""
    segments = []
    start = 0
    for offset in placeholders(sql):
        segments.append(sql[start:offset])
        start = offset + 1
    segments.append(sql[start:])
    return segments


# ---------------------------------------------------------------- literals

_ESCAPES = str.maketrans({"\0": "\\0", "\n": "\\n", "\r": "\\r", "\\": "\\\\", "'": "\\'", '"': '\\"', "\x1a": "\\Z"})


def quote_string(text: str) -> str:
    """``'...'`` with the escapes of mysql_real_escape_string: \\0 \\n \\r \\\\ \\' \\" \\Z."""
    return "'" + text.translate(_ESCAPES) + "'"


def _timedelta(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    seconds = value.days * 86400 + value.seconds
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{value.microseconds:06d}" if value.microseconds else text


def literal(value: Any) -> str:
    """``value`` as a MySQL literal. Raises ``ValueError`` for NaN and infinities (SQL has none)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "X'" + bytes(value).hex() + "'"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} has no SQL literal")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} has no SQL literal")
        return format(value, "f")  # plain digits: '1E+2' would read as a DOUBLE
    if isinstance(value, dt.datetime):
        text = (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"
        )
        return f"'{text}.{value.microsecond:06d}'" if value.microsecond else f"'{text}'"
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'"
    if isinstance(value, dt.timedelta):
        return f"'{_timedelta(value)}'"
    if isinstance(value, dt.time):
        return f"'{value.isoformat()}'"
    return quote_string(str(value))


def substitute(segments: list[str], params: list[Any]) -> str:
    """Join ``split_placeholders`` output with ``params`` as literals."""
    if len(params) != len(segments) - 1:
        raise ValueError(f"{len(segments) - 1} parameters expected, {len(params)} given")
    parts = [segments[0]]
    for value, segment in zip(params, segments[1:], strict=True):
        parts.append(literal(value))
        parts.append(segment)
    return "".join(parts)
