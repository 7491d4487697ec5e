"""In-process pub/sub: the embedded default.

One process only: subscribers in another process never see these messages. That is exactly the
all-in-one topology (fanout and realtime are tasks in one event loop); a multi-process deployment
needs ``parley.adapters.pubsub.redis``.

``publish`` never blocks: it hands the payload to each subscriber's bounded
:class:`~parley.adapters.pubsub.DeliveryQueue` and returns. A subscriber that falls ``queue_limit``
messages behind loses the newer ones (at-most-once, as the port allows) instead of slowing the
publisher and, through it, every other subscriber.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from parley.adapters.pubsub import DEFAULT_QUEUE_LIMIT, DeliveryQueue
from parley.ports.pubsub import PubSub, Subscription


class MemorySubscription:
    def __init__(self, hub: MemoryPubSub, queue: DeliveryQueue) -> None:
        self._hub = hub
        self._queue = queue
        self._channels: set[str] = set()

    async def subscribe(self, *channels: str) -> None:
        if self._queue.closed:
            raise RuntimeError("subscription is closed")
        for channel in channels:
            self._channels.add(channel)
            self._hub._attach(channel, self)

    async def unsubscribe(self, *channels: str) -> None:
        for channel in channels:
            self._channels.discard(channel)
            self._hub._detach(channel, self)

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        async for channel, payload in self._queue.items():
            # Messages buffered before an unsubscribe are not delivered after it.
            if channel in self._channels:
                yield channel, payload

    async def close(self) -> None:
        await self.unsubscribe(*self._channels)
        self._hub._forget(self)
        self._queue.close()

    def _deliver(self, channel: str, payload: bytes) -> None:
        self._queue.offer(channel, payload)


class MemoryPubSub:
    """Channels → subscriptions, in one process. See the module docstring for its limits."""

    def __init__(self, *, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        self._queue_limit = queue_limit
        self._subscribers: defaultdict[str, set[MemorySubscription]] = defaultdict(set)
        self._all: set[MemorySubscription] = set()
        self._numbers = itertools.count(1)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        # Ends every reader's ``messages()``, as closing the Redis connections would.
        for subscription in list(self._all):
            await subscription.close()

    async def ping(self) -> None:
        pass

    async def publish(self, channel: str, payload: bytes) -> None:
        for subscription in self._subscribers.get(channel, ()):
            subscription._deliver(channel, payload)

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for channel, payload in items:
            await self.publish(channel, payload)

    def subscription(self) -> MemorySubscription:
        queue = DeliveryQueue(self._queue_limit, name=f"memory subscription {next(self._numbers)}")
        subscription = MemorySubscription(self, queue)
        self._all.add(subscription)
        return subscription

    def _attach(self, channel: str, subscription: MemorySubscription) -> None:
        self._subscribers[channel].add(subscription)

    def _forget(self, subscription: MemorySubscription) -> None:
        self._all.discard(subscription)

    def _detach(self, channel: str, subscription: MemorySubscription) -> None:
        subscribers = self._subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                # Conversations come and go; don't keep an empty set per channel ever seen.
                del self._subscribers[channel]


if TYPE_CHECKING:
    # Checked by mypy only: the adapter satisfies the port.
    _pubsub: PubSub = MemoryPubSub()
    _subscription: Subscription = _pubsub.subscription()
