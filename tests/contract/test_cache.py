"""Contract of the cache-side ports (``parley.ports.cache``), run against every adapter.

Redis adapters get a random key prefix per test (and their keys are deleted afterwards), so runs
sharing one Redis do not see each other's keys.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio
import redis.exceptions

from parley.adapters.cache.memory import MemoryHistoryCache, MemoryPresence, MemoryRateLimiter
from parley.adapters.cache.redis import (
    RedisHistoryCache,
    RedisPresence,
    RedisRateLimiter,
    redis_client,
)
from parley.ports.cache import CachedHistory, HistoryCache, HistoryUpdate, Presence, RateLimiter
from tests.engines import engine_url

CONVERSATION = 42
KEEP = 50


@dataclass(frozen=True)
class RedisNamespace:
    client: redis.asyncio.Redis
    prefix: str


@pytest.fixture(params=["memory", "redis"])
async def redis_namespace(request: pytest.FixtureRequest) -> AsyncIterator[RedisNamespace | None]:
    """None for the in-memory adapters; else a client and a fresh key prefix, cleaned up after."""
    if request.param == "memory":
        yield None
        return
    client = redis_client(engine_url("redis"))
    namespace = RedisNamespace(client, prefix=f"test:{uuid.uuid4().hex}:")
    yield namespace
    async for key in client.scan_iter(match=f"{namespace.prefix}*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def history(redis_namespace: RedisNamespace | None) -> HistoryCache:
    if redis_namespace is None:
        return MemoryHistoryCache()
    return RedisHistoryCache(redis_namespace.client, prefix=redis_namespace.prefix)


@pytest.fixture
def presence(redis_namespace: RedisNamespace | None) -> Presence:
    if redis_namespace is None:
        return MemoryPresence()
    return RedisPresence(redis_namespace.client, prefix=redis_namespace.prefix)


@pytest.fixture
def limiter(redis_namespace: RedisNamespace | None) -> RateLimiter:
    if redis_namespace is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(redis_namespace.client, prefix=redis_namespace.prefix)


def page(watermark: int, *seqs: int) -> CachedHistory:
    """A cached page whose messages are named after their seq, newest first."""
    return CachedHistory(watermark=watermark, messages=[message(seq) for seq in seqs])


def message(seq: int) -> bytes:
    return f'{{"seq": {seq}}}'.encode()


# History cache.


async def test_history_is_absent_until_filled(history: HistoryCache) -> None:
    assert await history.get(CONVERSATION) is None


async def test_fill_then_get_returns_the_page(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4, 3))

    assert await history.get(CONVERSATION) == page(5, 5, 4, 3)


async def test_an_empty_conversation_is_cached_as_empty_not_absent(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(0))

    assert await history.get(CONVERSATION) == page(0)


async def test_a_large_page_round_trips_in_order(history: HistoryCache) -> None:
    seqs = list(range(2500, 0, -1))

    await history.fill(CONVERSATION, page(2500, *seqs))

    assert await history.get(CONVERSATION) == page(2500, *seqs)


async def test_conversations_are_cached_independently(history: HistoryCache) -> None:
    await history.fill(1, page(3, 3))
    await history.fill(2, page(7, 7))

    await history.append(1, 4, message(4), KEEP)
    await history.advance(2, 9)

    assert await history.get(1) == page(4, 4, 3)
    assert await history.get(2) is None


async def test_append_at_the_next_seq_adds_the_newest_message(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4))

    await history.append(CONVERSATION, 6, message(6), KEEP)
    await history.append(CONVERSATION, 7, message(7), KEEP)

    assert await history.get(CONVERSATION) == page(7, 7, 6, 5, 4)


async def test_append_after_a_gap_drops_the_entry(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4))

    await history.append(CONVERSATION, 7, message(7), KEEP)  # seq 6 never arrived

    assert await history.get(CONVERSATION) is None


async def test_append_is_idempotent(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4))

    await history.append(CONVERSATION, 6, message(6), KEEP)
    await history.append(CONVERSATION, 6, message(6), KEEP)  # redelivered
    await history.append(CONVERSATION, 5, message(5), KEEP)  # an older one, redelivered

    assert await history.get(CONVERSATION) == page(6, 6, 5, 4)


async def test_append_without_an_entry_leaves_it_absent(history: HistoryCache) -> None:
    await history.append(CONVERSATION, 1, message(1), KEEP)

    assert await history.get(CONVERSATION) is None


async def test_apply_has_the_effect_of_its_updates_in_order(history: HistoryCache) -> None:
    """The cache consumer hands a batch over in one call: the same as append/advance one by one."""
    await history.fill(CONVERSATION, CachedHistory(watermark=5, messages=[message(5)]))
    await history.fill(1, CachedHistory(watermark=3, messages=[message(3)]))
    await history.apply(
        [
            HistoryUpdate(CONVERSATION, 6, message(6)),
            HistoryUpdate(CONVERSATION, 6, message(6)),  # redelivered: no effect
            HistoryUpdate(1, 4, message(4)),
            HistoryUpdate(CONVERSATION, 7, message(7)),
            HistoryUpdate(1, 6, message(6)),  # seq 5 of conversation 1 missing: entry dropped
        ],
        KEEP,
    )
    assert await history.get(CONVERSATION) == CachedHistory(7, [message(7), message(6), message(5)])
    assert await history.get(1) is None
    await history.apply([HistoryUpdate(CONVERSATION, 8)], KEEP)  # an edit, say: drop
    assert await history.get(CONVERSATION) is None
    await history.apply([], KEEP)


async def test_append_keeps_only_the_newest_messages(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(3, 3, 2, 1))

    await history.append(CONVERSATION, 4, message(4), keep=2)
    await history.append(CONVERSATION, 5, message(5), keep=2)

    assert await history.get(CONVERSATION) == page(5, 5, 4)


async def test_advance_past_the_watermark_drops_the_entry(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4))

    await history.advance(CONVERSATION, 6)  # e.g. an edit the cache has not applied

    assert await history.get(CONVERSATION) is None


async def test_advance_up_to_the_watermark_keeps_the_entry(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4))

    await history.advance(CONVERSATION, 5)  # already reflected
    await history.advance(CONVERSATION, 3)  # redelivered old event

    assert await history.get(CONVERSATION) == page(5, 5, 4)


async def test_advance_without_an_entry_is_harmless(history: HistoryCache) -> None:
    await history.advance(CONVERSATION, 3)

    assert await history.get(CONVERSATION) is None


async def test_fill_does_not_overwrite_a_newer_watermark(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4))
    await history.append(CONVERSATION, 6, message(6), KEEP)

    await history.fill(CONVERSATION, page(5, 5, 4))  # a page read from the store before seq 6

    assert await history.get(CONVERSATION) == page(6, 6, 5, 4)


async def test_fill_replaces_an_older_watermark(history: HistoryCache) -> None:
    await history.fill(CONVERSATION, page(5, 5, 4))

    await history.fill(CONVERSATION, page(8, 8, 7))

    assert await history.get(CONVERSATION) == page(8, 8, 7)


async def test_history_cache_answers_ping(history: HistoryCache) -> None:
    await history.ping()


# Presence.


async def test_presence_returns_the_status_of_users_with_a_live_entry(presence: Presence) -> None:
    await presence.set(1, "active", ttl_seconds=60)
    await presence.set(2, "away", ttl_seconds=60)

    assert await presence.get_many([1, 2, 3]) == {1: "active", 2: "away"}


async def test_presence_set_replaces_the_status(presence: Presence) -> None:
    await presence.set(1, "active", ttl_seconds=60)
    await presence.set(1, "away", ttl_seconds=60)

    assert await presence.get_many([1]) == {1: "away"}


async def test_presence_of_nobody_is_empty(presence: Presence) -> None:
    assert await presence.get_many([]) == {}


async def test_presence_expires_after_its_ttl(presence: Presence) -> None:
    await presence.set(1, "active", ttl_seconds=1)
    await presence.set(2, "active", ttl_seconds=60)
    assert await presence.get_many([1, 2]) == {1: "active", 2: "active"}

    await asyncio.sleep(1.1)

    assert await presence.get_many([1, 2]) == {2: "active"}


# Rate limiter.


async def test_rate_limiter_allows_a_burst_then_says_how_long_to_wait(limiter: RateLimiter) -> None:
    key = f"user:{uuid.uuid4().hex}"
    allowed = [await limiter.acquire(key, rate_per_second=10, burst=3) for _ in range(3)]

    retry_after = await limiter.acquire(key, rate_per_second=10, burst=3)

    assert allowed == [0.0, 0.0, 0.0]
    assert 0.0 < retry_after <= 0.1 + 1e-6


async def test_rate_limiter_refills_over_time(limiter: RateLimiter) -> None:
    key = f"user:{uuid.uuid4().hex}"
    for _ in range(2):
        assert await limiter.acquire(key, rate_per_second=20, burst=2) == 0.0
    retry_after = await limiter.acquire(key, rate_per_second=20, burst=2)
    assert retry_after > 0.0

    await asyncio.sleep(retry_after + 0.01)

    assert await limiter.acquire(key, rate_per_second=20, burst=2) == 0.0
    assert await limiter.acquire(key, rate_per_second=20, burst=2) > 0.0


async def test_rate_limiter_concurrent_acquires_take_one_token_each(limiter: RateLimiter) -> None:
    """Many sends at once (one loop iteration; Redis gets them in one call): a bucket of 5 lets
    exactly 5 through, whichever keys share the call."""
    key, other = f"k-{uuid.uuid4().hex}", f"k-{uuid.uuid4().hex}"
    waits = await asyncio.gather(
        *(limiter.acquire(key, rate_per_second=0.5, burst=5) for _ in range(12)),
        limiter.acquire(other, rate_per_second=0.5, burst=5),
    )
    assert sum(1 for w in waits[:12] if w == 0.0) == 5
    assert all(w > 0.0 for w in waits[:12] if w != 0.0)
    assert waits[12] == 0.0


async def test_rate_limiter_keys_have_separate_buckets(limiter: RateLimiter) -> None:
    first, second = f"user:{uuid.uuid4().hex}", f"user:{uuid.uuid4().hex}"
    await limiter.acquire(first, rate_per_second=1, burst=1)
    assert await limiter.acquire(first, rate_per_second=1, burst=1) > 0.0

    assert await limiter.acquire(second, rate_per_second=1, burst=1) == 0.0


# Redis only.


async def test_redis_calls_after_their_connection_was_cut_succeed() -> None:
    url = engine_url("redis")
    name = f"parley-test-{uuid.uuid4().hex[:12]}"
    client = redis_client(f"{url}{'&' if '?' in url else '?'}client_name={name}")
    admin = redis.asyncio.Redis.from_url(url)
    prefix = f"test:{uuid.uuid4().hex}:"
    history = RedisHistoryCache(client, prefix=prefix)
    try:
        await history.fill(CONVERSATION, page(1, 1))
        # What a Redis restart does to pooled connections: they are closed server-side.
        killed = 0
        for connection in await admin.client_list(_type="normal"):
            if connection["name"] == name:
                killed += await admin.client_kill_filter(_id=connection["id"])
        assert killed >= 1

        # The stale connection is replaced within the call: no error reaches the caller.
        assert await history.get(CONVERSATION) == page(1, 1)
    finally:
        async for key in admin.scan_iter(match=f"{prefix}*"):
            await admin.delete(key)
        await client.aclose()
        await admin.aclose()


async def _script_exists_calls(admin: redis.asyncio.Redis) -> int:
    stats = await admin.info("commandstats")
    return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))


async def test_redis_history_apply_is_one_round_trip_and_reloads_flushed_scripts() -> None:
    """The cache consumer's batch: one pipeline, no ``SCRIPT EXISTS`` before it (which
    redis-py sends for a pipeline given registered scripts: a second round trip per batch);
    after a Redis restart has flushed the scripts, the batch still has its effect. (Nothing else
    in Parley sends ``SCRIPT EXISTS``, so the server-wide count is this test's.)"""
    url = engine_url("redis")
    client, admin = redis_client(url), redis.asyncio.Redis.from_url(url)
    prefix = f"test:{uuid.uuid4().hex}:"
    history = RedisHistoryCache(client, prefix=prefix)
    try:
        await history.fill(CONVERSATION, page(1, 1))
        before = await _script_exists_calls(admin)
        await history.apply([HistoryUpdate(CONVERSATION, 2, message(2))], KEEP)
        await history.apply([HistoryUpdate(CONVERSATION, 3, message(3))], KEEP)
        assert await _script_exists_calls(admin) == before
        assert await history.get(CONVERSATION) == page(3, 3, 2, 1)

        await admin.script_flush()  # what a restart does to the script cache
        await history.apply([HistoryUpdate(CONVERSATION, 4, message(4)), HistoryUpdate(7, 9)], KEEP)
        assert await history.get(CONVERSATION) == page(4, 4, 3, 2, 1)
    finally:
        async for key in admin.scan_iter(match=f"{prefix}*"):
            await admin.delete(key)
        await client.aclose()
        await admin.aclose()


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A Redis URL whose server accepts connections and never answers (a hung Redis)."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in connections:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("state", ["refusing", "silent"])
@pytest.mark.parametrize("operation", ["history", "presence", "rate limit"])
async def test_redis_down_fails_fast_instead_of_hanging(
    state: str, operation: str, silent_server: str
) -> None:
    client = redis_client("redis://127.0.0.1:1/0" if state == "refusing" else silent_server)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "history": lambda: RedisHistoryCache(client).get(CONVERSATION),
        "presence": lambda: RedisPresence(client).get_many([1]),
        "rate limit": lambda: RedisRateLimiter(client).acquire("k", rate_per_second=1, burst=1),
    }
    started = time.monotonic()
    try:
        with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            await calls[operation]()
    finally:
        await client.aclose()
    assert time.monotonic() - started < 2.0
