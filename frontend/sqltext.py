"""Pure helpers over MySQL statement text: comments, quoting, redaction.

No parsing beyond what they say: the statement modules recognise their
statements with small regular expressions over ``strip_comments`` output, so
cluster statements (KILL, SHOW PROCESSLIST) never pay for a sqlglot parse.
"""

from __future__ import annotations

import re

_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "Z": "\x1a"}

# Building blocks of the statement patterns.
FLAGS = re.IGNORECASE | re.DOTALL
NAME = r"(?:'(?:[^'\\]|\\.|'')*'|`(?:[^`]|``)*`|\"(?:[^\"\\]|\\.)*\"|[A-Za-z0-9_.$-]+)"
USER = rf"({NAME})(?:\s*@\s*{NAME})?"
STRING = r"'((?:[^'\\]|\\.|'')*)'"


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


def unquote(name: str) -> str:
    """``'a'``, ``"a"`` or ```a``` -> ``a``; a bare name stays as it is."""
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
            if c == "\\" and quote != "`" and i + 1 < n:  # no escapes inside a `name`
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


def statement_text(sql: str) -> str:
    """What the statement patterns match against: no comments, no trailing ``;``."""
    return strip_comments(sql).strip().rstrip(";").strip()


_SECRET_STATEMENT = re.compile(r"\b(?:identified|password)\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'")


def redact(sql: str) -> str:
    """What processlist and logs may show: no password literals (MySQL shows <secret>)."""
    if _SECRET_STATEMENT.search(sql):
        return _QUOTED.sub("'<secret>'", sql)
    return sql


def _like_segments(pattern: str) -> list[list[str | None]]:
    """Split a LIKE pattern at ``%``: each segment is a list of characters,
    ``None`` standing for ``_`` (any one character)."""
    segments: list[list[str | None]] = [[]]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if c == "%":
            segments.append([])
        else:
            segments[-1].append(None if c == "_" else c.lower())
        i += 1
    return segments


def _fits(segment: list[str | None], text: str, at: int) -> bool:
    return all(ch is None or ch == text[at + k] for k, ch in enumerate(segment))


def like(pattern: str, text: str) -> bool:
    """SQL LIKE (case-insensitive, ``\\`` escapes) without backtracking: the
    segments between ``%`` are placed leftmost-first, which is optimal, so the
    cost is O(len(pattern) * len(text)) whatever the pattern."""
    segments = _like_segments(pattern)
    text = text.lower()
    if len(segments) == 1:
        return len(segments[0]) == len(text) and _fits(segments[0], text, 0)
    first, *middle, last = segments
    if len(first) + len(last) > len(text) or not _fits(first, text, 0):
        return False
    end = len(text) - len(last)
    if not _fits(last, text, end):
        return False
    at = len(first)
    for segment in middle:
        while at + len(segment) <= end and not _fits(segment, text, at):
            at += 1
        if at + len(segment) > end:
            return False
        at += len(segment)
    return True
