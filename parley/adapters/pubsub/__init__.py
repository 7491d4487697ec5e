"""Adapters of the pub/sub port (``parley.ports.pubsub``), and the delivery buffer they share.

``memory`` is the embedded default (one process only); ``redis`` is the real engine. Both hand
messages to a subscriber through a :class:`DeliveryQueue`, so a slow subscriber behaves the same
way in both modes: its own buffer fills up and newer messages are dropped for it alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_LIMIT = 10_000
"""Messages buffered per subscription before newer ones are dropped for that subscription."""

_CLOSED = None


class DeliveryQueue:
    """The buffer between whoever receives messages for one subscription and its reader.

    ``offer`` never waits: a publisher (or the Redis reader task) must not stall because one
    subscriber is slow. When ``limit`` messages are waiting, newer ones are dropped (counted in
    ``dropped``). That is allowed by the port's at-most-once guarantee, and dropping the *newest*
    keeps what the reader does get a gap-free prefix: the realtime node sees the next event's
    ``seq`` jump and fills the gap from the store.
    """

    def __init__(self, limit: int = DEFAULT_QUEUE_LIMIT, name: str = "subscription") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._name = name
        # Unbounded underneath, bounded by ``offer``: the close marker must always fit.
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._closed = False
        self._overflowing = False
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, channel: str, payload: bytes) -> bool:
        """Buffer one message; ``False`` if it was dropped (queue full or closed)."""
        if self._closed:
            return False
        if self._queue.qsize() >= self._limit:
            self.dropped += 1
            if not self._overflowing:
                # One warning per overflow episode, not one per dropped message.
                self._overflowing = True
                logger.warning("%s: delivery queue full (%d), dropping messages", self._name, self._limit)
            return False
        self._overflowing = False
        self._queue.put_nowait((channel, payload))
        return True

    def close(self) -> None:
        """End ``items()`` once the reader has taken what is already buffered."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(_CLOSED)

    async def items(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                # Put the marker back so a second reader (or a later call) also ends.
                self._queue.put_nowait(_CLOSED)
                return
            yield item
