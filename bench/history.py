"""history: latency of a conversation's first history page, from the cache and from the store.

Set-up: one account seeds ``history_messages`` messages into a channel over WebSockets. Then
one HTTP client (keep-alive, one request at a time, so each figure is a latency without
queueing) asks for pages, the variants interleaved so drifting load hits them alike:

- ``first page``: ``GET …/messages?limit=L`` (L = ``--history-limit``, 20). The domain serves it
  from the recent-history cache (in-memory or Redis) when L is below the cache size (50).
- ``first page, limit 50``: the API's default page size. Today this one is *not* cached: the
  cache is used only for ``limit < history_cache_size`` (50 < 50 is false), so it reads the store.
- ``same page via cursor``: ``?before=<last seq + 1>&limit=L``: the same messages as the first
  page, but a cursor request always reads the store (SQLite / MySQL): the uncached comparison.
- ``deep page``: ``?before=<middle seq>&limit=L``, the store halfway into the history.

Each request checks it got L messages; latencies include the client's HTTP stack on loopback.
"""

from __future__ import annotations

import time

import httpx

from bench.clients import api, create_room, open_sockets, send_many, sign_up
from bench.deployments import running_target
from bench.scenario import Figure, Options, Scenario, progress
from bench.server import Mode
from bench.stats import summarize_ms

SEED_SOCKETS = 8


def _variants(conversation_id: str, last_seq: int, limit: int) -> dict[str, dict[str, int]]:
    return {
        "cached": {"limit": limit},
        "default50": {"limit": 50},
        "cursor": {"limit": limit, "before": last_seq + 1},
        "deep": {"limit": limit, "before": max(limit + 1, last_seq // 2)},
    }


FIGURES = [
    Figure("cached_p50_ms", "first page p50 ms"),
    Figure("cached_p99_ms", "first page p99 ms"),
    Figure("default50_p50_ms", "limit=50 p50 ms"),
    Figure("default50_p99_ms", "limit=50 p99 ms"),
    Figure("cursor_p50_ms", "same page via cursor p50 ms"),
    Figure("cursor_p99_ms", "same page via cursor p99 ms"),
    Figure("deep_p50_ms", "deep page p50 ms"),
    Figure("deep_p99_ms", "deep page p99 ms"),
    Figure("seed_per_s", "seeding sends/s"),
    Figure("load1", "load avg"),
]


async def run_once(options: Options, mode: Mode) -> dict[str, float]:
    async with running_target(options, mode) as server, api(server.url) as http:
        account = await sign_up(http, f"h{server.tag}u")
        room = await create_room(http, [account], name="history")
        sockets = await open_sockets(server.ws_url, [account] * SEED_SOCKETS, compression=options.compression)
        progress(f"seeding {options.history_messages:,} messages")
        started = time.perf_counter_ns()
        texts = [f"history message {n} with a few more words in it" for n in range(options.history_messages)]
        last_ack = await send_many(sockets, room.conversation_id, texts, tag="seed", window=8)
        seed_rate = len(texts) / ((last_ack - started) / 1e9)
        for ws in sockets:
            await ws.close()
        conversation = (
            await http.get(f"/conversations/{room.conversation_id}", headers=account.headers)
        ).json()
        last_seq = int(conversation["conversation"]["last_seq"])
        variants = _variants(room.conversation_id, last_seq, options.history_limit)
        path = f"/conversations/{room.conversation_id}/messages"

        latencies: dict[str, list[int]] = {name: [] for name in variants}
        progress(
            f"seeded at {seed_rate:,.0f} sends/s; {options.history_requests} requests per variant "
            f"({', '.join(variants)}), last seq {last_seq}"
        )
        for round_ in range(options.history_requests + 20):  # the first 20 rounds warm up
            for name, params in variants.items():
                t = time.perf_counter_ns()
                response = await http.get(path, params=params, headers=account.headers)
                elapsed = time.perf_counter_ns() - t
                _check(response, params["limit"], name)
                if round_ >= 20:
                    latencies[name].append(elapsed)
        result = {"seed_per_s": seed_rate}
        for name, values in latencies.items():
            result |= summarize_ms(values, name)
        progress(
            "history: "
            + ", ".join(
                f"{n} p50 {result[f'{n}_p50_ms']:.2f} / p99 {result[f'{n}_p99_ms']:.2f} ms" for n in variants
            )
        )
        return result


def _check(response: httpx.Response, limit: int, variant: str) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{variant}: HTTP {response.status_code}: {response.text[:200]}")
    got = len(response.json()["messages"])
    if got != limit:
        raise RuntimeError(f"{variant}: expected {limit} messages, got {got}")


SCENARIO = Scenario(
    name="history",
    summary="first history page latency: cached vs read from the store (issue 3)",
    figures=FIGURES,
    run_once=run_once,
    modes=("embedded", "engines", "cluster", "url"),
)
