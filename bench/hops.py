"""Where send→deliver latency goes: the server's per-hop event age, read from ``/metrics``.

Every consumer group and the WebSocket delivery observe ``parley_event_age_seconds{hop}``: the
age of an event (since its commit-time timestamp) when that hop handles it. Two scrapes, before
and after a phase, give the phase's own histogram per hop; its median (interpolated inside the
bucket, so as coarse as the buckets) says how far along the flow the time is spent.

In a cluster each hop is observed by the process doing it (fanout, cache, indexer, every
realtime node; the writes on every api and realtime node): ``scrape_all`` reads each process's
``/metrics`` and adds the counts up, which is the histogram of the cluster as a whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

AGE_METRIC = "parley_event_age_seconds"
PHASE_METRIC = "parley_write_batch_phase_seconds"  # where a group-commit batch's time goes
LAG_METRIC = "parley_event_loop_lag_seconds"  # per process: how late its loop ran (loop_health)
GC_METRIC = "parley_gc_pause_seconds"
WRITE_TOTALS = {  # group commit: sample name → key
    "parley_write_batch_sends_sum": "sends",
    "parley_write_batch_sends_count": "batches",
    "parley_write_batch_seconds_sum": "seconds",
    "parley_ws_events_delivered_total": "frames",  # WebSocket delivery: frames written …
    "parley_ws_socket_writes_total": "socket_writes",  # … and the socket writes carrying them
}
Buckets = dict[str, list[tuple[float, float]]]  # hop → [(upper bound s, cumulative count)]


@dataclass(frozen=True)
class Scrape:
    ages: Buckets
    write_totals: dict[str, float]
    batch_phases: Buckets = field(default_factory=dict)
    # "lag": the event loop's lag; "gc1", "gc2": collection pauses of those generations
    loop_health: Buckets = field(default_factory=dict)


async def scrape(base_url: str) -> Scrape:
    """Per-hop event-age buckets and the group-commit totals, as the server counts them now."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{base_url}/metrics")).text
    return parse(text)


async def scrape_each(base_urls: Mapping[str, str]) -> dict[str, Scrape]:
    """Each process's own counts (name → base URL), e.g. to tell which one stalled."""
    scrapes = await asyncio.gather(*(scrape(url) for url in base_urls.values()))
    return dict(zip(base_urls, scrapes, strict=True))


async def scrape_all(base_urls: Sequence[str]) -> Scrape:
    """The sum of every process's counts (no URLs, e.g. a deployment the harness cannot see
    inside: an empty scrape, and no hop figures)."""
    return merge(await asyncio.gather(*(scrape(url) for url in base_urls)))


def merge(scrapes: Sequence[Scrape]) -> Scrape:
    """Histograms of several processes as one: counts of the same hop and bound added up."""
    totals: dict[str, float] = {}
    for one in scrapes:
        for key, value in one.write_totals.items():
            totals[key] = totals.get(key, 0.0) + value
    return Scrape(
        _summed([one.ages for one in scrapes]),
        totals,
        _summed([one.batch_phases for one in scrapes]),
        _summed([one.loop_health for one in scrapes]),
    )


def _summed(histograms: Sequence[Buckets]) -> Buckets:
    summed: dict[str, dict[float, float]] = {}
    for buckets in histograms:
        for label, points in buckets.items():
            into = summed.setdefault(label, {})
            for bound, count in points:
                into[bound] = into.get(bound, 0.0) + count
    return {label: sorted(points.items()) for label, points in summed.items()}


def parse(text: str) -> Scrape:
    """One ``/metrics`` page's event-age buckets and group-commit totals."""
    ages: Buckets = {}
    phases: Buckets = {}
    health: Buckets = {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in WRITE_TOTALS:
                totals[WRITE_TOTALS[sample.name]] = sample.value
            elif family.name == AGE_METRIC and sample.name.endswith("_bucket"):
                ages.setdefault(sample.labels["hop"], []).append((float(sample.labels["le"]), sample.value))
            elif family.name == PHASE_METRIC and sample.name.endswith("_bucket"):
                point = (float(sample.labels["le"]), sample.value)
                phases.setdefault(sample.labels["phase"], []).append(point)
            elif family.name in (LAG_METRIC, GC_METRIC) and sample.name.endswith("_bucket"):
                key = "lag" if family.name == LAG_METRIC else f"gc{sample.labels['generation']}"
                health.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
    return Scrape(
        {hop: sorted(points) for hop, points in ages.items()},
        totals,
        {phase: sorted(points) for phase, points in phases.items()},
        {key: sorted(points) for key, points in health.items()},
    )


def median_ms(before: Scrape, after: Scrape) -> dict[str, float]:
    """Each hop's median event age (ms) over what was observed between the two scrapes."""
    return quantile_ms(before, after, 0.5)


def quantile_ms(before: Scrape, after: Scrape, q: float) -> dict[str, float]:
    """Each hop's ``q`` quantile of event age (ms) between the two scrapes, interpolated within
    the histogram bucket it falls in (the top bucket's lower bound if it is the open one)."""
    return _quantiles_ms(before.ages, after.ages, q)


def batch_phase_ms(before: Scrape, after: Scrape, q: float) -> dict[str, float]:
    """The ``q`` quantile (ms) of each phase of the group-commit batches between the scrapes
    (handoff, check, seqs, rows, commit: see ``BatchTiming``)."""
    return _quantiles_ms(before.batch_phases, after.batch_phases, q)


def loop_health(before: Scrape, after: Scrape) -> dict[str, float]:
    """One process's loop between the scrapes: its lag p99 and how often it ran 50+ ms late
    (``lag_p99_ms``, ``stalls``), and its full collections (``gc2``: how many, their p99)."""
    p99 = _quantiles_ms(before.loop_health, after.loop_health, 0.99)
    figures = {"lag_p99_ms": p99.get("lag", 0.0), "stalls": _above(before, after, "lag", 0.05)}
    figures["gc2"] = _above(before, after, "gc2", 0.0)
    figures["gc2_p99_ms"] = p99.get("gc2", 0.0)
    return figures


def _above(before: Scrape, after: Scrape, key: str, seconds: float) -> float:
    """Observations of ``key`` above ``seconds`` (a bucket bound) between the scrapes."""

    def above(points: list[tuple[float, float]]) -> float:
        if not points:
            return 0.0
        within = max((count for bound, count in points if bound <= seconds), default=0.0)
        return points[-1][1] - within

    return above(after.loop_health.get(key, [])) - above(before.loop_health.get(key, []))


def _quantiles_ms(before: Buckets, after: Buckets, q: float) -> dict[str, float]:
    quantiles: dict[str, float] = {}
    for hop, points in after.items():
        earlier = dict(before.get(hop, []))
        counts = [(bound, count - earlier.get(bound, 0.0)) for bound, count in points]
        total = counts[-1][1]
        if total <= 0:
            continue
        rank = total * q
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in counts:
            if count >= rank:
                if bound == float("inf"):
                    quantiles[hop] = lower_bound * 1000
                else:
                    share = (rank - lower_count) / max(count - lower_count, 1e-9)
                    quantiles[hop] = (lower_bound + share * (bound - lower_bound)) * 1000
                break
            lower_bound, lower_count = bound, count
    return quantiles


def write_batches(before: Scrape, after: Scrape) -> dict[str, float]:
    """Group commit between the two scrapes: mean sends per batch and mean batch time (ms)."""

    def delta(key: str) -> float:
        return after.write_totals.get(key, 0.0) - before.write_totals.get(key, 0.0)

    batches = delta("batches")
    if batches <= 0:
        return {}
    return {"batch_sends": delta("sends") / batches, "batch_ms": delta("seconds") / batches * 1000}


def frames_per_write(before: Scrape, after: Scrape) -> float:
    """WebSocket frames per socket write between the two scrapes (0 if nothing was written): how
    much the realtime node's write coalescing saves over one write per frame."""
    frames, writes = (
        after.write_totals.get(k, 0.0) - before.write_totals.get(k, 0.0) for k in ("frames", "socket_writes")
    )
    return frames / writes if writes > 0 else 0.0
