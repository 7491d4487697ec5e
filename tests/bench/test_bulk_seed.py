"""The bulk seeder (``bench.bulk_seed``): what it writes straight into the store is what users
see through the API — history pages in seq order, search hits with the counts the seeded text
implies — and seeding again changes nothing (or tops up to the new total).

Run against the embedded all-in-one and, when the engines are configured (``PARLEY_TEST_*``),
against MariaDB + Kafka + Redis + Elasticsearch, each as a real server process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from bench.bulk_seed import (
    Corpus,
    SeedPlan,
    SeedSpec,
    channel_messages,
    rebuild_search_index,
    set_up_via_api,
    settings_from_env,
    write_messages,
)
from bench.clients import api
from bench.server import EngineUrls, ParleyServer
from parley.ids import id_time_ms
from tests.engines import engine_url

SPEC = SeedSpec(messages=1_000, channels=2, authors=3, prefix="seedtest")
PAGE = 100


def _engine_urls() -> EngineUrls:
    parts = urlsplit(engine_url("mysql"))
    return EngineUrls(
        database=urlunsplit((parts.scheme, parts.netloc, "", "", "")),  # a database is made per server
        kafka=engine_url("kafka"),
        redis=engine_url("redis"),
        elasticsearch=engine_url("elasticsearch"),
    )


@pytest.fixture(params=["embedded", "engines"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ParleyServer]:
    urls = _engine_urls() if request.param == "engines" else None
    running = ParleyServer(request.param, urls=urls)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def _seed(server: ParleyServer, spec: SeedSpec) -> tuple[SeedPlan, int]:
    """The scenario's order: set up through the API, then stop the server for the store and the
    index, then start it again on the same data."""
    async with api(server.url) as http:
        plan = await set_up_via_api(http, spec)
    settings = settings_from_env(server.parley_env)
    await server.terminate()
    report = await write_messages(settings.effective_database_url, plan, spec)
    if report.inserted:
        await rebuild_search_index(settings)
    await server.start()
    return plan, report.inserted


async def _get(http: httpx.AsyncClient, path: str, plan: SeedPlan, **params: Any) -> Any:
    r = await http.get(path, params=params, headers=plan.reader.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def _whole_history(
    http: httpx.AsyncClient, plan: SeedPlan, conversation_id: int
) -> list[dict[str, Any]]:
    """Every message of a channel, newest first, through the first page and ``before=`` cursors."""
    path = f"/conversations/{conversation_id}/messages"
    messages: list[dict[str, Any]] = []
    page = (await _get(http, path, plan, limit=PAGE))["messages"]
    while page:
        messages += page
        page = (await _get(http, path, plan, limit=PAGE, before=page[-1]["seq"]))["messages"]
    return messages


async def _total(http: httpx.AsyncClient, plan: SeedPlan, q: str, **filters: Any) -> int:
    return int((await _get(http, "/search", plan, q=q, limit=5, **filters))["total"])


async def test_seeded_messages_are_readable_and_searchable(server: ParleyServer) -> None:
    plan, inserted = await _seed(server, SPEC)
    assert inserted == SPEC.messages
    corpus = Corpus(SPEC.seed, SPEC.vocabulary)
    author_ids = [int(a.id) for a in plan.accounts]
    async with api(server.url) as http:
        for index, conversation_id in enumerate(plan.channel_ids):
            texts, authors = channel_messages(SPEC, corpus, index, author_ids)
            history = await _whole_history(http, plan, conversation_id)
            # Only seeded messages: the joins took seqs before them, but they are events, not messages.
            seeded = history
            assert [m["text"] for m in reversed(seeded)] == texts
            assert [int(m["user_id"]) for m in reversed(seeded)] == authors
            seqs = [int(m["seq"]) for m in history]
            assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
            info = await _get(http, f"/conversations/{conversation_id}", plan)
            assert int(info["conversation"]["last_seq"]) == seqs[0]
            assert info["unread_count"] == 0  # an import is old history
            # Ids are snowflakes of the message's own time, in seq order.
            ids = [int(m["id"]) for m in reversed(seeded)]
            assert ids == sorted(ids)
            assert all(abs(id_time_ms(int(m["id"])) - _epoch_ms(m["created_at"])) < 1 for m in history[:50])
        # Search counts match the text: every word stays itself (no stemming merges them).
        channel0 = plan.channel_ids[0]
        texts0, authors0 = channel_messages(SPEC, corpus, 0, author_ids)
        texts1, authors1 = channel_messages(SPEC, corpus, 1, author_ids)
        everything = list(zip(texts0 + texts1, authors0 + authors1, strict=True))
        author = author_ids[1]
        for rank in (1, 7, 60):
            word = corpus.word(rank)
            in0 = sum(word in text.split() for text in texts0)
            everywhere = sum(word in text.split() for text, _ in everything)
            from_author = sum(word in text.split() and by == author for text, by in everything)
            assert in0 > 0 and from_author > 0
            assert await _total(http, plan, word) == everywhere
            assert await _total(http, plan, word, conversation_id=channel0) == in0
            assert await _total(http, plan, word, from_user_id=author) == from_author
        two = f"{corpus.word(2)} {corpus.word(3)}"
        both = sum(set(two.split()) <= set(t.split()) for t in texts0 + texts1)
        assert await _total(http, plan, two) == both


def _epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


async def test_seeding_again_changes_nothing_and_a_larger_total_tops_up(server: ParleyServer) -> None:
    plan, _ = await _seed(server, SPEC)
    async with api(server.url) as http:
        before = [len(await _whole_history(http, plan, c)) for c in plan.channel_ids]
        word_total = await _total(http, plan, Corpus(SPEC.seed).word(1))
    again, inserted = await _seed(server, SPEC)
    assert inserted == 0
    assert again.channel_ids == plan.channel_ids and again.workspace_id == plan.workspace_id
    async with api(server.url) as http:
        assert [len(await _whole_history(http, again, c)) for c in again.channel_ids] == before
        assert await _total(http, again, Corpus(SPEC.seed).word(1)) == word_total
    bigger = replace(SPEC, messages=SPEC.messages + 200)
    topped, inserted = await _seed(server, bigger)
    assert inserted == 200
    async with api(server.url) as http:
        for index, conversation_id in enumerate(topped.channel_ids):
            history = await _whole_history(http, topped, conversation_id)
            assert len(history) == bigger.share(index)
            seqs = [int(m["seq"]) for m in history]
            assert seqs == list(range(seqs[0], seqs[0] - len(seqs), -1))  # no gap, no duplicate
