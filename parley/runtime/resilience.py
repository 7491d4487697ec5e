"""Fail-open wrappers for the cache-side ports.

The cache, presence and rate limits are conveniences: when their engine (Redis) is down a
cache read is a miss, a cache write is skipped, presence reads as offline and the rate limit
lets the request through. A message write never waits on them. Wrapping happens once, in the
composition root; domain code never sees a Redis error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from parley.ports.cache import CachedHistory, HistoryCache, HistoryUpdate, Presence, RateLimiter

log = logging.getLogger(__name__)


class _Breaker:
    """After a failure, skip the engine for a short cool-down instead of paying a timeout on
    every call."""

    def __init__(self, name: str, cooldown: float = 2.0) -> None:
        self.name = name
        self._cooldown = cooldown
        self._open_until = 0.0

    def allow(self) -> bool:
        return time.monotonic() >= self._open_until

    def failed(self, exc: BaseException) -> None:
        if self.allow():
            log.warning("%s unavailable (%s); degrading for %.0f s", self.name, exc, self._cooldown)
        self._open_until = time.monotonic() + self._cooldown


class FailOpenHistoryCache:
    def __init__(self, inner: HistoryCache) -> None:
        self._inner = inner
        self._breaker = _Breaker("history cache")

    async def get(self, conversation_id: int) -> CachedHistory | None:
        if not self._breaker.allow():
            return None
        try:
            return await self._inner.get(conversation_id)
        except Exception as exc:
            self._breaker.failed(exc)
            return None

    async def fill(self, conversation_id: int, page: CachedHistory) -> None:
        if self._breaker.allow():
            try:
                await self._inner.fill(conversation_id, page)
            except Exception as exc:
                self._breaker.failed(exc)

    # The consumer's writes must not be skipped silently: a skipped append would leave a stale
    # entry. They raise, so the consumer retries the batch (and Redis losing data loses it all).
    async def append(self, conversation_id: int, seq: int, message: bytes, keep: int) -> None:
        await self._inner.append(conversation_id, seq, message, keep)

    async def advance(self, conversation_id: int, seq: int) -> None:
        await self._inner.advance(conversation_id, seq)

    async def apply(self, updates: Sequence[HistoryUpdate], keep: int) -> None:
        await self._inner.apply(updates, keep)

    async def ping(self) -> None:
        await self._inner.ping()


class FailOpenPresence:
    def __init__(self, inner: Presence) -> None:
        self._inner = inner
        self._breaker = _Breaker("presence")

    async def set(self, user_id: int, status: str, ttl_seconds: int) -> None:
        if self._breaker.allow():
            try:
                await self._inner.set(user_id, status, ttl_seconds)
            except Exception as exc:
                self._breaker.failed(exc)

    async def get_many(self, user_ids: Sequence[int]) -> dict[int, str]:
        if not self._breaker.allow():
            return {}
        try:
            return await self._inner.get_many(user_ids)
        except Exception as exc:
            self._breaker.failed(exc)
            return {}


class FailOpenRateLimiter:
    def __init__(self, inner: RateLimiter) -> None:
        self._inner = inner
        self._breaker = _Breaker("rate limiter")

    async def acquire(self, key: str, rate_per_second: float, burst: int) -> float:
        if not self._breaker.allow():
            return 0.0
        try:
            return await self._inner.acquire(key, rate_per_second, burst)
        except Exception as exc:
            self._breaker.failed(exc)
            return 0.0
