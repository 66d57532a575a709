"""Percentiles and medians for the benchmark's figures."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least a fraction ``q`` of them at or below."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    index = max(0, math.ceil(q * len(ordered) - 1e-9) - 1)
    return ordered[index]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def ms_percentiles(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """``{prefix}_p50_ms``, ``_p95_ms``, ``_p99_ms``, ``_max_ms`` of durations in seconds."""
    return {
        f"{prefix}_p50_ms": ms(percentile(seconds, 0.50)),
        f"{prefix}_p95_ms": ms(percentile(seconds, 0.95)),
        f"{prefix}_p99_ms": ms(percentile(seconds, 0.99)),
        f"{prefix}_max_ms": ms(max(seconds)),
    }
