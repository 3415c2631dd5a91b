"""MySQL text -> sqlglot tree, the one way the FE parses a statement for the
privilege check and the embedded backend, and a cache bounded in bytes.

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
from sqlglot.errors import ParseError, TokenError

from coordinator import errors
from coordinator.errors import SqlError

K = TypeVar("K")
V = TypeVar("V")


def parse(sql: str) -> exp.Expression:
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
