"""The protocol-neutral result of one statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    @property
    def has_rows(self) -> bool:
        return bool(self.columns)


OK = Result()
