"""Percentiles of a list of samples (milliseconds)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(sorted_samples: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_samples:
        return math.nan
    if len(sorted_samples) == 1:
        return sorted_samples[0]
    pos = q * (len(sorted_samples) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (pos - lo)


@dataclass
class Summary:
    n: int
    p50: float
    p99: float
    mean: float
    min: float
    max: float
    samples: list[float] = field(default_factory=list, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["samples"] = [round(s, 4) for s in self.samples]
        for key in ("p50", "p99", "mean", "min", "max"):
            out[key] = round(out[key], 4)
        return out


def summarize(samples: list[float], **extra: Any) -> Summary:
    ordered = sorted(samples)
    if not ordered:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan, [], dict(extra))
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 0.50),
        p99=percentile(ordered, 0.99),
        mean=sum(ordered) / len(ordered),
        min=ordered[0],
        max=ordered[-1],
        samples=list(samples),
        extra=dict(extra),
    )
