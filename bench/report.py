"""Rows, targets, the printed table and the JSON document."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.stats import Summary

PASS, MISS, NA = "pass", "miss", "n/a"


@dataclass
class Row:
    key: str
    section: str
    figure: str
    unit: str = "ms"  # "ms" (p50/p99 of samples), "x" (ratio of p50s), "KB"
    fe: Summary | None = None
    mariadb: Summary | None = None
    value: float | None = None  # ratio and memory rows
    value_p99: float | None = None  # ratio rows: the same ratio of p99s, for information
    mariadb_note: str = ""
    target: str = ""
    result: str = ""
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "section": self.section,
            "figure": self.figure,
            "unit": self.unit,
            "fecluster": self.fe.to_json() if self.fe else None,
            "mariadb": self.mariadb.to_json() if self.mariadb else None,
            "value": _round(self.value),
            "value_p99": _round(self.value_p99),
            "mariadb_note": self.mariadb_note,
            "target": self.target,
            "result": self.result,
            "detail": self.detail,
            **({"extra": self.extra} if self.extra else {}),
        }


def _round(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else round(v, 4)


def ms(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return a / b


def judge(*checks: tuple[bool | None, str]) -> tuple[str, str]:
    """Combine (ok, description) checks; ok None means it could not be evaluated."""
    evaluated = [c for c in checks if c[0] is not None]
    details = "; ".join(d for _, d in checks if d)
    if not evaluated:
        return NA, details
    return (PASS if all(ok for ok, _ in evaluated) else MISS), details


def cells(row: Row) -> list[str]:
    if row.unit == "ms":
        fe = [ms(row.fe.p50), ms(row.fe.p99)] if row.fe else ["-", "-"]
        maria = [ms(row.mariadb.p50), ms(row.mariadb.p99)] if row.mariadb else ["-", "-"]
    elif row.unit == "x":
        fe = [
            f"{row.value:.2f}x" if row.value is not None else "-",
            f"{row.value_p99:.2f}x" if row.value_p99 is not None else "-",
        ]
        maria = ["", ""]
    else:
        if row.value is None:
            fe = ["-", ""]
        else:
            fe = [f"{row.value:.0f} {row.unit}" if row.unit == "threads" else f"{row.value:.1f} {row.unit}", ""]
        maria = ["", ""]
    result = row.result + (f" ({row.detail})" if row.detail else "")
    return [row.figure, *fe, *maria, row.target, result]


HEADERS = ["figure", "FE p50", "FE p99", "MariaDB p50", "MariaDB p99", "target", "result"]


def table(rows: list[Row]) -> str:
    body = [cells(r) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(HEADERS)]
    right = {1, 2, 3, 4}

    def line(values: list[str]) -> str:
        out = []
        for i, (v, w) in enumerate(zip(values, widths, strict=True)):
            out.append(v.rjust(w) if i in right else v.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(HEADERS), line(["-" * w for w in widths])]
    section = None
    for row, values in zip(rows, body, strict=True):
        if row.section != section:
            if section is not None:
                lines.append("")
            lines.append(f"[{row.section}]")
            section = row.section
        lines.append(line(values))
    return "\n".join(lines)
