"""Percentiles, medians of runs, and the plain-text tables the harness prints."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a latency that happened)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summarize_ms(latencies_ns: Sequence[int], prefix: str) -> dict[str, float]:
    """p50/p95/p99/max of nanosecond latencies, in milliseconds, keyed ``<prefix>_p50_ms`` …"""
    ms = [v / 1e6 for v in latencies_ns]
    return {
        f"{prefix}_p50_ms": percentile(ms, 50),
        f"{prefix}_p95_ms": percentile(ms, 95),
        f"{prefix}_p99_ms": percentile(ms, 99),
        f"{prefix}_max_ms": max(ms) if ms else math.nan,
    }


def median_of_runs(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median over runs (each figure on its own: the run with the median
    throughput need not be the run with the median latency)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run if k not in keys]
    return {k: statistics.median([r[k] for r in runs if k in r]) for k in keys}


def fmt(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into docs/benchmarks.md)."""
    body = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in body) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
