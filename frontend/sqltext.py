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


# ------------------------------------------------------------------ column labels as the client wrote them

MAX_LABELLED_STATEMENT = 64 * 1024  # longer statements keep the engine's labels (the scan stays cheap)
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_WORD_END = re.compile(r"[^A-Za-z0-9_$\x80-\U0010ffff]")  # the first character after a word
# Words that end a SELECT's select list at depth 0.
_LIST_END = frozenset(
    {"FROM", "INTO", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "UNION", "EXCEPT", "INTERSECT", "WINDOW",
     "FOR", "LOCK", "PROCEDURE"}
)  # fmt: skip
_SELECT_MODIFIERS = frozenset(
    {"ALL", "DISTINCT", "DISTINCTROW", "HIGH_PRIORITY", "STRAIGHT_JOIN", "SQL_SMALL_RESULT", "SQL_BIG_RESULT",
     "SQL_BUFFER_RESULT", "SQL_CACHE", "SQL_NO_CACHE", "SQL_CALC_FOUND_ROWS"}
)  # fmt: skip


def _skip_quoted(sql: str, i: int) -> int:
    """The index after the quoted text starting at ``sql[i]`` (backslash escapes outside ``name``)."""
    quote, n = sql[i], len(sql)
    i += 1
    while i < n:
        c = sql[i]
        if c == "\\" and quote != "`":
            i += 2
            continue
        if c == quote:
            if sql[i + 1 : i + 2] == quote:  # doubled: one quote character
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _skip_comment(sql: str, i: int) -> int:
    """The index after a comment starting at ``sql[i]``, or ``i`` when none starts there."""
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    if sql[i] == "#" or (sql.startswith("--", i) and (i + 2 == len(sql) or sql[i + 2] in " \t\r\n")):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    return i


def select_list_spans(sql: str) -> list[tuple[int, int]] | None:
    """The [start, end) of each item of the outermost SELECT's select list in
    ``sql`` (a SELECT, or WITH ... SELECT), or None for any other statement.
    An item spans its first token to its last (comments around it are not its
    text). One pass that stops where the list ends: linear in what it reads."""
    if len(sql) > MAX_LABELLED_STATEMENT:
        return None
    n, i, depth = len(sql), 0, 0
    spans: list[tuple[int, int]] = []
    started = False  # past the outermost SELECT
    item = -1  # the current item's first token (-1: none yet)
    last = -1  # the end of the current item's last token
    modifiers = True  # the words right after SELECT may be its modifiers
    first_word = True
    while i < n:
        c = sql[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c in "/#-":
            after = _skip_comment(sql, i)
            if after != i:
                i = after
                continue
        if c in _WORD_CHARS or ord(c) > 127:
            end = _WORD_END.search(sql, i + 1)
            j = n if end is None else end.start()
            word = sql[i:j].upper()
            named = i > 0 and sql[i - 1] in ".@"  # t.from, @@select: part of a name
            if not started:
                if first_word and word not in ("SELECT", "WITH"):
                    return None
                first_word = False
                started = depth == 0 and word == "SELECT"
                i = j
                continue
            if depth == 0 and not named:
                if modifiers and item < 0 and word in _SELECT_MODIFIERS:
                    i = j
                    continue
                if word in _LIST_END:
                    break
        elif not started:
            if first_word:
                return None  # ( SELECT ...), VALUES, anything else: not labelled here
            depth += c == "("
            depth -= c == ")"
            j = _skip_quoted(sql, i) if c in "'\"`" else i + 1
            i = j
            continue
        elif c in "'\"`":
            j = _skip_quoted(sql, i)
        else:
            j = i + 1
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    break
            elif depth == 0 and c == ",":
                spans.append((item, last))
                item, last, i = -1, -1, j
                continue
            elif depth == 0 and c == ";":
                break
        modifiers = modifiers and item < 0 and c.isalpha()
        if item < 0:
            item = i
        last = j
        i = j
    if not started or item < 0:
        return None
    spans.append((item, last))
    return spans


_STRINGS = re.compile(r"""(?:_[A-Za-z0-9]+\s*|[Nn])?((?:'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")\s*)+""", re.DOTALL)
_ONE_STRING = re.compile(r"""'((?:[^'\\]|\\.|'')*)'|"((?:[^"\\]|\\.|"")*)\"""", re.DOTALL)
_CONSTANT_WORDS = {"NULL": "NULL", "TRUE": "TRUE", "FALSE": "FALSE"}
_MAX_PAREN_STRIPS = 8


def _wrapped(text: str) -> bool:
    """``text`` is one parenthesised group, ``( ... )``, not a subquery."""
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        return False
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            i = _skip_quoted(text, i)
            continue
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and i < n - 1:
            return False  # (a) + (b): the first group closes early
        i += 1
    inner = text[1:-1].lstrip().upper()
    return not inner.startswith(("SELECT", "WITH", "VALUES"))


def label_of(text: str) -> str:
    """MySQL's name for an unaliased select-list item written as ``text``: a
    string literal's value (adjacent ones joined), NULL/TRUE/FALSE in capitals,
    the inside of redundant parentheses, otherwise the text as written."""
    for _ in range(_MAX_PAREN_STRIPS):
        if not _wrapped(text):
            break
        text = text[1:-1].strip()
    if (word := _CONSTANT_WORDS.get(text.upper())) is not None:
        return word
    if text[:1] in "'\"_Nn" and _STRINGS.fullmatch(text):
        return "".join(
            unescape(m.group(1), "'") if m.group(1) is not None else unescape(m.group(2), '"')
            for m in _ONE_STRING.finditer(text)
        )
    return text


def source_labels(sql: str) -> list[str] | None:
    """The labels MySQL gives the outermost SELECT's items as written in ``sql``
    (aliased items included, as their whole text: callers use the alias), or
    None when ``sql`` is not a SELECT this reads."""
    spans = select_list_spans(sql)
    return None if spans is None else [label_of(sql[a:b]) for a, b in spans]
