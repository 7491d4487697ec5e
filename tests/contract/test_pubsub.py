"""Contract of the pub/sub port (``parley.ports.pubsub``), run against every adapter.

Channel names are random per test: Redis pub/sub channels are global to the server (not per
database), and other test runs may share it. "Does not receive" is proved without sleeping: the
publisher then sends a marker on a channel the subscriber does hold, and the marker must be the
next thing the subscriber sees (delivery to one subscriber is in publish order).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio
import redis.exceptions

from parley.adapters.pubsub.memory import MemoryPubSub
from parley.adapters.pubsub.redis import RedisPubSub
from parley.ports.pubsub import PubSub, Subscription
from tests.engines import engine_url

WAIT_SECONDS = 5.0


@pytest.fixture(params=["memory", "redis"])
async def pubsub(request: pytest.FixtureRequest) -> AsyncIterator[PubSub]:
    hub: PubSub = MemoryPubSub() if request.param == "memory" else RedisPubSub(engine_url("redis"))
    await hub.start()
    yield hub
    await hub.close()


@pytest.fixture
def channel() -> Callable[[str], str]:
    run = uuid.uuid4().hex

    def named(name: str) -> str:
        return f"test:{run}:{name}"

    return named


class Reader:
    """Reads a subscription in the background, as a realtime node does."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.subscription.messages():
            self.received.put_nowait(message)

    async def next(self) -> tuple[str, bytes]:
        async with asyncio.timeout(WAIT_SECONDS):
            return await self.received.get()

    async def take(self, count: int) -> list[tuple[str, bytes]]:
        return [await self.next() for _ in range(count)]

    async def close(self) -> None:
        await self.subscription.close()
        async with asyncio.timeout(WAIT_SECONDS):
            await self.task


@pytest.fixture
async def open_reader(pubsub: PubSub) -> AsyncIterator[Callable[..., Reader]]:
    readers: list[Reader] = []

    def open_reader() -> Reader:
        reader = Reader(pubsub.subscription())
        readers.append(reader)
        return reader

    yield open_reader
    for reader in readers:
        await reader.close()


async def test_subscriber_receives_messages_in_publish_order(
    pubsub: PubSub, open_reader: Callable[[], Reader], channel: Callable[[str], str]
) -> None:
    reader = open_reader()
    await reader.subscription.subscribe(channel("a"))

    for number in range(5):
        await pubsub.publish(channel("a"), f"m{number}".encode())

    assert await reader.take(5) == [(channel("a"), f"m{number}".encode()) for number in range(5)]


async def test_every_subscriber_of_a_channel_receives_each_message(
    pubsub: PubSub, open_reader: Callable[[], Reader], channel: Callable[[str], str]
) -> None:
    first, second = open_reader(), open_reader()
    await first.subscription.subscribe(channel("a"))
    await second.subscription.subscribe(channel("a"))

    await pubsub.publish(channel("a"), b"hello")

    assert await first.next() == (channel("a"), b"hello")
    assert await second.next() == (channel("a"), b"hello")


async def test_publish_many_delivers_in_the_given_order_across_channels(
    pubsub: PubSub, open_reader: Callable[[], Reader], channel: Callable[[str], str]
) -> None:
    reader = open_reader()
    await reader.subscription.subscribe(channel("a"), channel("b"))
    items = [(channel("a" if number % 3 else "b"), f"m{number}".encode()) for number in range(30)]

    await pubsub.publish_many(items)

    assert await reader.take(len(items)) == items


async def test_publish_many_of_nothing_is_a_no_op(pubsub: PubSub) -> None:
    await pubsub.publish_many([])


async def test_subscriber_does_not_receive_other_channels(
    pubsub: PubSub, open_reader: Callable[[], Reader], channel: Callable[[str], str]
) -> None:
    reader = open_reader()
    await reader.subscription.subscribe(channel("a"))
    other = open_reader()
    await other.subscription.subscribe(channel("b"))

    await pubsub.publish(channel("b"), b"not for a")
    await pubsub.publish(channel("a"), b"marker")

    assert await reader.next() == (channel("a"), b"marker")
    assert await other.next() == (channel("b"), b"not for a")


async def test_unsubscribe_stops_delivery_of_that_channel_only(
    pubsub: PubSub, open_reader: Callable[[], Reader], channel: Callable[[str], str]
) -> None:
    reader = open_reader()
    await reader.subscription.subscribe(channel("a"), channel("b"))
    await pubsub.publish(channel("a"), b"before")
    assert await reader.next() == (channel("a"), b"before")

    await reader.subscription.unsubscribe(channel("a"))
    await pubsub.publish(channel("a"), b"after")
    await pubsub.publish(channel("b"), b"marker")

    assert await reader.next() == (channel("b"), b"marker")


async def test_messages_buffered_before_unsubscribe_are_not_yielded_after_it(
    pubsub: PubSub, channel: Callable[[str], str]
) -> None:
    subscription = pubsub.subscription()
    await subscription.subscribe(channel("a"), channel("b"))
    # Published while nobody reads: they sit in the subscription's buffer (or in flight).
    await pubsub.publish(channel("a"), b"stale")
    await pubsub.publish(channel("b"), b"kept")

    await subscription.unsubscribe(channel("a"))
    reader = Reader(subscription)
    try:
        assert await reader.next() == (channel("b"), b"kept")
    finally:
        await reader.close()


async def test_resubscribing_resumes_delivery(
    pubsub: PubSub, open_reader: Callable[[], Reader], channel: Callable[[str], str]
) -> None:
    reader = open_reader()
    await reader.subscription.subscribe(channel("a"))
    await reader.subscription.unsubscribe(channel("a"))
    await reader.subscription.subscribe(channel("a"))

    await pubsub.publish(channel("a"), b"again")

    assert await reader.next() == (channel("a"), b"again")


async def test_a_subscriber_that_does_not_read_does_not_hold_up_others(
    pubsub: PubSub, open_reader: Callable[[], Reader], channel: Callable[[str], str]
) -> None:
    idle = pubsub.subscription()  # subscribed, never read
    await idle.subscribe(channel("a"))
    reader = open_reader()
    await reader.subscription.subscribe(channel("a"))
    items = [(channel("a"), f"m{number}".encode()) for number in range(500)]

    try:
        async with asyncio.timeout(WAIT_SECONDS):
            await pubsub.publish_many(items)
        assert await reader.take(len(items)) == items
    finally:
        await idle.close()


async def test_close_ends_messages(pubsub: PubSub, channel: Callable[[str], str]) -> None:
    reader = Reader(pubsub.subscription())
    await reader.subscription.subscribe(channel("a"))

    await reader.close()  # times out if ``messages()`` keeps waiting

    assert reader.task.done()


async def test_closing_the_pubsub_ends_every_subscription(
    pubsub: PubSub, channel: Callable[[str], str]
) -> None:
    reader = Reader(pubsub.subscription())
    await reader.subscription.subscribe(channel("a"))

    await pubsub.close()

    async with asyncio.timeout(WAIT_SECONDS):
        await reader.task


async def test_memory_subscriber_that_falls_behind_loses_newest_messages_only(
    channel: Callable[[str], str],
) -> None:
    hub = MemoryPubSub(queue_limit=3)
    subscription = hub.subscription()
    await subscription.subscribe(channel("a"))

    await hub.publish_many([(channel("a"), f"m{number}".encode()) for number in range(5)])
    reader = Reader(subscription)
    # The three oldest survived, in order; m3 and m4 were dropped.
    assert await reader.take(3) == [(channel("a"), payload) for payload in (b"m0", b"m1", b"m2")]

    # Once the reader has caught up, delivery resumes.
    await hub.publish(channel("a"), b"later")
    assert await reader.next() == (channel("a"), b"later")
    await reader.close()


# Redis only.


def named_client_url(url: str, name: str) -> str:
    """``url`` with a client name, so a test can find (and cut) exactly its own connections."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


async def cut_connections(admin: redis.asyncio.Redis, name: str, kind: str) -> int:
    """Do to the connections named ``name`` what a Redis restart does: close them server-side."""
    killed = 0
    for client in await admin.client_list(_type=kind):
        if client["name"] == name:
            killed += await admin.client_kill_filter(_id=client["id"])
    return killed


async def test_redis_subscription_survives_losing_its_connection(channel: Callable[[str], str]) -> None:
    url = engine_url("redis")
    name = f"parley-test-{uuid.uuid4().hex[:12]}"
    hub = RedisPubSub(named_client_url(url, name))
    admin = redis.asyncio.Redis.from_url(url)
    reader = Reader(hub.subscription())
    try:
        await reader.subscription.subscribe(channel("a"))
        await hub.publish(channel("a"), b"before")
        assert await reader.next() == (channel("a"), b"before")

        assert await cut_connections(admin, name, "pubsub") == 1

        # Delivery resumes on the re-subscribed connection (messages published while it was
        # down may be lost: at-most-once), within the reconnection backoff.
        async with asyncio.timeout(WAIT_SECONDS * 2):
            while True:
                await hub.publish(channel("a"), b"after")
                try:
                    async with asyncio.timeout(0.2):
                        message = await reader.received.get()
                except TimeoutError:
                    continue
                assert message == (channel("a"), b"after")
                break
    finally:
        await reader.close()
        await hub.close()
        await admin.aclose()


async def test_redis_publish_many_after_its_connection_was_cut_succeeds(
    channel: Callable[[str], str],
) -> None:
    url = engine_url("redis")
    name = f"parley-test-{uuid.uuid4().hex[:12]}"
    hub = RedisPubSub(named_client_url(url, name))
    admin = redis.asyncio.Redis.from_url(url)
    try:
        await hub.publish_many([(channel("a"), b"warm up the pool")])
        assert await cut_connections(admin, name, "normal") >= 1

        # The stale pooled connection is replaced within the call: no error reaches the caller.
        await hub.publish_many([(channel("a"), b"after")])
    finally:
        await hub.close()
        await admin.aclose()


@pytest.mark.parametrize("operation", ["publish", "publish_many", "ping"])
async def test_redis_down_fails_fast_instead_of_hanging(operation: str) -> None:
    hub = RedisPubSub("redis://127.0.0.1:1/0")
    started = time.monotonic()
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            if operation == "publish":
                await hub.publish("c", b"x")
            elif operation == "publish_many":
                await hub.publish_many([("c", b"x")])
            else:
                await hub.ping()
    finally:
        await hub.close()
    assert time.monotonic() - started < 2.0


async def test_redis_subscribe_while_down_returns_after_the_confirm_timeout() -> None:
    hub = RedisPubSub("redis://127.0.0.1:1/0", confirm_timeout=0.3)
    subscription = hub.subscription()
    started = time.monotonic()
    try:
        await subscription.subscribe("c")
    finally:
        await hub.close()
    assert time.monotonic() - started < 2.0
