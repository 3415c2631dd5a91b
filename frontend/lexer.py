"""A MySQL/MariaDB lexer that reads statement text the way the server does,
and the classifier that tells the FE's own statements from the engine's.

Over a MySQL backend every statement the FE does not own is relayed to the
server as the client's bytes, so recognising the FE's statements must follow
the server's reading rules exactly (MariaDB's ``sql_lex.cc``): comments
(``#``, ``-- `` + space or control character, ``/* */`` not nested),
executable comments (``/*!`` and MariaDB's ``/*M!``, with an optional 5 or 6
digit version), quotes under the session's sql_mode (ANSI_QUOTES,
NO_BACKSLASH_ESCAPES), backquoted names. An unterminated string, comment or
name ends the scan with an ERROR token: the engine gives the syntax error.

Every scan is one left-to-right pass. The regular expressions here are
possessive or have disjoint alternatives, so none can backtrack: the cost is
linear in the text whatever it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from typing import NamedTuple

# Token kinds.
WORD = "WORD"
QUOTED_NAME = "QUOTED_NAME"
STRING = "STRING"
NUMBER = "NUMBER"
VARIABLE = "VARIABLE"
PLACEHOLDER = "PLACEHOLDER"
PUNCT = "PUNCT"
ERROR = "ERROR"

MAX_CLASSIFY = 64 * 1024
"""Longer statements are tokenized only as far as their first words; the
information_schema.processlist and CONNECTION_ID() searches stay whole-text
(linear scans over the text's code, strings and comments masked)."""

DEFAULT_VERSION = 101100  # MariaDB 10.11.0


class Token(NamedTuple):
    kind: str
    start: int
    end: int
    text: str


class QuoteModes(NamedTuple):
    """How the session's sql_mode makes the server read quotes."""

    ansi_quotes: bool = False
    no_backslash_escapes: bool = False


# sql_mode bits (MariaDB sql_class.h): ANSI_QUOTES, the combination modes that
# include it (POSTGRESQL, ORACLE, MSSQL, DB2, MAXDB, ANSI), NO_BACKSLASH_ESCAPES.
_ANSI_QUOTES_BITS = 4 | 256 | 512 | 1024 | 2048 | 4096 | (1 << 18)
_NO_BACKSLASH_BIT = 1 << 20
_ANSI_QUOTES_NAMES = frozenset({"ANSI_QUOTES", "ANSI", "POSTGRESQL", "ORACLE", "MSSQL", "DB2", "MAXDB"})


def quote_modes(sql_mode: str) -> QuoteModes:
    """``SELECT @@sql_mode`` as the server prints it (comma-separated names; a
    number is read as the bit set) -> the quoting modes it implies."""
    text = sql_mode.strip()
    if text.isdigit():
        bits = int(text)
        return QuoteModes(bool(bits & _ANSI_QUOTES_BITS), bool(bits & _NO_BACKSLASH_BIT))
    names = {name.strip().upper() for name in text.split(",")}
    return QuoteModes(bool(names & _ANSI_QUOTES_NAMES), "NO_BACKSLASH_ESCAPES" in names)


# --- the scanner: units -------------------------------------------------------
# The text is cut into units: code runs (no quote, whitespace or comment inside),
# quoted strings, quoted names, gaps (whitespace, comments, the markers of
# executable comments) and at most one error, which ends the scan.

_CODE, _STR, _NAME, _GAP, _ERR = range(5)

_IDENT_CLASS = "0-9A-Za-z_$\u0080-\U0010ffff"  # the server's ident_map: every non-ASCII char is a name char
_SPACE = " \t\n\v\f\r"  # my_isspace; other control chars are not whitespace
# `-- ` opens a comment when the second dash is followed by whitespace, a
# control character or the end of the text.
_DASHES = r"--(?=[\x00-\x20\x7f]|\Z)"


def _gap_re(opener: str) -> re.Pattern[str]:
    # A line comment ends at a newline or a NUL (MY_LEX_COMMENT stops at both);
    # a block comment at the first */ (C comments do not nest).
    return re.compile(rf"(?:[{_SPACE}]++|#[^\n\x00]*+|{_DASHES}[^\n\x00]*+|{opener}[^*]*+\*++(?:[^/*][^*]*+\*++)*+/)*+")


_GAP_MARIADB = _gap_re(r"/\*(?!!|M!)")  # /*! and /*M! are executable comments, handled apart
_GAP_MYSQL = _gap_re(r"/\*(?!!)")  # MySQL: /*M! is a plain comment
_RUN_OUT = re.compile(rf"(?:[^{_SPACE}'\"`#/\-]++|/(?!\*)|-(?!{_DASHES[1:]}))++")
_RUN_IN = re.compile(rf"(?:[^{_SPACE}'\"`#/\-*]++|/(?!\*)|-(?!{_DASHES[1:]})|\*(?!/))++")  # */ closes /*!
_VERSION = re.compile(r"[0-9]{5}[0-9]?")
_BODY = {
    ("'", False): re.compile(r"[^'\\]*+(?:(?:\\[\s\S]|'')[^'\\]*+)*+"),
    ('"', False): re.compile(r'[^"\\]*+(?:(?:\\[\s\S]|"")[^"\\]*+)*+'),
    ("'", True): re.compile(r"[^']*+(?:''[^']*+)*+"),
    ('"', True): re.compile(r'[^"]*+(?:""[^"]*+)*+'),
}
# A quoted name ends at its quote; a NUL inside one is an error (scan_ident_delimited).
_NAME_BODY = {"`": re.compile(r"[^`\x00]*+(?:``[^`\x00]*+)*+"), '"': re.compile(r'[^"\x00]*+(?:""[^"\x00]*+)*+')}


def _skip_versioned(sql: str, p: int) -> int:
    """End of a versioned comment the server skips: one level of /* */ may nest
    inside (consume_comment(1)). -1 when it is not closed."""
    while True:
        close = sql.find("*/", p)
        if close < 0:
            return -1
        nested = sql.find("/*", p, close + 1)
        if nested < 0:
            return close + 2
        inner = sql.find("*/", nested + 2)
        if inner < 0:
            return -1
        p = inner + 2


def _units(sql: str, ansi: bool, nbe: bool, server_version: int, mariadb: bool) -> Iterator[tuple[int, int, int]]:
    n, i, in_exec = len(sql), 0, False
    gap = _GAP_MARIADB if mariadb else _GAP_MYSQL
    while i < n:
        j = gap.match(sql, i).end()  # type: ignore[union-attr]  # `*+`: always matches
        if j > i:
            yield _GAP, i, j
            i = j
            if i >= n:
                break
        c = sql[i]
        if c == "/" and sql.startswith("/*", i):  # what the gap pattern left: /*! /*M! or an unclosed comment
            k = i + 2
            marked = mariadb and sql.startswith("M!", k)
            if not marked and not sql.startswith("!", k):
                yield _ERR, i, n
                return
            k += 2 if marked else 1
            v = _VERSION.match(sql, k)
            if v is None:  # no version: code on every server
                in_exec = True
                yield _GAP, i, k
                i = k
                continue
            digits = v.group() if mariadb else v.group()[:5]
            version = int(digits)
            # MariaDB skips MySQL-only versions 5.7-9.x unless the comment is /*M!.
            if version <= server_version and (not mariadb or marked or version < 50700 or version > 99999):
                in_exec = True
                yield _GAP, i, k + len(digits)
                i = k + len(digits)
                continue
            end = _skip_versioned(sql, k + len(digits))
            if end < 0:
                yield _ERR, i, n
                return
            yield _GAP, i, end
            i = end
            continue
        if in_exec and c == "*" and sql.startswith("*/", i):
            in_exec = False
            yield _GAP, i, i + 2
            i += 2
            continue
        if c == "'" or (c == '"' and not ansi):
            j = _BODY[c, nbe].match(sql, i + 1).end()  # type: ignore[union-attr]
            if j >= n or sql[j] != c:
                yield _ERR, i, n
                return
            yield _STR, i, j + 1
            i = j + 1
            continue
        if c == "`" or c == '"':
            j = _NAME_BODY[c].match(sql, i + 1).end()  # type: ignore[union-attr]
            if j >= n or sql[j] != c:
                yield _ERR, i, n
                return
            yield _NAME, i, j + 1
            i = j + 1
            continue
        m = (_RUN_IN if in_exec else _RUN_OUT).match(sql, i)
        j = m.end() if m else i + 1
        yield _CODE, i, j
        i = j
    if in_exec:  # an executable comment never closed
        yield _ERR, n, n


# --- tokens -------------------------------------------------------------------

_ID = f"[{_IDENT_CLASS}]"
_TOKEN = re.compile(
    rf"(?P<num>0x[0-9A-Fa-f]++(?!{_ID})|0b[01]++(?!{_ID})"
    rf"|[0-9]++(?:[eE][+-]?[0-9]++|\.[0-9]*+(?:[eE][+-]?[0-9]++)?|(?!{_ID}))"
    r"|\.[0-9]++(?:[eE][+-]?[0-9]++)?)"
    rf"|(?P<word>{_ID}++)"
    rf"|(?P<sys>@@(?:{_ID}++(?:\.{_ID}++)*+)?)"
    r"|(?P<user>@[0-9A-Za-z._$\u0080-\U0010ffff]*+)"
    r"|(?P<ph>\?)"
    r"|(?P<op><=>|<=|>=|<>|!=|:=|\|\||&&|<<|>>)"
    r"|(?P<punct>[\s\S])"
)
_IDENT_RUN = re.compile(f"{_ID}++")
_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_HEX = re.compile(r"[0-9A-Fa-f]*+")
_BITS = re.compile(r"[01]*+")


def _upper(text: str) -> str:
    """Keywords are ASCII: 'k\u0131ll' (dotless i) is a name, not KILL as str.upper would say."""
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


def _lower(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _unquote(body: str, quote: str) -> str:
    return body.replace(quote * 2, quote) if quote * 2 in body else body


def _code_tokens(sql: str, s: int, e: int) -> Iterator[Token]:
    p = s
    while p < e:
        m = _TOKEN.match(sql, p, e)
        kind, q = m.lastgroup, m.end()  # type: ignore[union-attr]  # the last branch takes any char
        text = sql[p:q]
        if kind == "word":
            yield Token(WORD, p, q, _upper(text))
            # name.name: what follows the dot is a name even when it starts with
            # digits (MY_LEX_IDENT_SEP): t.1e5 is column 1e5, not a number.
            while q + 1 < e and sql[q] == "." and (m2 := _IDENT_RUN.match(sql, q + 1, e)) is not None:
                yield Token(PUNCT, q, q + 1, ".")
                yield Token(WORD, q + 1, m2.end(), _upper(m2.group()))
                q = m2.end()
        elif kind == "num":
            yield Token(NUMBER, p, q, text)
        elif kind == "sys":
            yield Token(VARIABLE, p, q, "@@" + _lower(text[2:]))
        elif kind == "user":
            yield Token(VARIABLE, p, q, text)
        elif kind == "ph":
            yield Token(PLACEHOLDER, p, q, text)
        else:
            yield Token(PUNCT, p, q, text)
        p = q


def tokens(
    sql: str,
    *,
    ansi_quotes: bool = False,
    no_backslash_escapes: bool = False,
    server_version: int = DEFAULT_VERSION,
    mariadb: bool = True,
    limit: int | None = None,
) -> Iterator[Token]:
    """The statement's code tokens, left to right, comments skipped and
    executable comments' code included. An ERROR token (unterminated string,
    comment, name or executable comment; x'..'/b'..' with a bad digit; ``@@``
    without a name) is the last token."""
    it = _tokens(sql, ansi_quotes, no_backslash_escapes, server_version, mariadb)
    return it if limit is None else islice(it, limit)


def _tokens(sql: str, ansi: bool, nbe: bool, server_version: int, mariadb: bool) -> Iterator[Token]:
    held: Token | None = None  # a prefix (@, @@, x, b, n) waiting for a quote right after it
    for kind, s, e in _units(sql, ansi, nbe, server_version, mariadb):
        if held is not None:
            merged = _merge(sql, held, kind, s, e)
            if merged is not None:
                yield merged
                if merged.kind == ERROR:
                    return
                held = None
                continue
            yield held
            held = None
        if kind == _CODE:
            last = None
            for tok in _code_tokens(sql, s, e):
                if last is not None:
                    yield last
                last = tok
            if last is not None:
                if last.end == e and e < len(sql) and sql[e] in "'\"`" and _may_prefix(last):
                    held = last
                elif last.kind == VARIABLE and last.text == "@@":
                    yield Token(ERROR, last.start, len(sql), "@@ without a variable name")
                    return
                else:
                    yield last
        elif kind == _STR:
            yield Token(STRING, s, e, sql[s:e])
        elif kind == _NAME:
            yield Token(QUOTED_NAME, s, e, _unquote(sql[s + 1 : e - 1], sql[s]))
        elif kind == _ERR:
            yield Token(ERROR, s, e, "unterminated " + _what(sql, s))
            return
    if held is not None:  # unreachable: a quote always follows a held token
        yield held


def _may_prefix(tok: Token) -> bool:
    return (tok.kind == VARIABLE and tok.text in ("@", "@@")) or (tok.kind == WORD and tok.text in ("X", "B", "N"))


def _merge(sql: str, held: Token, kind: int, s: int, e: int) -> Token | None:
    """``@'x'``, ``@@`x```, ``x'0A'``, ``b'01'``, ``N'x'`` as one token, or None
    when the held token stands alone (``x"a"`` is the name x, then a string)."""
    quote = sql[s] if s < len(sql) else ""
    if held.kind == VARIABLE and held.text == "@" and kind in (_STR, _NAME):
        return Token(VARIABLE, held.start, e, "@" + _unquote(sql[s + 1 : e - 1], quote))
    if held.kind == VARIABLE and held.text == "@@":
        if kind == _NAME and quote == "`":
            return Token(VARIABLE, held.start, e, "@@" + _lower(_unquote(sql[s + 1 : e - 1], "`")))
        return Token(ERROR, held.start, len(sql), "@@ without a variable name")
    if held.kind == WORD and kind == _STR and quote == "'":
        body = sql[s + 1 : e - 1]
        if held.text == "N":
            return Token(STRING, held.start, e, sql[held.start : e])
        digits = _HEX if held.text == "X" else _BITS
        if digits.fullmatch(body) is None or (held.text == "X" and len(body) % 2):
            return Token(ERROR, held.start, len(sql), f"bad {held.text}'' literal")
        return Token(STRING, held.start, e, sql[held.start : e])
    return None


def _what(sql: str, s: int) -> str:
    if s >= len(sql):
        return "executable comment"
    c = sql[s]
    return {"'": "string", '"': "quoted text", "`": "quoted name", "/": "comment"}.get(c, "text")
