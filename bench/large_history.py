"""history-1m: history first page and search latency over a million stored messages (issue 5).

Set-up, once per invocation and mode (seeding a million messages three times would be a waste):
a server starts, ``bench.bulk_seed`` makes 20 accounts, a workspace and ``--bulk-channels`` (100)
channels through the API, the server stops, ``--bulk-messages`` (1,000,000) messages are written
straight into the store (10,000 per channel) and the search index is rebuilt from the store by
Parley's ``reindex``. Each run then starts the server again on that data (a fresh process: cold
in-process caches and connection pools; MariaDB, Elasticsearch and Redis keep running, so
their caches stay warm, and the Redis history cache keeps the pages run 1 filled) and, after one
unmeasured pass over every channel and query, one keep-alive HTTP client (one request at a
time: each figure is a latency without queueing) interleaves:

- ``first page``: ``GET …/messages?limit=20`` on channel i mod 100: served from the recent-history
  cache (filled by the warm-up pass);
- ``cursor``: the same page via ``?before=<last seq + 1>``: always read from the store;
- ``deep page``: ``?before=<middle seq>``: the store, 5,000 messages into the channel;
- ``search common``: one of the 5 most common words over all 100 channels (each word is in 23–71 %
  of the messages: the engine counts and ranks hundreds of thousands of hits);
- ``search rare``: one of the 500 rarest words (a few hundred hits each in 1M);
- ``search two words``: two words of ranks 20–60 (both must occur; ~1,000–3,000 hits);
- ``search in:``: a common word within one channel (``conversation_id=``, the API's ``in:``);
- ``search from:``: a common word from one author (``from_user_id=``, the API's ``from:``).

Every answer is checked: a full page of history below the cursor, search hits present when the
seeded text says the word is (expected ≥ 20 documents), and ``in:``/``from:`` hits from that
channel/author only. Seeding figures (rows/s into the store, documents/s into the index) are
those of the one seeding, reported with run 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.bulk_seed import (
    Corpus,
    SeedPlan,
    SeedSpec,
    rebuild_search_index,
    set_up_via_api,
    settings_from_env,
    write_messages,
)
from bench.clients import api
from bench.machine import load_average
from bench.scenario import UNLIMITED_RATE, Figure, Options, Scenario, progress
from bench.server import Mode, ParleyServer
from bench.stats import summarize_ms

WARMUP_ROUNDS = 1
COMMON_RANKS = 5  # the 5 most common words
RARE_RANKS = 500  # the 500 rarest
TWO_WORD_RANKS = range(20, 61)
MIN_EXPECTED_HITS = 20.0  # below this, a word may legitimately be absent: no hits > 0 check

HISTORY_VARIANTS = ("first", "cursor", "deep")
SEARCH_VARIANTS = ("common", "rare", "two", "in", "from")

FIGURES = [
    Figure("first_p50_ms", "first page p50 ms"),
    Figure("first_p99_ms", "first page p99 ms"),
    Figure("cursor_p50_ms", "same page via cursor p50 ms"),
    Figure("cursor_p99_ms", "cursor p99 ms"),
    Figure("deep_p50_ms", "deep page p50 ms"),
    Figure("deep_p99_ms", "deep page p99 ms"),
    Figure("common_p50_ms", "search common p50 ms"),
    Figure("common_p99_ms", "common p99 ms"),
    Figure("rare_p50_ms", "search rare p50 ms"),
    Figure("rare_p99_ms", "rare p99 ms"),
    Figure("two_p50_ms", "search two words p50 ms"),
    Figure("two_p99_ms", "two words p99 ms"),
    Figure("in_p50_ms", "search in: p50 ms"),
    Figure("in_p99_ms", "in: p99 ms"),
    Figure("from_p50_ms", "search from: p50 ms"),
    Figure("from_p99_ms", "from: p99 ms"),
    Figure("seed_rows_per_s", "store rows/s (seeding)"),
    Figure("seed_index_per_s", "index docs/s (seeding)"),
    Figure("load1", "load avg"),
]


@dataclass
class _Seeded:
    """One mode's seeded data: the (stopped) server that owns it, kept across the runs."""

    server: ParleyServer
    plan: SeedPlan
    spec: SeedSpec
    last_seqs: dict[int, int] = field(default_factory=dict)
    seed_figures: dict[str, float] = field(default_factory=dict)
    runs_left: int = 0


_seeded: dict[Mode, _Seeded] = {}


async def _seed(options: Options, mode: Mode) -> _Seeded:
    spec = SeedSpec(messages=options.bulk_messages, channels=options.bulk_channels)
    server = ParleyServer(
        mode, settings=UNLIMITED_RATE, urls=options.urls, repo=options.deployment.server_repo
    )
    progress(f"history-1m: seeding {spec.messages:,} messages in {spec.channels} channels ({mode})")
    await server.start()
    try:
        async with api(server.url) as http:
            plan = await set_up_via_api(http, spec)
        settings = settings_from_env(server.parley_env)
        # The store and the index get the data to themselves: FTS5 belongs to one process, and
        # the restart empties the history cache, which never saw these messages.
        await server.terminate()
        written = await write_messages(settings.effective_database_url, plan, spec)
        indexed, index_seconds = await rebuild_search_index(settings)
    except BaseException:
        progress(f"seeding failed; server log tail:\n{server.log_tail(1500)}")
        await server.stop()
        raise
    progress(
        f"seeded {written.inserted:,} rows in {written.seconds:.1f} s ({written.rows_per_s:,.0f} rows/s); "
        f"index rebuilt: {indexed:,} docs in {index_seconds:.1f} s ({indexed / index_seconds:,.0f} docs/s)"
    )
    return _Seeded(
        server,
        plan,
        spec,
        seed_figures={"seed_rows_per_s": written.rows_per_s, "seed_index_per_s": indexed / index_seconds},
        runs_left=options.runs,
    )


async def run_once(options: Options, mode: Mode) -> dict[str, float]:
    seeded = _seeded.get(mode)
    if seeded is None:
        seeded = _seeded[mode] = await _seed(options, mode)
    seeded.runs_left -= 1
    finished = False
    try:
        server = seeded.server
        progress(f"restarting the server on the seeded data ({mode}); load average {load_average()}")
        await server.start()
        try:
            result = await _measure(seeded, server, options)
        except BaseException:
            progress(f"run failed; server log tail:\n{server.log_tail(1500)}")
            raise
        finally:
            await server.terminate()
        result |= seeded.seed_figures
        seeded.seed_figures = {}  # the one seeding is reported once
        finished = seeded.runs_left <= 0
        return result
    except BaseException as exc:
        # Interrupted (Ctrl-C, SIGTERM): no run follows, remove the data now.
        finished = finished or seeded.runs_left <= 0 or not isinstance(exc, Exception)
        raise
    finally:
        if finished:
            _seeded.pop(mode, None)
            await seeded.server.stop()  # the database, index and topics go with it


Check = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class _Request:
    path: str
    params: dict[str, Any]
    check: Check


def _history_request(seeded: _Seeded, variant: str, i: int, limit: int) -> _Request:
    channel = seeded.plan.channel_ids[i % len(seeded.plan.channel_ids)]
    last_seq = seeded.last_seqs[channel]
    params: dict[str, Any] = {"limit": limit}
    before = None
    if variant == "cursor":
        before = last_seq + 1
    elif variant == "deep":
        before = last_seq - seeded.spec.share(0) // 2
    if before is not None:
        params["before"] = before

    def check(body: dict[str, Any]) -> None:
        seqs = [int(m["seq"]) for m in body["messages"]]
        if len(seqs) != limit or seqs != sorted(seqs, reverse=True):
            raise RuntimeError(f"history {variant}: {len(seqs)} messages, seqs {seqs[:5]}…")
        if seqs[0] != (last_seq if before is None else before - 1):
            raise RuntimeError(f"history {variant}: page starts at seq {seqs[0]} (before={before})")

    return _Request(f"/conversations/{channel}/messages", params, check)


def _search_request(seeded: _Seeded, corpus: Corpus, variant: str, i: int) -> _Request:
    plan, spec = seeded.plan, seeded.spec
    channel = plan.channel_ids[i % len(plan.channel_ids)]
    author = int(plan.accounts[i % len(plan.accounts)].id)
    common = 1 + i % COMMON_RANKS
    params: dict[str, Any] = {"limit": 20}
    if variant == "rare":
        ranks = [spec.vocabulary - i % RARE_RANKS]
    elif variant == "two":
        first = TWO_WORD_RANKS[i % len(TWO_WORD_RANKS)]
        second = TWO_WORD_RANKS[(i * 7 + 3) % len(TWO_WORD_RANKS)]
        ranks = [first, second if second != first else first + 1]
    else:
        ranks = [common]
    params["q"] = " ".join(corpus.word(r) for r in ranks)
    scope = spec.messages
    if variant == "in":
        params["conversation_id"] = channel
        scope = spec.share(0)
    elif variant == "from":
        params["from_user_id"] = author
        scope = spec.messages // len(plan.accounts)
    expected = float(scope)
    for r in ranks:
        expected *= corpus.doc_fraction(r)

    def check(body: dict[str, Any]) -> None:
        total, matches = int(body["total"]), body["matches"]
        if expected >= MIN_EXPECTED_HITS and total == 0:
            raise RuntimeError(f"search {variant} {params}: no hits, ~{expected:,.0f} expected")
        if len(matches) != min(20, total):
            raise RuntimeError(f"search {variant}: {len(matches)} matches of {total}")
        if variant == "in" and any(int(m["message"]["conversation_id"]) != channel for m in matches):
            raise RuntimeError("search in: a hit from another conversation")
        if variant == "from" and any(int(m["message"]["user_id"]) != author for m in matches):
            raise RuntimeError("search from: a hit by another author")

    return _Request("/search", params, check)


async def _timed(http: httpx.AsyncClient, headers: dict[str, str], request: _Request) -> int:
    started = time.perf_counter_ns()
    response = await http.get(request.path, params=request.params, headers=headers)
    elapsed = time.perf_counter_ns() - started
    if response.status_code != 200:
        raise RuntimeError(
            f"{request.path} {request.params}: HTTP {response.status_code}: {response.text[:200]}"
        )
    request.check(response.json())
    return elapsed


async def _measure(seeded: _Seeded, server: ParleyServer, options: Options) -> dict[str, float]:
    corpus = Corpus(seeded.spec.seed, seeded.spec.vocabulary)
    headers = seeded.plan.reader.headers
    channels = len(seeded.plan.channel_ids)
    async with api(server.url) as http:
        for channel in seeded.plan.channel_ids:
            info = (await http.get(f"/conversations/{channel}", headers=headers)).json()
            seeded.last_seqs[channel] = int(info["conversation"]["last_seq"])
        # Warm-up (unmeasured): every channel's first page once (fills the history cache, as
        # any reader would), and each search kind a few times.
        for i in range(channels * WARMUP_ROUNDS):
            for variant in HISTORY_VARIANTS:
                await _timed(http, headers, _history_request(seeded, variant, i, options.history_limit))
        for i in range(3):
            for variant in SEARCH_VARIANTS:
                await _timed(http, headers, _search_request(seeded, corpus, variant, i))
        latencies: dict[str, list[int]] = {v: [] for v in (*HISTORY_VARIANTS, *SEARCH_VARIANTS)}
        rounds = max(options.bulk_history_requests, options.bulk_searches)
        progress(
            f"measuring: {options.bulk_history_requests} requests per history variant, "
            f"{options.bulk_searches} per search kind"
        )
        started = time.monotonic()
        for i in range(rounds):
            # Interleaved, so drifting load hits every variant alike.
            if i < options.bulk_history_requests:
                for variant in HISTORY_VARIANTS:
                    request = _history_request(seeded, variant, i, options.history_limit)
                    latencies[variant].append(await _timed(http, headers, request))
            if i < options.bulk_searches:
                for variant in SEARCH_VARIANTS:
                    request = _search_request(seeded, corpus, variant, i)
                    latencies[variant].append(await _timed(http, headers, request))
            if (i + 1) % 50 == 0:
                progress(f"round {i + 1}/{rounds} ({time.monotonic() - started:.0f} s)")
    result: dict[str, float] = {}
    for variant, values in latencies.items():
        result |= summarize_ms(values, variant)
    progress(
        "history-1m: "
        + ", ".join(
            f"{v} p50 {result[f'{v}_p50_ms']:.1f} / p99 {result[f'{v}_p99_ms']:.1f} ms" for v in latencies
        )
    )
    return result


SCENARIO = Scenario(
    name="history-1m",
    summary="history first page and search p50/p99 over 1M stored messages, bulk-seeded (issue 5)",
    figures=FIGURES,
    run_once=run_once,
)
