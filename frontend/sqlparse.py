"""MySQL text -> sqlglot tree, the one way the FE parses a statement for the
privilege check and the embedded backend, and a cache bounded in bytes.

Doris's CREATE TABLE clauses (``DUPLICATE KEY(...)``, ``DISTRIBUTED BY``,
``PROPERTIES (...)``, ...) describe storage a single MySQL-speaking backend
does not have: ``without_doris_clauses`` drops them before anything parses
or relays the statement.

``REPLACE INTO`` is a MySQL statement sqlglot leaves as an opaque ``Command``:
it becomes an ``Insert`` (alternative REPLACE) so its tables are seen like an
INSERT's (by the privilege check, and qualified by the backend).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from coordinator import errors
from coordinator.errors import SqlError

K = TypeVar("K")
V = TypeVar("V")


def parse(sql: str) -> exp.Expr:
    try:
        tree = sqlglot.parse_one(sql, read="mysql")
        if isinstance(tree, exp.Command) and tree.name.upper() == "REPLACE":
            tree = sqlglot.parse_one(f"INSERT {tree.expression.name}", read="mysql")
            tree.set("alternative", "REPLACE")
    except ParseError as e:
        raise syntax_error(e) from e
    except TokenError as e:
        raise SqlError(errors.PARSE_ERROR, f"You have an error in your SQL syntax: {e}") from e
    except RecursionError as e:  # deeply nested text: refuse it, do not take the FE down
        raise SqlError(errors.PARSE_ERROR, "You have an error in your SQL syntax: nested too deeply") from e
    if tree is None:
        raise SqlError(errors.PARSE_ERROR, "You have an error in your SQL syntax")
    return tree


_DORIS_KEYS = frozenset({"DUPLICATE", "UNIQUE", "AGGREGATE", "PRIMARY"})
_DORIS_AGGREGATIONS = frozenset(
    {"SUM", "MAX", "MIN", "REPLACE", "REPLACE_IF_NOT_NULL", "HLL_UNION", "BITMAP_UNION", "QUANTILE_UNION", "GENERIC"}
)
_COLUMN_ATTRIBUTES = frozenset({"NOT", "NULL", "DEFAULT", "COMMENT"})
_LIST_STARTS = (TokenType.COMMA, TokenType.L_PAREN)
_DORIS_WORDS = frozenset({*_DORIS_KEYS, "PARTITION", "AUTO", "DISTRIBUTED", "ROLLUP", "PROPERTIES", "BROKER"})


def _group_end(tokens: list[Token], i: int) -> int:
    """The index after the parenthesised group starting at ``tokens[i]`` (``i`` if there is none)."""
    if i >= len(tokens) or tokens[i].token_type != TokenType.L_PAREN:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        kind = tokens[j].token_type
        # Doris's half-open ranges, VALUES [(a), (b)), close a "[" with ")".
        depth += kind in (TokenType.L_PAREN, TokenType.L_BRACKET)
        depth -= kind in (TokenType.R_PAREN, TokenType.R_BRACKET)
        if depth == 0:
            return j + 1
    return len(tokens)


def _doris_clause_end(tokens: list[Token], i: int) -> int:
    """The index after the Doris clause at ``tokens[i]``, or ``i`` if none starts there."""
    # sqlglot reads some pairs ("PARTITION BY") as one token: compare word by word.
    words: list[str] = []
    for t in tokens[i : i + 4]:
        words.extend(t.text.upper().split() or [t.text])
    if words[:1] == ["AUTO"] and words[1:2] == ["PARTITION"]:
        return _doris_clause_end(tokens, i + 1) if _doris_clause_end(tokens, i + 1) > i + 1 else i
    if words[:2] == ["PARTITION", "BY"]:  # PARTITION BY RANGE (k) (PARTITION p1 VALUES ..., ...)
        j = i + 1
        while j < len(tokens) and tokens[j].token_type != TokenType.L_PAREN:
            j += 1
        return _group_end(tokens, _group_end(tokens, j))
    if words[:1] and words[0] in _DORIS_KEYS and tokens[i + 1 : i + 2] and tokens[i + 1].text.upper() == "KEY":
        return _group_end(tokens, i + 2)  # DUPLICATE KEY (k1, k2)
    if words[:2] == ["DISTRIBUTED", "BY"]:  # DISTRIBUTED BY HASH (k) | RANDOM [BUCKETS n | AUTO]
        j = i + 2 if len(tokens[i].text.split()) == 1 else i + 1
        j = _group_end(tokens, j + 1) if tokens[j : j + 1] and tokens[j].text.upper() == "HASH" else j + 1
        if j < len(tokens) and tokens[j].text.upper() == "BUCKETS":
            j += 2
        return min(j, len(tokens))
    if words[:1] in (["ROLLUP"], ["PROPERTIES"]):
        return _group_end(tokens, i + 1)
    if words[:2] == ["BROKER", "PROPERTIES"]:
        return _group_end(tokens, i + 2)
    if words[:1] == ["ENGINE"] and words[2:3] == ["OLAP"]:
        return i + 3
    return i


def without_doris_clauses(sql: str) -> str:
    """``sql`` without Doris's CREATE TABLE clauses (the same text when it has none)."""
    if sql[:6].upper() != "CREATE" or not _DORIS_WORDS.intersection(sql.upper().split()):
        return sql
    try:
        tokens = MySQL().tokenize(sql)
    except TokenError:
        return sql
    start = next((i for i, t in enumerate(tokens) if t.token_type == TokenType.L_PAREN), None)
    if start is None or tokens[1].token_type != TokenType.TABLE:
        return sql
    if any(t.text.upper() in ("AS", "SELECT", "LIKE") for t in tokens[2:start]):
        return sql  # CREATE TABLE ... AS SELECT (...): no column list
    end = _group_end(tokens, start)  # after the column list
    cuts: list[tuple[int, int]] = []  # token index ranges to drop
    doris = False
    i = end
    while i < len(tokens):
        clause_end = _doris_clause_end(tokens, i)
        if clause_end > i:
            # PARTITION BY is MySQL's too: a Doris table's only (with another Doris clause).
            doris = doris or "PARTITION" not in tokens[i].text.upper()
            cuts.append((i, clause_end))
            i = clause_end
        else:
            i += 1
    if not doris:
        return sql
    # A column's aggregation (``n BIGINT SUM``): after its type, before a comma or an attribute.
    for j in range(start + 2, end - 1):
        after = tokens[j + 1]
        if (
            tokens[j].text.upper() in _DORIS_AGGREGATIONS
            and tokens[j - 1].token_type not in _LIST_STARTS
            and (after.token_type in (TokenType.COMMA, TokenType.R_PAREN) or after.text.upper() in _COLUMN_ATTRIBUTES)
        ):
            cuts.append((j, j + 1))
    kept, position = [], 0
    for first, last in sorted(cuts):
        kept.append(sql[position : tokens[first].start])
        position = tokens[last - 1].end + 1
    kept.append(sql[position:])
    return " ".join(part.strip() for part in kept if part.strip())


def syntax_error(e: ParseError) -> SqlError:
    """MySQL's words for a parse error (sqlglot's own message carries terminal colours)."""
    first = e.errors[0] if e.errors else {}
    near = (str(first.get("highlight") or "") + str(first.get("end_context") or ""))[:80]
    what = str(first.get("description") or "syntax error").split(".")[0]
    return SqlError(
        errors.PARSE_ERROR,
        f"You have an error in your SQL syntax ({what}); check the manual that corresponds to your MySQL server"
        f" version for the right syntax to use near '{near}' at line {first.get('line', 1)}",
    )


class ByteBoundedCache(Generic[K, V]):
    """An LRU whose bound is the total size of its keys' text, not an entry
    count: ten 4 MB statements cannot pin 40 MB. Entries larger than
    ``max_entry`` are computed and never kept. Thread-safe (the backend's
    workers use it too)."""

    def __init__(self, max_bytes: int, max_entry: int, size: Callable[[K], int]) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_entry
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()  # outside the lock: errors are not cached
        cost = self._size(key)
        if cost > self.max_entry:
            return value
        with self._lock:
            if key not in self._entries:
                self._entries[key] = value
                self._bytes += cost
                while self._bytes > self.max_bytes and self._entries:
                    old, _ = self._entries.popitem(last=False)
                    self._bytes -= self._size(old)
        return value

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
