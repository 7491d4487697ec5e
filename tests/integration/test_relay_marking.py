"""The relay marks rows published off its publishing path: a pass that starts while the last
pass's rows are still being marked must skip them, not publish them again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parley.composition import Parley
from parley.domain.actions._events import new_event
from parley.domain.events import EventType
from parley.ids import IdGenerator
from parley.runtime.relay import OutboxRelay
from parley.settings import Settings

ids = IdGenerator(98)


async def test_rows_still_being_marked_are_not_published_again(tmp_path: Path) -> None:
    parley = Parley(Settings(data_dir=tmp_path), "relay")
    await parley.start("store", "event_log", "pubsub")
    relay = OutboxRelay(parley.store, parley.event_log, parley.pubsub, topic=parley.settings.events_topic)
    try:
        events = [
            new_event(ids, EventType.MESSAGE_CREATED, workspace_id=1, conversation_id=7, seq=n, data={})
            for n in range(1, 4)
        ]
        async with parley.store.write() as tx:
            await tx.append_events_txn(events)

        # Hold the embedded store's write turn: the first pass's marks cannot commit meanwhile.
        async with parley.store.write():
            assert await relay.publish_pending() == 3
            assert await relay.publish_pending() == 0, "rows being marked were published again"
        await asyncio.wait_for(relay.stop(), timeout=10)  # waits for the marks in flight

        async with parley.store.read() as reader:
            assert await reader.unpublished_events(10) == []
        assert await relay.publish_pending() == 0
    finally:
        await parley.close()
