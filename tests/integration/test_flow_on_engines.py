"""One message, followed through every engine of the real flow: sent over the WebSocket, it is
in MySQL, on the Kafka topic in its conversation's partition, delivered to another member's
socket, in the Redis recent-history cache and found by Elasticsearch — with the same id and seq
everywhere."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from parley.adapters.eventlog.partitioning import partition_for_key
from parley.domain.events import Event
from parley.ports.search import SearchQuery
from tests.engines import engine_url
from tests.support.clients import WsClient
from tests.support.engines import engine_overrides
from tests.support.server import start_server, wait_until_flowing
from tests.support.wait import eventually
from tests.support.world import make_world


async def test_a_message_is_the_same_in_mysql_kafka_socket_redis_and_elasticsearch(tmp_path: Path) -> None:
    engine_url("mysql")
    with engine_overrides() as overrides:
        server = await start_server(tmp_path / "data", **overrides)
        try:
            await wait_until_flowing(server)
            parley = server.parley
            world = await make_world(server.url)
            alice, bob = world.users
            await bob.get(f"/conversations/{world.channel_id}/messages")  # warms the Redis history cache
            a = await WsClient.connect(server.ws_url, alice.token)
            b = await WsClient.connect(server.ws_url, bob.token)
            await b.wait_for(lambda f: f["type"] == "hello")
            token = f"follow{uuid.uuid4().hex[:8]}"
            await a.send(
                {"type": "send", "id": 1, "conversation_id": world.channel_id, "text": f"{token} me"}
            )
            ack = await a.wait_for(lambda f: f["type"] == "ack" and f.get("id") == 1)
            message_id, seq = int(ack["message"]["id"]), ack["message"]["seq"]
            conversation_id = int(world.channel_id)

            # MySQL (through the store adapter).
            async with parley.store.read() as reader:
                stored = await reader.get_message(message_id)
            assert stored is not None and stored.seq == seq

            # Kafka: on the topic, in the partition Kafka's partitioner gives the conversation id.
            inspect = parley.event_log.consumer(parley.settings.events_topic, f"inspect-{uuid.uuid4().hex}")
            await inspect.start()
            try:
                found = None
                for _ in range(40):
                    for record in await inspect.poll(500, timeout=0.5):
                        event = Event.from_bytes(record.value)
                        if event.data.get("message", {}).get("id") == str(message_id):
                            found = (record, event)
                    if found:
                        break
            finally:
                await inspect.close()
            assert found is not None, "the event is on the topic"
            record, event = found
            assert record.key == str(conversation_id).encode()
            assert record.partition == partition_for_key(record.key, parley.settings.events_partitions)
            assert event.seq == seq

            # Delivered to the other member's socket.
            delivered = await b.wait_for(lambda f: f["type"] == "message.created")
            assert delivered["data"]["message"]["id"] == str(message_id) and delivered["seq"] == seq

            # Redis: the cache consumer appended it to the recent history.
            async def cached() -> object:
                return await parley.history_cache.get(conversation_id)

            page = await eventually(cached, lambda c: c is not None and c.watermark >= seq)  # type: ignore[attr-defined]
            newest = orjson.loads(page.messages[0])  # type: ignore[attr-defined]
            assert newest["id"] == str(message_id) and newest["seq"] == seq

            # Elasticsearch.
            async def search() -> object:
                await parley.search.refresh()
                return await parley.search.search(SearchQuery(text=token, conversation_ids=[conversation_id]))

            result = await eventually(search, lambda r: r.total == 1)  # type: ignore[attr-defined]
            assert result.hits[0].message_id == message_id  # type: ignore[attr-defined]
            for c in (a, b):
                await c.close()
            await world.close()
        finally:
            await server.stop()
