"""Redis pub/sub: fan-out from the fanout consumers to every realtime node.

Publishing goes through one shared connection pool; ``publish_many`` sends its messages in one
pipelined round trip, on one connection, so Redis delivers them in the given order. Redis pub/sub
is itself at-most-once (a subscriber that is disconnected misses what is published meanwhile),
which is what the port promises: realtime nodes fill gaps from the store.

Each :class:`RedisSubscription` is one dedicated connection
(:class:`~parley.adapters.pubsub.redis_subscriber.SubscriberConnection`, read without redis-py's
per-message machinery: a realtime node's hot path), kept open by a background task that starts
with the first ``subscribe``:

- the connection moves messages into the subscription's bounded
  :class:`~parley.adapters.pubsub.DeliveryQueue` as they arrive, so a slow reader neither hits
  Redis's ``client-output-buffer-limit`` (which would cut the connection) nor holds up anything
  else: past the bound it loses newer messages itself;
- the task survives Redis restarts, dropped and silent connections: it discards the broken
  connection, waits with exponential backoff and jitter, opens a new one and re-subscribes every
  channel the subscription holds, logging the loss and the recovery.

The subscription's channel set is the source of truth; Redis is brought in line with it whenever
the connection comes back, so ``subscribe`` while Redis is down is remembered, not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from parley.adapters.cache.redis import redis_client
from parley.adapters.pubsub import DEFAULT_QUEUE_LIMIT, DeliveryQueue
from parley.adapters.pubsub.redis_subscriber import SubscriberConnection
from parley.ports.pubsub import PubSub, Subscription

logger = logging.getLogger(__name__)

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

SUBSCRIBER_CONNECT_SECONDS = 2.0
"""How long a subscription's (re)connection may take before it counts as a failed attempt."""


class RedisSubscription:
    def __init__(
        self,
        url: str,
        queue: DeliveryQueue,
        *,
        name: str,
        connect_timeout: float,
        confirm_timeout: float,
        health_interval: float,
        backoff: ExponentialWithJitterBackoff,
        on_close: Callable[[RedisSubscription], None],
    ) -> None:
        self._url = url
        self._on_close = on_close
        self._queue = queue
        self._name = name
        self._connect_timeout = connect_timeout
        self._confirm_timeout = confirm_timeout
        self._health_interval = health_interval
        self._backoff = backoff
        self._channels: set[str] = set()
        self._connection: SubscriberConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._closed = False

    async def subscribe(self, *channels: str) -> None:
        """Returns once Redis has confirmed every new channel, so a message published after this
        returns is delivered. If Redis does not confirm within ``confirm_timeout`` (it is down),
        logs and returns: the channels stay in the set and are subscribed on reconnection."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        new = [channel for channel in dict.fromkeys(channels) if channel not in self._channels]
        if not new:
            return
        self._channels.update(new)
        confirmations = [self._expect_confirmation(channel) for channel in new]
        self._start_reader()
        if self._connection is not None:
            # Otherwise the reader is (re)connecting and will subscribe the whole set.
            self._connection.subscribe(*new)
        try:
            await asyncio.wait_for(asyncio.gather(*confirmations), self._confirm_timeout)
        except TimeoutError:
            logger.warning("%s: Redis has not confirmed %s yet; kept for reconnection", self._name, new)
        finally:
            for channel, confirmation in zip(new, confirmations, strict=True):
                self._forget_confirmation(channel, confirmation)

    async def unsubscribe(self, *channels: str) -> None:
        """Takes effect at once for ``messages()``: anything of these channels still buffered or in
        flight is not yielded."""
        gone = [channel for channel in dict.fromkeys(channels) if channel in self._channels]
        if not gone:
            return
        self._channels.difference_update(gone)
        if self._connection is not None:
            # If the connection is lost before this reaches Redis, the next one never subscribes them.
            self._connection.unsubscribe(*gone)

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        async for channel, payload in self._queue.items():
            if channel in self._channels:
                yield channel, payload

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._channels.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._disconnect()
        self._queue.close()
        self._on_close(self)

    # The reader task.

    def _start_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name=self._name)

    async def _read(self) -> None:
        """Keeps one subscribed connection open; messages arrive through its callbacks."""
        failures = 0
        while True:
            try:
                connection = await self._connect()
                if failures:
                    logger.warning(
                        "%s: reconnected to Redis after %d failed attempts; re-subscribed %d channels",
                        self._name,
                        failures,
                        len(self._channels),
                    )
                failures = 0
                await connection.closed()
                error: BaseException = RedisConnectionError("the connection was closed")
            except Exception as exc:
                error = exc
            # Whatever broke, the cure is the same: a new connection. Only an unexpected error
            # deserves a traceback.
            failures += 1
            delay = self._backoff.compute(failures)
            logger.warning(
                "%s: Redis connection lost (%s); reconnecting in %.2fs (attempt %d)",
                self._name,
                error,
                delay,
                failures,
                exc_info=not isinstance(error, _REDIS_DOWN),
            )
            self._disconnect()
            await asyncio.sleep(delay)

    async def _connect(self) -> SubscriberConnection:
        connection = await SubscriberConnection.open(
            self._url,
            self._queue.offer,
            self._confirm,
            timeout=self._connect_timeout,
            health_interval=self._health_interval,
        )
        # Published before subscribing: a ``subscribe`` call from now on goes straight to this
        # connection, and one made before it is already in the set subscribed below.
        self._connection = connection
        connection.subscribe(*self._channels)
        return connection

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _confirm(self, channel: str) -> None:
        for confirmation in self._confirmations.get(channel, ()):
            if not confirmation.done():
                confirmation.set_result(None)

    def _expect_confirmation(self, channel: str) -> asyncio.Future[None]:
        confirmation = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(confirmation)
        return confirmation

    def _forget_confirmation(self, channel: str, confirmation: asyncio.Future[None]) -> None:
        waiting = self._confirmations.get(channel, [])
        if confirmation in waiting:
            waiting.remove(confirmation)
        if not waiting:
            self._confirmations.pop(channel, None)


class RedisPubSub:
    """Publishes through a shared connection pool; hands out :class:`RedisSubscription` objects."""

    def __init__(
        self,
        url: str,
        *,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        confirm_timeout: float = 2.0,
        health_interval: float = 10.0,
    ) -> None:
        self._url = url
        self._client = redis_client(url)
        self._queue_limit = queue_limit
        self._confirm_timeout = confirm_timeout
        self._health_interval = health_interval
        self._subscriptions: set[RedisSubscription] = set()
        self._numbers = itertools.count(1)

    async def start(self) -> None:
        # Connections are opened on first use; a Redis that is down now is reported by ``ping``
        # (readiness) and retried by every call, rather than failing the process at boot.
        try:
            await self._client.ping()
        except _REDIS_DOWN as error:
            logger.warning("Redis pub/sub not reachable at start (%s); will keep trying", error)

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._client.aclose()

    async def ping(self) -> None:
        await self._client.ping()

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._client.publish(channel, payload)

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not items:
            return
        # Not a MULTI transaction: atomicity is not needed, only order and one round trip.
        async with self._client.pipeline(transaction=False) as pipeline:
            for channel, payload in items:
                pipeline.publish(channel, payload)
            await pipeline.execute()

    def subscription(self) -> RedisSubscription:
        name = f"redis subscription {next(self._numbers)}"
        subscription = RedisSubscription(
            self._url,
            DeliveryQueue(self._queue_limit, name=name),
            name=name,
            connect_timeout=SUBSCRIBER_CONNECT_SECONDS,
            confirm_timeout=self._confirm_timeout,
            health_interval=self._health_interval,
            backoff=ExponentialWithJitterBackoff(base=0.1, cap=5.0),
            on_close=self._subscriptions.discard,
        )
        self._subscriptions.add(subscription)
        return subscription


if TYPE_CHECKING:
    # Checked by mypy only: the adapter satisfies the port.
    _pubsub: PubSub = RedisPubSub("redis://localhost")
    _subscription: Subscription = _pubsub.subscription()
