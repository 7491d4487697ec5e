"""indexer: how fast sent messages become searchable, and search latency afterwards.

Set-up: one account, one channel, a warm-up message found by search (the indexer runs, the
index exists). Then a burst of ``index_messages`` messages, each carrying a token unique to
the run, is sent over 8 sockets as fast as acks allow, while a poller asks
``GET /api/v1/search?q=<token>&conversation_id=…&limit=1`` every 50 ms until ``total`` reaches
the burst size.

- ``indexed docs/s``: burst size ÷ (all searchable − first send). The indexer consumes while the
  burst is still being sent, so when the index lag is short this figure is the send rate, and
  the indexer's capacity is at least that (its ceiling is higher than these sends can reach);
  the lag says by how much it trails.
- ``index lag``: all searchable − last ack (Elasticsearch adds its 1 s refresh interval).
- ``search p50/p99``: 200 searches for the token (``limit=20``, highlighted) once all is indexed;
  every stored message matches it, so each search counts and ranks the whole burst.
- ``rebuild docs/s``: the server is stopped and Parley's ``reindex`` (run by
  ``bench/reindex_timer.py`` for a millisecond clock) rebuilds the index from the store: the
  search engine's bulk-load rate, which the live figure above cannot show while sends are the
  slower side. It includes opening the store and the index, and reading the store.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from bench.clients import Account, api, create_room, open_sockets, send_many, sign_up
from bench.scenario import Figure, Options, Scenario, progress, running_server
from bench.server import Mode
from bench.stats import summarize_ms

BURST_SOCKETS = 8
SEARCH_TIMEOUT = 300.0
SEARCHES = 200

FIGURES = [
    Figure("docs_per_s", "indexed docs/s (burst)"),
    Figure("send_per_s", "burst sends/s"),
    Figure("index_lag_s", "index lag after last ack s"),
    Figure("search_p50_ms", "search p50 ms"),
    Figure("search_p99_ms", "search p99 ms"),
    Figure("rebuild_per_s", "rebuild docs/s"),
    Figure("load1", "load avg"),
]


async def _total(
    http: httpx.AsyncClient, account: Account, token: str, conversation_id: str, limit: int = 1
) -> int:
    r = await http.get(
        "/search",
        params={"q": token, "conversation_id": conversation_id, "limit": limit},
        headers=account.headers,
    )
    if r.status_code != 200:
        raise RuntimeError(f"search: HTTP {r.status_code}: {r.text[:200]}")
    return int(r.json()["total"])


async def _wait_searchable(
    http: httpx.AsyncClient, account: Account, token: str, conversation_id: str, expected: int
) -> int:
    """Poll until search finds ``expected`` documents; returns the ``perf_counter_ns`` of that."""
    deadline = time.monotonic() + SEARCH_TIMEOUT
    while True:
        found = await _total(http, account, token, conversation_id)
        if found >= expected:
            return time.perf_counter_ns()
        if time.monotonic() > deadline:
            raise RuntimeError(f"search found {found} of {expected} after {SEARCH_TIMEOUT} s")
        await asyncio.sleep(0.05)


async def run_once(options: Options, mode: Mode) -> dict[str, float]:
    async with running_server(options, mode) as server, api(server.url) as http:
        account = await sign_up(http, f"i{server.tag}u")
        room = await create_room(http, [account], name="indexer")
        sockets = await open_sockets(
            server.ws_url, [account] * BURST_SOCKETS, compression=options.compression
        )
        warm = f"warm{server.tag}"
        await send_many(sockets[:1], room.conversation_id, [f"warm-up {warm}"], tag="warm")
        await _wait_searchable(http, account, warm, room.conversation_id, 1)
        token = f"tok{server.tag}"
        count = options.index_messages
        texts = [f"indexer burst {token} message number {n} about lunch plans" for n in range(count)]
        progress(f"burst of {count:,} messages with token {token}")
        started = time.perf_counter_ns()
        sending = asyncio.create_task(send_many(sockets, room.conversation_id, texts, tag="burst", window=8))
        searchable = await _wait_searchable(http, account, token, room.conversation_id, count)
        last_ack = await sending
        latencies = []
        for _ in range(SEARCHES):
            t = time.perf_counter_ns()
            found = await _total(http, account, token, room.conversation_id, limit=20)
            latencies.append(time.perf_counter_ns() - t)
            if found != count:
                raise RuntimeError(f"search total changed to {found} (expected {count})")
        for ws in sockets:
            await ws.close()
        await server.terminate()
        rebuild = _rebuild_rate(await server.run_tool("bench.reindex_timer"))
        result = {
            "rebuild_per_s": rebuild,
            "docs_per_s": count / ((searchable - started) / 1e9),
            "send_per_s": count / ((last_ack - started) / 1e9),
            "index_lag_s": (searchable - last_ack) / 1e9,
            **summarize_ms(latencies, "search"),
        }
        progress(
            f"indexer: {result['docs_per_s']:,.0f} docs/s searchable, sends {result['send_per_s']:,.0f}/s, "
            f"lag {result['index_lag_s']:.2f} s; search p50 {result['search_p50_ms']:.1f} ms "
            f"p99 {result['search_p99_ms']:.1f} ms; rebuild {rebuild:,.0f} docs/s"
        )
        return result


def _rebuild_rate(output: str) -> float:
    """docs/s from ``bench.reindex_timer``'s line ``indexed N docs in X s``."""
    match = re.search(r"indexed (\d+) docs in ([0-9.]+) s", output)
    if match is None:
        raise RuntimeError(f"unexpected reindex output: {output[-500:]}")
    return int(match.group(1)) / float(match.group(2))


SCENARIO = Scenario(
    name="indexer",
    summary="documents/s made searchable from a burst; search latency (issue 3)",
    figures=FIGURES,
    run_once=run_once,
)
