"""In-process history cache, presence and rate limiter: the embedded defaults.

One process only: each process has its own cache, its own presence table and its own token
buckets, so with several api or realtime processes a user would get one rate limit *per process*
and see only the presence set through their own process. Multi-process deployments use
``parley.adapters.cache.redis``.

Every structure here is bounded or swept, so a long-running embedded server does not grow without
limit: the history cache evicts the least recently used conversation, expired presence entries
and idle (full) token buckets are swept out periodically.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parley.ports.cache import CachedHistory, HistoryCache, HistoryUpdate, Presence, RateLimiter

Clock = Callable[[], float]

SWEEP_INTERVAL_SECONDS = 60.0


def _check_keep(keep: int) -> None:
    if keep < 1:
        raise ValueError("keep must be at least 1")


@dataclass(slots=True)
class _History:
    watermark: int
    messages: list[bytes]  # newest first


class MemoryHistoryCache:
    """Recent history per conversation, least recently used evicted beyond ``max_conversations``."""

    def __init__(self, *, max_conversations: int = 10_000) -> None:
        self._max_conversations = max_conversations
        self._entries: OrderedDict[int, _History] = OrderedDict()

    async def get(self, conversation_id: int) -> CachedHistory | None:
        entry = self._entries.get(conversation_id)
        if entry is None:
            return None
        self._entries.move_to_end(conversation_id)
        # Copies: a caller mutating its page must not change the cache.
        return CachedHistory(watermark=entry.watermark, messages=list(entry.messages))

    async def fill(self, conversation_id: int, page: CachedHistory) -> None:
        current = self._entries.get(conversation_id)
        if current is not None and current.watermark > page.watermark:
            # A page read from the store before newer events were appended: keep the newer one.
            return
        self._entries[conversation_id] = _History(page.watermark, list(page.messages))
        self._entries.move_to_end(conversation_id)
        while len(self._entries) > self._max_conversations:
            self._entries.popitem(last=False)

    async def append(self, conversation_id: int, seq: int, message: bytes, keep: int) -> None:
        _check_keep(keep)
        entry = self._entries.get(conversation_id)
        if entry is None or entry.watermark >= seq:
            # Nothing cached (the next read fills from the store), or a redelivered event.
            return
        if entry.watermark != seq - 1:
            del self._entries[conversation_id]
            return
        entry.messages.insert(0, message)
        del entry.messages[keep:]
        entry.watermark = seq

    async def advance(self, conversation_id: int, seq: int) -> None:
        entry = self._entries.get(conversation_id)
        if entry is not None and entry.watermark < seq:
            del self._entries[conversation_id]

    async def apply(self, updates: Sequence[HistoryUpdate], keep: int) -> None:
        for update in updates:
            if update.message is None:
                await self.advance(update.conversation_id, update.seq)
            else:
                await self.append(update.conversation_id, update.seq, update.message, keep)

    async def ping(self) -> None:
        pass


class MemoryPresence:
    """Status per user with a time-to-live measured on the monotonic clock (immune to wall-clock
    jumps). Expired entries are invisible at once and swept out every minute."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[int, tuple[str, float]] = {}  # user id → (status, expires at)
        self._next_sweep = clock() + SWEEP_INTERVAL_SECONDS

    async def set(self, user_id: int, status: str, ttl_seconds: int) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        now = self._clock()
        self._entries[user_id] = (status, now + ttl_seconds)
        self._sweep(now)

    async def get_many(self, user_ids: Sequence[int]) -> dict[int, str]:
        now = self._clock()
        statuses: dict[int, str] = {}
        for user_id in user_ids:
            entry = self._entries.get(user_id)
            if entry is not None and entry[1] > now:
                statuses[user_id] = entry[0]
        return statuses

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_SECONDS
        expired = [user_id for user_id, (_, expires_at) in self._entries.items() if expires_at <= now]
        for user_id in expired:
            del self._entries[user_id]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float
    full_after: float  # seconds from empty to full: an idle bucket this old can be forgotten


class MemoryRateLimiter:
    """Token buckets: ``burst`` tokens, refilled at ``rate_per_second``; one token per call."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL_SECONDS

    async def acquire(self, key: str, rate_per_second: float, burst: int) -> float:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be positive and burst at least 1")
        now = self._clock()
        self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(burst), updated_at=now, full_after=burst / rate_per_second)
            self._buckets[key] = bucket
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated_at) * rate_per_second)
        bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate_per_second

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled completely: a missing bucket *is* a full one."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_SECONDS
        idle = [key for key, bucket in self._buckets.items() if now - bucket.updated_at >= bucket.full_after]
        for key in idle:
            del self._buckets[key]


if TYPE_CHECKING:
    # Checked by mypy only: each adapter satisfies its port.
    _history: HistoryCache = MemoryHistoryCache()
    _presence: Presence = MemoryPresence()
    _limiter: RateLimiter = MemoryRateLimiter()
