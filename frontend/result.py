"""The protocol-neutral result of one statement."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from coordinator import errors
from coordinator.errors import SqlError

if TYPE_CHECKING:
    from frontend.wire.results import Column


class Batches(Protocol):
    """A streamed result's further rows, batch by batch: an async generator, or
    a wrapper that (unlike a generator not yet started) acts on ``aclose()`` at
    any point. Whoever reads it must exhaust it or ``aclose()`` it."""

    def __aiter__(self) -> AsyncIterator[list[tuple[Any, ...]]]: ...

    async def __anext__(self) -> list[tuple[Any, ...]]: ...

    async def aclose(self) -> None: ...


class SizedInt(int):
    """An integer of a column declared with a MySQL integer type: the wire layer
    sends that type (``kind``: TINYINT ... BIGINT) and its UNSIGNED flag.
    One subclass per declared type (``sized_int``); plain ints are BIGINT."""

    __slots__ = ()
    kind: ClassVar[str] = "BIGINT"
    unsigned: ClassVar[bool] = False


@cache
def sized_int(kind: str, unsigned: bool = False) -> type[SizedInt]:
    return type(f"{kind.title()}{'Unsigned' if unsigned else ''}", (SizedInt,), {"kind": kind, "unsigned": unsigned})


@dataclass
class SqlWarning:
    """One row of SHOW WARNINGS."""

    level: str  # Note, Warning or Error
    code: int
    message: str


@dataclass
class Result:
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    affected_rows: int = 0  # MySQL's: rows changed (an UPDATE that sets what is there counts 0)
    # Rows matched, where it differs from ``affected_rows`` (UPDATE): what a
    # client that set CLIENT_FOUND_ROWS is told in place of ``affected_rows``.
    found_rows: int | None = None
    warnings: list[SqlWarning] = field(default_factory=list)
    # A relaying backend (MySQL) gives the server's own answer: its column
    # definitions (rows are then the text protocol's raw bytes) and last insert
    # id. None / 0 elsewhere: the wire layer infers the types.
    wire_columns: list[Column] | None = None
    last_insert_id: int = 0
    # An OK's human-readable part, as MySQL words it ("Rows matched: 3  Changed: 1  Warnings: 0").
    info: str = ""
    # The rows after ``rows``, batch by batch, for a backend that streams a
    # large result: fetched as the client reads them. Whoever sends the result
    # must exhaust it or ``aclose()`` it (the statement runs until then).
    more: Batches | None = None
    # A relaying backend's answer as its packets, framed as they came (the
    # MySQL listener writes them through unchanged); nothing else is set.
    # Whoever sends it must exhaust it or ``aclose()`` it.
    relay: AsyncGenerator[bytes, None] | None = None

    @property
    def has_rows(self) -> bool:
        return bool(self.columns)


OK = Result()


WHOLE_RESULT_ROWS = 1_000_000  # past it, an answer sent as one message is refused


async def whole(result: Result, max_rows: int = WHOLE_RESULT_ROWS) -> Result:
    """``result`` with every streamed row in ``rows``, for an answer sent as
    one message (the gRPC API): SqlError 1105 past ``max_rows``."""
    if result.more is None:
        return result
    more, result.more = result.more, None
    try:
        async for batch in more:
            result.rows.extend(batch)
            if len(result.rows) > max_rows:
                raise SqlError(
                    errors.UNKNOWN_ERROR, f"Result too large: more than {max_rows} rows; add a LIMIT or a WHERE"
                )
    finally:
        await more.aclose()
    return result
