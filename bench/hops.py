"""Where send→deliver latency goes: the server's per-hop event age, read from ``/metrics``.

Every consumer group and the WebSocket delivery observe ``parley_event_age_seconds{hop}``: the
age of an event (since its commit-time timestamp) when that hop handles it. Two scrapes, before
and after a phase, give the phase's own histogram per hop; its median (interpolated inside the
bucket, so as coarse as the buckets) says how far along the flow the time is spent.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

AGE_METRIC = "parley_event_age_seconds"
Buckets = dict[str, list[tuple[float, float]]]  # hop → [(upper bound s, cumulative count)]


async def scrape(base_url: str) -> Buckets:
    """Per-hop event-age buckets, plus the group-commit totals under the keys ``write:sends``,
    ``write:seconds`` and ``write:batches`` (one point each: (0, total))."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{base_url}/metrics")).text
    buckets: Buckets = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "parley_write_batch_sends_sum":
                buckets["write:sends"] = [(0.0, sample.value)]
            elif sample.name == "parley_write_batch_sends_count":
                buckets["write:batches"] = [(0.0, sample.value)]
            elif sample.name == "parley_write_batch_seconds_sum":
                buckets["write:seconds"] = [(0.0, sample.value)]
        if family.name != AGE_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets.setdefault(sample.labels["hop"], []).append((bound, sample.value))
    return {hop: sorted(points) for hop, points in buckets.items()}


def median_ms(before: Buckets, after: Buckets) -> dict[str, float]:
    """Each hop's median event age (ms) over what was observed between the two scrapes."""
    medians: dict[str, float] = {}
    for hop, points in after.items():
        if hop.startswith("write:"):
            continue
        earlier = dict(before.get(hop, []))
        counts = [(bound, count - earlier.get(bound, 0.0)) for bound, count in points]
        total = counts[-1][1]
        if total <= 0:
            continue
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in counts:
            if count >= total / 2:
                if bound == float("inf"):
                    medians[hop] = lower_bound * 1000
                else:
                    share = (total / 2 - lower_count) / max(count - lower_count, 1e-9)
                    medians[hop] = (lower_bound + share * (bound - lower_bound)) * 1000
                break
            lower_bound, lower_count = bound, count
    return medians


def write_batches(before: Buckets, after: Buckets) -> dict[str, float]:
    """Group commit between the two scrapes: mean sends per batch and mean batch time (ms)."""

    def delta(key: str) -> float:
        return after.get(key, [(0.0, 0.0)])[0][1] - before.get(key, [(0.0, 0.0)])[0][1]

    batches = delta("write:batches")
    if batches <= 0:
        return {}
    return {
        "batch_sends": delta("write:sends") / batches,
        "batch_ms": delta("write:seconds") / batches * 1000,
    }
