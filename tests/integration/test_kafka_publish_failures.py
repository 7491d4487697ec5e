"""A failed publish to Kafka must not stop later publishes: the relay retries the same outbox rows
and the retry has to get through.

The soak test's search gap after the Kafka restart (docs/reliability.md) came from here: a batch
the idempotent producer had numbered but could not write (the broker was going down and its
partitions had no leader until the request timeout passed) left the producer out of step with
the broker, which then refused every later batch of those partitions. The relay retried the same
rows forever; their conversations stopped reaching Kafka, hence the indexer and search. Live
delivery hid it: realtime nodes also fill sockets from the store.

- the adapter: a batch the broker refuses (one record above the topic's size limit) is the
  deterministic way to leave such a gap in the numbering; the next publish to that partition
  must succeed and be read back in order;
- the whole path, as the soak broke it: relay → Kafka → indexer → Elasticsearch while the
  broker is stopped for longer than the producer's request timeout and started again, with
  messages sent before, during and after; every acknowledged message must become searchable.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from parley.adapters.eventlog.kafka import KafkaEventLog
from parley.ports.eventlog import OutgoingRecord, Record
from tests.engines import engine_url
from tests.support.clients import ApiUser
from tests.support.engines import engine_overrides
from tests.support.kafka import delete_topics, kafka_admin
from tests.support.server import RunningServer, start_server, wait_until_flowing
from tests.support.wait import eventually
from tests.support.world import make_world

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.engines
TOKEN = "restartword"
CONVERSATIONS = 4  # as many as the test topic's partitions (tests/support/engines.py)
# Longer than the producer's request timeout: a batch waiting for a leader expires meanwhile.
DOWN_SECONDS = KafkaEventLog("unused").request_timeout + 5
# Sends keep the relay publishing all the time, so a publish is in flight when the broker goes.
SEND_INTERVAL = 0.025
SIZE_LIMIT = 2000  # the test topic's max.message.bytes


def engines(action: str, engine: str) -> None:
    subprocess.run(["bash", str(REPO / "deploy/local/engines.sh"), action, engine], check=True, timeout=300)


async def test_a_refused_batch_does_not_block_later_publishes_to_its_partition() -> None:
    bootstrap = engine_url("kafka")
    topic = f"parley.test-{uuid.uuid4().hex[:10]}.refused"
    async with kafka_admin(bootstrap) as admin:
        # One partition, so every record below shares the partition of the refused one.
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(SIZE_LIMIT)})]
        )
    event_log = KafkaEventLog(bootstrap, connect_timeout=10.0)
    await event_log.start()
    try:
        await event_log.publish(topic, [OutgoingRecord(b"c", b"before")])
        with pytest.raises(KafkaError):  # the broker refuses the batch: too large for the topic
            await event_log.publish(topic, [OutgoingRecord(b"c", b"x" * (2 * SIZE_LIMIT))])
        # The relay's retry path: the next publishes to that partition are written.
        await asyncio.wait_for(event_log.publish(topic, [OutgoingRecord(b"c", b"after-1")]), timeout=30)
        await asyncio.wait_for(event_log.publish(topic, [OutgoingRecord(b"c", b"after-2")]), timeout=30)

        consumer = event_log.consumer(topic, f"test-{uuid.uuid4().hex[:10]}")
        await consumer.start()
        try:
            received: list[Record] = []
            async with asyncio.timeout(30):
                while len(received) < 3:
                    received += await consumer.poll(max_records=10, timeout=0.5)
        finally:
            await consumer.close()
        assert [r.value for r in received] == [b"before", b"after-1", b"after-2"]
    finally:
        await event_log.close()
        await delete_topics(bootstrap, [topic])


@pytest.fixture
def overrides() -> Iterator[dict[str, Any]]:
    with engine_overrides() as values:
        yield values


@pytest.fixture
async def engine_server(tmp_path: Path, overrides: dict[str, Any]) -> AsyncIterator[RunningServer]:
    # The topics are deleted by ``engine_overrides`` once this server has stopped.
    running = await start_server(tmp_path / "data", startup_timeout=120, **overrides)
    try:
        await wait_until_flowing(running)
        yield running
    finally:
        await running.stop()


async def _searchable(user: ApiUser, conversation: str) -> int:
    result = await user.get("/search", {"q": TOKEN, "conversation_id": conversation, "limit": 1})
    return int(result["total"])


@pytest.mark.slow
@pytest.mark.serial  # stops the shared Kafka
@pytest.mark.timeout(420)
async def test_every_acknowledged_message_is_searchable_after_a_long_kafka_restart(
    engine_server: RunningServer,
) -> None:
    engine_url("elasticsearch")
    world = await make_world(engine_server.url)
    alice = world.users[0]
    conversations = [world.channel_id]
    for i in range(1, CONVERSATIONS):
        channel = await alice.post(
            f"/workspaces/{world.workspace_id}/channels", {"name": f"c{i}"}, expect=201
        )
        conversations.append(channel["id"])
        for user in world.users[1:]:
            await user.post(f"/conversations/{channel['id']}/join", expect=200)
    acked: Counter[str] = Counter()
    stop = asyncio.Event()

    async def traffic(user: ApiUser) -> None:
        n = 0
        while not stop.is_set():
            conversation = conversations[n % CONVERSATIONS]
            await user.post(f"/conversations/{conversation}/messages", {"text": f"{TOKEN} {n}"}, expect=201)
            acked[conversation] += 1
            n += 1
            await asyncio.sleep(SEND_INTERVAL)

    sending = asyncio.gather(*(traffic(u) for u in world.users))
    try:
        await asyncio.sleep(2)
        await asyncio.to_thread(engines, "down", "kafka")
        try:
            await asyncio.sleep(DOWN_SECONDS)
        finally:
            await asyncio.to_thread(engines, "up", "kafka")
        await asyncio.sleep(5)  # sends after the broker is back must arrive too
    finally:
        stop.set()
        await sending
    assert sum(acked.values()) > 100, acked

    async def searchable_and_acked() -> dict[str, tuple[int, int]]:
        return {c: (await _searchable(alice, c), acked[c]) for c in conversations}

    await eventually(
        searchable_and_acked,
        lambda found: all(searchable >= sent for searchable, sent in found.values()),
        timeout=120,
    )
    await world.close()
