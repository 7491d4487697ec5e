"""HistoryCacheConsumer: conversation events → the recent-history cache.

Consumes ``parley.conversation-events.v1`` (group ``cache``); produces cache updates. A new
top-level message is appended when the cache is exactly one event behind; any other event
advances the watermark or drops the entry (see ``HistoryCache``). Idempotent by ``seq``.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from parley.domain.events import Event, EventType
from parley.ports.cache import HistoryCache, HistoryUpdate


class HistoryCacheConsumer:
    group = "cache"
    # While the cache is behind, first pages are read from the store (``messages.history``):
    # a lingering cache would only send more reads there.
    linger = 0.0

    def __init__(self, cache: HistoryCache, *, keep: int) -> None:
        self._cache = cache
        self._keep = keep

    async def check_engine(self) -> None:
        await self._cache.ping()

    async def handle_batch(self, events: Sequence[Event]) -> None:
        updates: list[HistoryUpdate] = []
        for event in events:
            if event.conversation_id is None or event.seq is None:
                continue
            message = event.data.get("message")
            new_top_level = (
                event.type is EventType.MESSAGE_CREATED and message and not message.get("thread_root_id")
            )
            payload = orjson.dumps(message) if new_top_level else None
            updates.append(HistoryUpdate(event.conversation_id, event.seq, payload))
        if updates:
            # In log order, in one call: on Redis one round trip per batch instead of per event.
            await self._cache.apply(updates, self._keep)
