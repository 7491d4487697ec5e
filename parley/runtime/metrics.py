"""Prometheus metrics of the message flow (served at ``/metrics`` by every service)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

SENDS = Counter("parley_messages_sent_total", "Messages stored and acknowledged", ["via"])
REQUEST_LATENCY = Histogram(
    "parley_http_request_seconds",
    "REST request latency",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RELAYED = Counter("parley_outbox_relayed_total", "Outbox events published to the event log")
RELAY_PASSES = Counter(
    "parley_outbox_relay_passes_total",
    "Relay passes that published rows, by where the rows came from (table: read back; "
    "announced: told by the writers over pub/sub; feed: the all-in-one's commit feed)",
    ["source"],
)
RELAY_LAG = Gauge("parley_outbox_unpublished", "Unpublished outbox rows seen at the last relay scan")
CONSUMED = Counter("parley_events_consumed_total", "Events processed by a consumer group", ["group"])
DEAD_LETTERED = Counter(
    "parley_events_dead_lettered_total", "Events sent to the dead-letter topic", ["group"]
)
DELIVERED = Counter("parley_ws_events_delivered_total", "Events written to WebSocket clients")
SOCKET_WRITES = Counter("parley_ws_socket_writes_total", "Socket writes carrying those events")
GAP_FILLS = Counter("parley_ws_gap_fills_total", "Gaps in a conversation's stream filled from the store")
CONNECTIONS = Gauge("parley_ws_connections", "Open WebSocket connections on this node")
SLOW_CLOSES = Counter("parley_ws_slow_consumer_closes_total", "Sockets closed because their queue overflowed")
WRITE_BATCH_SIZE = Histogram(
    "parley_write_batch_sends",
    "Sends per group-commit batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
WRITE_BATCH_SECONDS = Histogram(
    "parley_write_batch_seconds",
    "Time from a batch's start to its commit (checks, seq, inserts, commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
# Fine between 5 and 250 ms, where the hops' and the batches' tails are: with a 50-100 ms bucket
# every p99 in it read as ~97 ms (bench/hops.py interpolates inside the bucket).
FINE_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075,
    0.1, 0.125, 0.15, 0.2, 0.25, 0.35, 0.5, 1, 2.5, 10,
)  # fmt: skip
WRITE_BATCH_PHASE_SECONDS = Histogram(
    "parley_write_batch_phase_seconds",
    "Where a group-commit batch's time goes (see MessageWriter's BatchTiming)",
    ["phase"],  # handoff, check, seqs (incl. row-lock waits on MySQL), rows, commit
    buckets=FINE_BUCKETS,
)
EVENT_AGE = Histogram(
    "parley_event_age_seconds",
    "Age of an event (since its commit-time timestamp) when a hop handles it",
    # "relay" (published to the event log), a consumer group (fanout, indexer, cache), or
    # "delivery" on a realtime node
    ["hop"],
    buckets=FINE_BUCKETS,
)

# Every service process (parley.runtime.loop_health): where a tail latency stalled.
EVENT_LOOP_LAG = Histogram(
    "parley_event_loop_lag_seconds",
    "How late the event loop ran a timer due every 50 ms: what any ready callback waited then",
    buckets=FINE_BUCKETS,
)
GC_PAUSE = Histogram(
    "parley_gc_pause_seconds",
    "Python garbage collections of generations 1 and 2: how long each stopped the process",
    ["generation"],
    buckets=FINE_BUCKETS,
)


def observe_age(hop: str, ts: datetime) -> None:
    observe_ages(hop, (ts,))


def observe_ages(hop: str, timestamps: Iterable[datetime]) -> None:
    """One clock read and one label lookup per batch: this runs for every event at every hop."""
    histogram = _age_by_hop.get(hop)
    if histogram is None:
        histogram = _age_by_hop[hop] = EVENT_AGE.labels(hop)
    now = datetime.now(UTC)
    for ts in timestamps:
        histogram.observe(max(0.0, (now - ts).total_seconds()))


_age_by_hop: dict[str, Histogram] = {}


def observe_batch_phases(seconds_by_phase: Mapping[str, float]) -> None:
    for phase, seconds in seconds_by_phase.items():
        WRITE_BATCH_PHASE_SECONDS.labels(phase).observe(seconds)
