"""The protocol-neutral result of one statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from frontend.wire.results import Column


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
    affected_rows: int = 0
    warnings: list[SqlWarning] = field(default_factory=list)
    # A relaying backend (MySQL) gives the server's own answer: its column
    # definitions (rows are then the text protocol's raw bytes) and last insert
    # id. None / 0 elsewhere: the wire layer infers the types.
    wire_columns: list[Column] | None = None
    last_insert_id: int = 0

    @property
    def has_rows(self) -> bool:
        return bool(self.columns)


OK = Result()
