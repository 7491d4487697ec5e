"""Cache-side ports: recent-history cache, presence, rate limits.

None of these is a source of truth. Adapters may lose their content at any time; callers treat
failures as misses (see ``parley.runtime.resilience``), so a cache outage degrades reads and
presence but never blocks or loses a write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CachedHistory:
    """The newest messages of a conversation, newest first, as serialized JSON, valid as of
    conversation event ``watermark`` (every event up to that seq is reflected)."""

    watermark: int
    messages: list[bytes]


@dataclass(frozen=True, slots=True)
class HistoryUpdate:
    """One event's effect on a conversation's cached history: a new top-level message at
    ``seq`` (``message`` set: ``append``), or another event at ``seq`` (``advance``)."""

    conversation_id: int
    seq: int
    message: bytes | None = None


class HistoryCache(Protocol):
    async def get(self, conversation_id: int) -> CachedHistory | None: ...

    async def fill(self, conversation_id: int, page: CachedHistory) -> None:
        """Store ``page`` unless the cache already holds a newer watermark."""
        ...

    async def append(self, conversation_id: int, seq: int, message: bytes, keep: int) -> None:
        """Apply a new message at ``seq`` if the cached watermark is ``seq - 1``; else drop the
        entry (a gap means the cache can no longer vouch for completeness). Idempotent."""
        ...

    async def advance(self, conversation_id: int, seq: int) -> None:
        """An event that changes cached messages (edit, delete, reaction): drop the entry unless
        its watermark is already ``>= seq``. Idempotent."""
        ...

    async def apply(self, updates: Sequence[HistoryUpdate], keep: int) -> None:
        """``append`` or ``advance`` for each update, in order, with the same effect as calling
        them one by one (adapters may send them together: one round trip for a batch)."""
        ...

    async def ping(self) -> None: ...


class Presence(Protocol):
    async def set(self, user_id: int, status: str, ttl_seconds: int) -> None: ...

    async def get_many(self, user_ids: Sequence[int]) -> dict[int, str]:
        """Status per user; users without a live entry are absent (offline)."""
        ...


class RateLimiter(Protocol):
    async def acquire(self, key: str, rate_per_second: float, burst: int) -> float:
        """Take one token from ``key``'s bucket. Returns 0.0 if allowed, else seconds to wait."""
        ...
