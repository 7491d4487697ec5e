"""Contract of the pub/sub port (``parley.ports.pubsub``), run against every adapter.

Channel names are random per test: Redis pub/sub channels are global to the server (not per
database), and other test runs may share it. "Does not receive" is proved without sleeping: the
publisher then sends a marker on a channel the subscriber does hold, and the marker must be the
next thing the subscriber sees (delivery to one subscriber is in publish order).
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
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


async def publish_until_received(hub: PubSub, reader: Reader, channel: str, within: float) -> bytes:
    """Publish ``b"after"`` every 0.2 s until ``reader`` receives a message (pub/sub drops what
    is published while a subscriber reconnects); that message's payload."""
    async with asyncio.timeout(within):
        while True:
            await hub.publish(channel, b"after")
            try:
                async with asyncio.timeout(0.2):
                    received_channel, payload = await reader.received.get()
            except TimeoutError:
                continue
            assert received_channel == channel
            return payload


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
        assert await publish_until_received(hub, reader, channel("a"), WAIT_SECONDS * 2) == b"after"
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


class FreezableProxy:
    """A TCP proxy to Redis whose open connections can be frozen: bytes stop flowing both ways
    and nothing is closed, as when a network path goes dark. New connections flow normally."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._flows: list[asyncio.Task[None]] = []
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        redis_r, redis_w = await asyncio.open_connection(*self._target)
        self._flows += [
            asyncio.create_task(self._pipe(client_r, redis_w)),
            asyncio.create_task(self._pipe(redis_r, client_w)),
        ]

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        sink.close()

    def freeze(self) -> None:
        """Stop moving bytes on every open connection, leaving the sockets open."""
        for flow in self._flows:
            flow.cancel()
        self._flows.clear()

    async def close(self) -> None:
        self.freeze()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[FreezableProxy]:
    url = urllib.parse.urlparse(engine_url("redis"))
    proxy = FreezableProxy(url.hostname or "127.0.0.1", url.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_redis_subscription_reconnects_when_its_connection_goes_silent(
    redis_proxy: FreezableProxy, channel: Callable[[str], str]
) -> None:
    hub = RedisPubSub(engine_url("redis"))
    # Short enough for a test, long enough for a PING's answer on a loaded CI box (a connection
    # is dropped after two intervals without a byte).
    subscriber_hub = RedisPubSub(f"redis://127.0.0.1:{redis_proxy.port}/0", health_interval=0.5)
    reader = Reader(subscriber_hub.subscription())
    try:
        await reader.subscription.subscribe(channel("a"))
        # Quiet is not silence: the health checks' PINGs keep an idle connection.
        await asyncio.sleep(2.5)
        await hub.publish(channel("a"), b"after a quiet second")
        assert await reader.next() == (channel("a"), b"after a quiet second")
        assert redis_proxy.accepted == 1

        redis_proxy.freeze()
        # Within a few health intervals the silent connection is dropped and a new one, through
        # the same proxy, re-subscribes.
        assert await publish_until_received(hub, reader, channel("a"), WAIT_SECONDS) == b"after"
        assert redis_proxy.accepted == 2
    finally:
        await reader.close()
        await subscriber_hub.close()
        await hub.close()


async def test_redis_subscription_authenticates_as_the_urls_user(channel: Callable[[str], str]) -> None:
    url = urllib.parse.urlparse(engine_url("redis"))
    user, password = f"parley-test-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    admin = redis.asyncio.Redis.from_url(engine_url("redis"))
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], channels=["*"], commands=["+@all"]
    )
    hub = RedisPubSub(engine_url("redis"))
    wrong = RedisPubSub(f"redis://{user}:not-{password}@{url.hostname}:{url.port}/0", confirm_timeout=0.5)
    right = RedisPubSub(f"redis://{user}:{password}@{url.hostname}:{url.port}/0")
    refused, reader = Reader(wrong.subscription()), Reader(right.subscription())
    try:
        await refused.subscription.subscribe(channel("a"))
        await reader.subscription.subscribe(channel("a"))
        assert any(client["user"] == user for client in await admin.client_list(_type="pubsub"))

        await hub.publish(channel("a"), b"for the authenticated")
        assert await reader.next() == (channel("a"), b"for the authenticated")
        assert refused.received.empty()
    finally:
        for closing in (refused, reader):
            await closing.close()
        for pubsub in (wrong, right, hub):
            await pubsub.close()
        await admin.acl_deluser(user)
        await admin.aclose()
