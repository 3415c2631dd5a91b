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
from itertools import chain, islice
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


def _gap_items(opener: str) -> str:
    # A line comment ends at a newline or a NUL (MY_LEX_COMMENT stops at both);
    # a block comment at the first */ (C comments do not nest).
    return rf"[{_SPACE}]++|#[^\n\x00]*+|{_DASHES}[^\n\x00]*+|{opener}[^*]*+\*++(?:[^/*][^*]*+\*++)*+/"


_GAP_ITEMS_MARIADB = _gap_items(r"/\*(?!!|M!)")  # /*! and /*M! are executable comments, handled apart
_GAP_ITEMS_MYSQL = _gap_items(r"/\*(?!!)")  # MySQL: /*M! is a plain comment
_GAP_MARIADB = re.compile(f"(?:{_GAP_ITEMS_MARIADB})*+")
_GAP_MYSQL = re.compile(f"(?:{_GAP_ITEMS_MYSQL})*+")
# Inside an executable comment a further unversioned /*! only keeps the state:
# runs of them are one gap (a flood of /*! costs one regex match, not a loop).
_GAP_EXEC_MARIADB = re.compile(rf"(?:{_GAP_ITEMS_MARIADB}|/\*M?!(?![0-9]{{5}}))*+")
_GAP_EXEC_MYSQL = re.compile(rf"(?:{_GAP_ITEMS_MYSQL}|/\*!(?![0-9]{{5}}))*+")
# Between statements: gaps and empty statements.
_SKIP_MARIADB = re.compile(f"(?:{_GAP_ITEMS_MARIADB}|;)*+")
_SKIP_MYSQL = re.compile(f"(?:{_GAP_ITEMS_MYSQL}|;)*+")
_RUN_OUT = re.compile(rf"(?:[^{_SPACE}'\"`#/\-;]++|/(?!\*)|-(?!{_DASHES[1:]}))++")
_RUN_IN = re.compile(rf"(?:[^{_SPACE}'\"`#/\-*;]++|/(?!\*)|-(?!{_DASHES[1:]})|\*(?!/))++")  # */ closes /*!
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


def _units(
    sql: str, ansi: bool, nbe: bool, server_version: int, mariadb: bool, pos: int = 0
) -> Iterator[tuple[int, int, int]]:
    n, i, in_exec = len(sql), pos, False
    gap_out = _GAP_MARIADB if mariadb else _GAP_MYSQL
    gap_in = _GAP_EXEC_MARIADB if mariadb else _GAP_EXEC_MYSQL
    while i < n:
        j = (gap_in if in_exec else gap_out).match(sql, i).end()  # type: ignore[union-attr]  # `*+`: always matches
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
        # A run stops before ; (a unit of its own): split restarts here, and a
        # run reaching past every ; would be read again for each statement.
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


def _tokens(sql: str, ansi: bool, nbe: bool, server_version: int, mariadb: bool, pos: int = 0) -> Iterator[Token]:
    held: Token | None = None  # a prefix (@, @@, x, b, n) waiting for a quote right after it
    for kind, s, e in _units(sql, ansi, nbe, server_version, mariadb, pos):
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


# --- normalized text ----------------------------------------------------------


def normalized(
    sql: str, modes: QuoteModes = QuoteModes(), *, server_version: int = DEFAULT_VERSION, mariadb: bool = True
) -> str:
    """The statement's code on one line: comments dropped, executable comments'
    code kept, one space wherever the source had whitespace or a comment
    (``a.b`` and ``f(x)`` stay as written), one trailing ``;`` dropped. What the
    statement handlers' patterns match: ``KILL/**/QUERY 5`` and ``/*!KILL*/ 5``
    read as ``KILL QUERY 5`` and ``KILL 5``."""
    parts: list[str] = []
    space = False
    for kind, s, e in _units(sql, modes.ansi_quotes, modes.no_backslash_escapes, server_version, mariadb):
        if kind == _GAP:
            space = bool(parts)
            continue
        if space:
            parts.append(" ")
            space = False
        parts.append(sql[s:e])
    text = "".join(parts)
    return text[:-1].rstrip() if text.endswith(";") else text


# --- the whole-text searches: information_schema.processlist, CONNECTION_ID() --
# Over the code with strings masked as '' and comments as one space, quoted
# names unquoted when they are plain names: linear regular expressions then see
# every spelling (`information_schema` . /* */ `PROCESSLIST`) and nothing quoted.

_PLAIN_NAME = re.compile(f"{_ID}++")
_NOT_QUALIFIED = rf"(?<![{_IDENT_CLASS}.@])(?<!\. )"
# MariaDB finds information_schema tables by a comparison under which U+0130
# (dotted capital I) equals i: information_schema.PROCESSL\u0130ST is the table.
_PROCESSLIST = "processl[i\u0130]st"
_QUALIFIED_PROCESSLIST = re.compile(rf"{_NOT_QUALIFIED}information_schema ?\. ?{_PROCESSLIST}(?![{_IDENT_CLASS}])")
_BARE_PROCESSLIST = re.compile(rf"{_NOT_QUALIFIED}{_PROCESSLIST}(?![{_IDENT_CLASS}])")
_CONNECTION_ID_CALL = re.compile(rf"{_NOT_QUALIFIED}connection_id ?\(")


def _masked(sql: str, ansi: bool, nbe: bool, server_version: int, mariadb: bool) -> str | None:
    """The code, lower-cased (ASCII), strings and comments masked; None when the
    text has a lexical error (the engine judges it)."""
    parts: list[str] = []
    for kind, s, e in _units(sql, ansi, nbe, server_version, mariadb):
        if kind == _CODE:
            parts.append(sql[s:e])
        elif kind == _GAP:
            if parts and parts[-1] != " ":
                parts.append(" ")
        elif kind == _STR:
            parts.append("''")
        elif kind == _NAME:
            body = sql[s + 1 : e - 1]
            parts.append(body if _PLAIN_NAME.fullmatch(body) else "``")
        else:
            return None
    return _lower("".join(parts))


# --- classification -----------------------------------------------------------

_FAST_NOT_OWNED = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "VALUES", "CALL", "DO", "LOAD"})
_GLOBAL_SCOPES = frozenset({"global", "persist", "persist_only"})
_TRANSACTION_WORDS = frozenset({"COMMIT", "ROLLBACK", "SAVEPOINT"})
_SLEEP_ARG = re.compile(r"[0-9]++(?:\.[0-9]*+)?")
_LEAD = 8  # tokens enough to tell every family by its first words
_SET_STATEMENT_BUDGET = 4096  # tokens read looking for SET STATEMENT's FOR


class Classification:
    """What the FE makes of one statement.

    ``owned``: the FE family it belongs to, or None when it is the engine's:
    kill, processlist, kill_audit, accounts, roles, set, use, transaction,
    warnings, sleep, processlist_table, connection_id. ``first_words``: up to 3
    upper-cased leading words. ``text``: the normalized statement (computed on
    first use) from ``statement_start``, which is past ``SET STATEMENT ... FOR``
    when the owned statement is the one after FOR. ``database``: USE's name.
    ``error``: the lexer met an unterminated string, comment or name (such a
    statement is the engine's unless its first words are an FE family's); only
    known as far as the classifier read (the DML fast path reads nothing).
    """

    __slots__ = (
        "_first_words",
        "_opts",
        "_sql",
        "_text",
        "calls_connection_id",
        "database",
        "error",
        "owned",
        "statement_start",
    )

    def __init__(
        self,
        sql: str,
        opts: tuple[bool, bool, int, bool],
        owned: str | None = None,
        first_words: tuple[str, ...] | None = None,
        *,
        database: str | None = None,
        error: bool = False,
        calls_connection_id: bool = False,
        statement_start: int = 0,
    ) -> None:
        self._sql, self._opts = sql, opts
        self._text: str | None = None
        self.owned, self._first_words, self.database = owned, first_words, database
        self.error, self.calls_connection_id, self.statement_start = error, calls_connection_id, statement_start

    @property
    def first_words(self) -> tuple[str, ...]:
        if self._first_words is None:
            self._first_words = _first_words(list(islice(_tokens(self._sql, *self._opts, self.statement_start), 3)))
        return self._first_words

    @property
    def text(self) -> str:
        if self._text is None:
            ansi, nbe, version, mariadb = self._opts
            sql = self._sql[self.statement_start :] if self.statement_start else self._sql
            self._text = normalized(sql, QuoteModes(ansi, nbe), server_version=version, mariadb=mariadb)
        return self._text

    def __repr__(self) -> str:
        return f"Classification(owned={self.owned!r}, first_words={self.first_words!r}, database={self.database!r})"


def _first_words(lead: list[Token]) -> tuple[str, ...]:
    words: list[str] = []
    for tok in lead:
        if tok.kind != WORD or len(words) == 3:
            break
        words.append(tok.text)
    return tuple(words)


def _leading_family(lead: list[Token]) -> str | None:
    """The families told by their first words alone."""
    w = [t.text if t.kind == WORD else "" for t in lead] + [""] * (_LEAD - len(lead))
    w0, w1, w2 = w[0], w[1], w[2]
    if w0 == "KILL":
        return "kill"
    if w0 == "SHOW":
        if w1 == "PROCESSLIST" or (w1 == "FULL" and w2 == "PROCESSLIST"):
            return "processlist"
        if w1 == "KILL" and w2 == "AUDIT":
            return "kill_audit"
        if w1 == "GRANTS" or (w1 == "CREATE" and w2 == "USER"):
            return "accounts"
        if w1 in ("WARNINGS", "ERRORS"):
            return "warnings"
        if w1 == "COUNT" and [t.text for t in lead[2:5]] == ["(", "*", ")"] and w[5] in ("WARNINGS", "ERRORS"):
            return "warnings"
        return None
    if w0 in ("GRANT", "REVOKE"):
        return "accounts"
    if w0 in ("DROP", "ALTER", "RENAME") and w1 == "USER":
        return "accounts"
    if w0 == "DROP" and w1 == "ROLE":
        return "roles"
    if w0 == "CREATE":
        what = w[3] if (w1, w2) == ("OR", "REPLACE") else w1
        return "accounts" if what == "USER" else "roles" if what == "ROLE" else None
    if w0 == "SET":
        if w1 in ("PASSWORD", "PROPERTY"):
            return "accounts"
        if w1 == "ROLE" or (w1 == "DEFAULT" and w2 == "ROLE"):
            return "roles"
        return None
    if w0 == "USE":
        return "use"
    if w0 in _TRANSACTION_WORDS or (w0 == "RELEASE" and w1 == "SAVEPOINT") or (w0 == "START" and w1 == "TRANSACTION"):
        return "transaction"
    if w0 == "BEGIN" and (len(lead) == 1 or (len(lead) == 2 and w1 == "WORK")):  # BEGIN NOT ATOMIC is a block
        return "transaction"
    return None


def _names_fe_variable(toks: list[Token], fe_variables: frozenset[str]) -> bool:
    """SET's assignments: does one name an FE variable or a GLOBAL/PERSIST scope?
    Only each assignment's target is read (before its = or :=, at depth 0)."""
    depth, target = 0, True
    for tok in toks:
        kind, text = tok.kind, tok.text
        if kind == PUNCT:
            if text == "(":
                depth += 1
            elif text == ")":
                depth = max(0, depth - 1)
            elif depth == 0 and text == ",":
                target = True
            elif depth == 0 and text in ("=", ":="):
                target = False
            continue
        if not target or depth:
            continue
        if kind == WORD:
            name = text.lower()
            if name in _GLOBAL_SCOPES or name in fe_variables:
                return True
            if name == "character" and "charset" in fe_variables:  # SET CHARACTER SET x is SET CHARSET x
                return True
        elif kind == QUOTED_NAME:
            if _lower(text) in fe_variables:
                return True
        elif kind == VARIABLE and text.startswith("@@"):
            parts = text[2:].split(".")
            if parts[0] in _GLOBAL_SCOPES or any(part in fe_variables for part in parts):
                return True
    return False


def _strip_semicolon(toks: list[Token]) -> list[Token]:
    while toks and toks[-1].kind == PUNCT and toks[-1].text == ";":
        toks = toks[:-1]
    return toks


def _lowered(sql: str) -> str:
    return sql.lower() if sql.isascii() else sql.translate(_ASCII_LOWER)


def classify(
    sql: str,
    modes: QuoteModes = QuoteModes(),
    *,
    fe_variables: frozenset[str] = frozenset(),
    current_db: str | None = None,
    server_version: int = DEFAULT_VERSION,
    mariadb: bool = True,
) -> Classification:
    """Which FE family one statement (see ``split``) belongs to, if any.

    ``fe_variables``: lower-case names of the variables the FE owns (a SET that
    names one is "set"; so is any SET with GLOBAL, PERSIST or @@global.); the
    pseudo-names "names" and "charset" make SET NAMES / SET CHARSET the FE's.
    ``current_db``: the session's database (a bare ``processlist`` in
    information_schema is the processlist table)."""
    opts = (modes.ansi_quotes, modes.no_backslash_escapes, server_version, mariadb)
    low = _lowered(sql)
    # Fast path: a DML statement can only be the FE's by naming the processlist
    # table, calling CONNECTION_ID() or being SELECT SLEEP(n); without those
    # words anywhere in the text (comments and strings included) it is not.
    gap = (_GAP_MARIADB if mariadb else _GAP_MYSQL).match(sql).end()  # type: ignore[union-attr]
    first = _IDENT_RUN.match(sql, gap)
    if first is not None:
        word = _upper(first.group())
        if (
            word in _FAST_NOT_OWNED
            and "processl" not in low
            and "connection_id" not in low
            and (word != "SELECT" or "sleep" not in low)
        ):
            return Classification(sql, opts)
    stream = _tokens(sql, *opts)
    lead = list(islice(stream, _LEAD))
    error = any(t.kind == ERROR for t in lead)
    family = _leading_family(_strip_semicolon(lead))
    words = _first_words(lead)
    if family is not None:
        database = None
        if family == "use":
            rest = _strip_semicolon(lead)[1:]
            if len(rest) == 1 and rest[0].kind in (WORD, QUOTED_NAME):
                database = sql[rest[0].start : rest[0].end] if rest[0].kind == WORD else rest[0].text
        return Classification(sql, opts, family, words, database=database, error=error)
    if words[:1] == ("SET",):
        if words[1:2] == ("STATEMENT",):
            return _set_statement(sql, opts, lead, stream, fe_variables, current_db, words)
        if "global" in low or "persist" in low or any(name in low for name in fe_variables):
            if len(sql) > MAX_CLASSIFY:  # the FE refuses SETs this long; reading all of it costs too much
                return Classification(sql, opts, "set", words)
            toks = lead + list(stream)
            if _names_fe_variable(toks[1:], fe_variables):
                return Classification(sql, opts, "set", words, error=toks[-1].kind == ERROR)
    if words[:2] == ("SELECT", "SLEEP"):
        toks = _strip_semicolon(lead)
        if (
            [t.text for t in toks[2:3] + toks[4:]] == ["(", ")"]
            and toks[3].kind == NUMBER
            and _SLEEP_ARG.fullmatch(toks[3].text)
        ):
            return Classification(sql, opts, "sleep", words)
    if error or ("processl" not in low and "connection_id" not in low):
        return Classification(sql, opts, None, words, error=error)
    masked = _masked(sql, *opts)
    if masked is None:
        return Classification(sql, opts, None, words, error=True)
    if _QUALIFIED_PROCESSLIST.search(masked) or (
        current_db is not None and _lowered(current_db) == "information_schema" and _BARE_PROCESSLIST.search(masked)
    ):
        return Classification(sql, opts, "processlist_table", words)
    calls = _CONNECTION_ID_CALL.search(masked) is not None
    selects = words[:1] in (("SELECT",), ("WITH",)) or (bool(lead) and lead[0].text == "(")
    return Classification(sql, opts, "connection_id" if calls and selects else None, words, calls_connection_id=calls)


def _set_statement(
    sql: str,
    opts: tuple[bool, bool, int, bool],
    lead: list[Token],
    stream: Iterator[Token],
    fe_variables: frozenset[str],
    current_db: str | None,
    words: tuple[str, ...],
) -> Classification:
    """MariaDB's ``SET STATEMENT var = value [, ...] FOR statement``: the FE's
    when an assignment names an FE variable, or when the statement after FOR is
    the FE's (``SET STATEMENT x=1 FOR KILL 5`` must not reach the engine)."""
    head: list[Token] = []
    depth = 0
    for tok in islice(chain(lead[2:], stream), _SET_STATEMENT_BUDGET):
        if tok.kind == ERROR:
            return Classification(sql, opts, None, words, error=True)
        if tok.kind == PUNCT and tok.text in "()":
            depth = depth + 1 if tok.text == "(" else max(0, depth - 1)
        elif depth == 0 and tok.kind == WORD and tok.text == "FOR":
            ansi, nbe, version, mariadb = opts
            inner = classify(
                sql[tok.end :],
                QuoteModes(ansi, nbe),
                fe_variables=fe_variables,
                current_db=current_db,
                server_version=version,
                mariadb=mariadb,
            )
            if inner.owned is not None:
                return Classification(sql, opts, inner.owned, words, database=inner.database, statement_start=tok.end)
            owned = "set" if _names_fe_variable(head, fe_variables) else None
            return Classification(sql, opts, owned, words, calls_connection_id=inner.calls_connection_id)
        head.append(tok)
    if len(head) >= _SET_STATEMENT_BUDGET - 2:  # no FOR this far: the FE's, which refuses it
        return Classification(sql, opts, "set", words)
    return Classification(sql, opts, "set" if _names_fe_variable(head, fe_variables) else None, words)


# --- multi-statement text -----------------------------------------------------

_BLOCK_OPENERS = frozenset({"IF", "LOOP", "REPEAT", "WHILE", "FOR"})  # at a statement's start, not before (
_STATEMENT_STARTERS = frozenset({"BEGIN", "ATOMIC", "THEN", "ELSE", "DO", "LOOP", "REPEAT", "ROW"})
_COMPOUND_FIRST = frozenset({"BEGIN", "CASE", "CREATE", "ALTER"} | _BLOCK_OPENERS)
_ROUTINES = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"})
_NOT_ROUTINES = frozenset(
    {"TABLE", "VIEW", "INDEX", "DATABASE", "SCHEMA", "USER", "ROLE", "SERVER", "SEQUENCE", "TABLESPACE", "TEMPORARY"}
)


def _compound(lead: list[Token]) -> bool:
    """Does this statement hold a compound body whose ``;`` are its own
    (BEGIN NOT ATOMIC, top-level IF/CASE/LOOP/..., a label, CREATE PROCEDURE...)?"""
    w = [t.text if t.kind == WORD else "" for t in lead]
    if not w:
        return False
    if w[:3] == ["BEGIN", "NOT", "ATOMIC"] or (w[0] == "CASE"):
        return True
    if w[0] in _BLOCK_OPENERS:
        return len(lead) < 2 or lead[1].text != "("
    if len(lead) >= 2 and lead[0].kind in (WORD, QUOTED_NAME) and lead[1].text == ":":
        return True
    if w[0] in ("CREATE", "ALTER"):
        for word in w[1:]:
            if word in _ROUTINES:
                return True
            if word in _NOT_ROUTINES:
                return False
    return False


def split(
    sql: str, modes: QuoteModes = QuoteModes(), *, server_version: int = DEFAULT_VERSION, mariadb: bool = True
) -> list[tuple[int, int]]:
    """Statement spans ``(start, end)`` of a multi-statement text, cut at
    top-level ``;`` (outside strings, comments, quoted names and compound
    bodies). A span starts at its statement's first code (an executable
    comment is code; a plain comment or whitespace before it is left out) and
    ends before its ``;``; empty statements give no span. Each statement is read
    from a fresh lexer state, as the server parses the next statement of a
    multi-statement packet (an executable comment does not carry over a ``;``)."""
    n = len(sql)
    skip = _SKIP_MARIADB if mariadb else _SKIP_MYSQL
    gap = _GAP_MARIADB if mariadb else _GAP_MYSQL
    if ";" not in sql:
        start = skip.match(sql).end()  # type: ignore[union-attr]
        return [(start, n)] if start < n else []
    opts = (modes.ansi_quotes, modes.no_backslash_escapes, server_version, mariadb)
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        start = skip.match(sql, start).end()  # type: ignore[union-attr]
        if start >= n:
            return spans
        first = _IDENT_RUN.match(sql, start)
        if first is not None and _upper(first.group()) not in _COMPOUND_FIRST:
            after = gap.match(sql, first.end()).end()  # type: ignore[union-attr]
            if not sql.startswith(":", after) or sql.startswith(":=", after):  # not a label
                end = _plain_end(sql, opts, start)
                spans.append((start, end))
                start = end + 1
                continue
        stream = _tokens(sql, *opts, start)
        lead: list[Token] = []
        for tok in stream:  # the first tokens, up to the first ;
            lead.append(tok)
            if len(lead) == 12 or (tok.kind == PUNCT and tok.text == ";"):
                break
        end = _compound_end(sql, lead, stream) if _compound(lead) else _plain_end(sql, opts, start)
        spans.append((start, end))
        start = end + 1


_PLAIN_BODIES: dict[tuple[bool, bool, bool], re.Pattern[str]] = {}


def _plain_body(ansi: bool, nbe: bool, mariadb: bool) -> re.Pattern[str]:
    """A statement's text up to its ;, in one match: code, strings, names and
    comments; it stops at ;, at an executable comment (whose version decides
    what it hides) and at an unterminated quote."""
    key = (ansi, nbe, mariadb)
    if key not in _PLAIN_BODIES:
        strings = ["'" + _BODY["'", nbe].pattern + "'", "`" + _NAME_BODY["`"].pattern + "`"]
        strings.append('"' + (_NAME_BODY['"'].pattern if ansi else _BODY['"', nbe].pattern) + '"')
        gap = _GAP_ITEMS_MARIADB if mariadb else _GAP_ITEMS_MYSQL
        _PLAIN_BODIES[key] = re.compile(
            rf"(?:[^{_SPACE}'\"`#/\-;]++|{'|'.join(strings)}|{gap}|/(?!\*)|-(?!{_DASHES[1:]}))*+"
        )
    return _PLAIN_BODIES[key]


def _plain_end(sql: str, opts: tuple[bool, bool, int, bool], start: int) -> int:
    ansi, nbe, _, mariadb = opts
    end = _plain_body(ansi, nbe, mariadb).match(sql, start).end()  # type: ignore[union-attr]
    if end >= len(sql) or sql[end] == ";":
        return end
    if sql[end] != "/":  # an unterminated quote: the rest is this statement
        return len(sql)
    for kind, s, e in _units(sql, *opts, start):  # an executable comment: read by the lexer
        if kind == _CODE:
            k = sql.find(";", s, e)
            if k >= 0:
                return k
        elif kind == _ERR:
            break
    return len(sql)


def _compound_end(sql: str, lead: list[Token], stream: Iterator[Token]) -> int:
    depth = 0
    prev: Token | None = None
    after_end = False  # END IF / END LOOP ...: the word after END closes, it opens nothing
    for tok in chain(lead, stream):
        kind, text = tok.kind, tok.text
        if kind == ERROR:
            return len(sql)
        if kind == PUNCT and text == ";" and depth == 0:
            return tok.start
        if kind == WORD:
            if after_end and text in _BLOCK_OPENERS | {"CASE"}:
                pass
            elif text in ("BEGIN", "CASE"):
                depth += 1
            elif text == "END":
                depth = max(0, depth - 1)
            elif text in _BLOCK_OPENERS and (
                prev is None
                or (prev.kind == PUNCT and prev.text in (";", ":"))
                or (prev.kind == PUNCT and prev.text == ")" and depth == 0)
                or (prev.kind == WORD and prev.text in _STATEMENT_STARTERS)
            ):
                depth += 1
            after_end = text == "END"
        else:
            after_end = False
        prev = tok
    return len(sql)
