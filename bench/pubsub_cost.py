"""``python -m bench.pubsub_cost``: a subscriber's CPU per Redis pub/sub message.

A realtime node reads every event of every conversation with a local member from its Redis
subscription, so this cost is paid once per event per node. Two readers are measured side by
side in one invocation, alternately (A B B A …), on the same Redis:

- ``parley``: ``RedisPubSub.subscription().messages()``, as the realtime nodes, the relay and the
  Slack socket-mode nodes read (``SubscriberConnection``: hiredis fed from an ``asyncio.Protocol``);
- ``redis-py``: the library's own loop, ``PubSub.get_message(timeout=1.0)`` into the same
  ``DeliveryQueue``, which is how Parley read until session 14.

A separate process publishes ``--messages`` messages of ``--size`` bytes in pipelined bursts of
``--burst`` at ``--rate`` per second (bursts, as the fanout publishes a Kafka batch's events);
the subscriber's process CPU (user + system) is divided by the messages it received, and every
message must arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from parley.adapters.cache.redis import redis_client
from parley.adapters.pubsub import DeliveryQueue
from parley.adapters.pubsub.redis import RedisPubSub

PUBLISHER = r"""
import sys, time
import redis
url, channel, messages, size, burst, rate = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
client = redis.Redis.from_url(url)
payload, interval, due = b"x" * size, burst / rate, time.perf_counter()
for _ in range(0, messages, burst):
    pipeline = client.pipeline(transaction=False)
    for _ in range(burst):
        pipeline.publish(channel, payload)
    pipeline.execute()
    due += interval
    time.sleep(max(0.0, due - time.perf_counter()))
"""

Reader = Callable[[str, str, asyncio.Event], AsyncIterator[bytes]]


async def parley_reader(url: str, channel: str, ready: asyncio.Event) -> AsyncIterator[bytes]:
    hub = RedisPubSub(url)
    subscription = hub.subscription()
    try:
        await subscription.subscribe(channel)
        ready.set()
        async for _channel, payload in subscription.messages():
            yield payload
    finally:
        await subscription.close()
        await hub.close()


async def redis_py_reader(url: str, channel: str, ready: asyncio.Event) -> AsyncIterator[bytes]:
    client = redis_client(url)
    pubsub = client.pubsub()
    queue = DeliveryQueue()

    async def read() -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message["type"] == "message":
                queue.offer(message["channel"].decode(), message["data"])
            elif message["type"] == "subscribe":
                ready.set()

    await pubsub.subscribe(channel)
    task = asyncio.create_task(read())
    try:
        async for _channel, payload in queue.items():
            yield payload
    finally:
        task.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # (untyped in redis-py)
        await client.aclose()


READERS: dict[str, Reader] = {"parley": parley_reader, "redis-py": redis_py_reader}


async def measure(reader: Reader, url: str, messages: int, size: int, burst: int, rate: int) -> float:
    """CPU µs per message received by ``reader``."""
    channel = f"bench:pubsub-cost:{uuid.uuid4().hex}"
    ready = asyncio.Event()
    stream = reader(url, channel, ready)
    first: Awaitable[bytes] = asyncio.ensure_future(anext(stream))
    await ready.wait()
    args = [url, channel, str(messages), str(size), str(burst), str(rate)]
    publisher = await asyncio.create_subprocess_exec(sys.executable, "-c", PUBLISHER, *args)
    before = resource.getrusage(resource.RUSAGE_SELF)
    received = 0
    try:
        async with asyncio.timeout(messages / rate + 30):
            await first
            received = 1
            while received < messages:
                await anext(stream)
                received += 1
    finally:
        after = resource.getrusage(resource.RUSAGE_SELF)
        await publisher.wait()
        await stream.aclose()  # type: ignore[attr-defined]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / received * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pubsub_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", default=os.environ.get("PARLEY_REDIS_URL"), help="Redis (default $PARLEY_REDIS_URL)"
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--size", type=int, default=520, help="payload bytes (default 520: a message.created event)"
    )
    parser.add_argument("--burst", type=int, default=5, help="messages per pipelined publish (default 5)")
    parser.add_argument("--rate", type=int, default=1_100, help="messages per second (default 1,100)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each reader; the median is reported")
    parser.add_argument(
        "--readers", default="parley,redis-py", help="comma-separated, of: " + ", ".join(READERS)
    )
    args = parser.parse_args()
    if not args.url:
        parser.error("no Redis: pass --url or set PARLEY_REDIS_URL (bash deploy/local/engines.sh env)")
    names = [name.strip() for name in args.readers.split(",")]
    if unknown := [name for name in names if name not in READERS]:
        parser.error(f"unknown readers {unknown}; known: {', '.join(READERS)}")
    results: dict[str, list[float]] = {name: [] for name in names}
    for run in range(args.runs):
        # A B, then B A: neither reader always runs first.
        for name in names if run % 2 == 0 else names[::-1]:
            cost = asyncio.run(
                measure(READERS[name], args.url, args.messages, args.size, args.burst, args.rate)
            )
            results[name].append(cost)
            print(f"run {run + 1}, {name}: {cost:.1f} µs of CPU per message", flush=True)
    shape = f"{args.messages:,} messages of {args.size} B in bursts of {args.burst} at {args.rate:,}/s"
    print(f"medians of {args.runs} ({shape}):")
    for name, costs in results.items():
        print(f"  {name:<9} {statistics.median(costs):6.1f} µs per message")


if __name__ == "__main__":
    main()
