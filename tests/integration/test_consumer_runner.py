"""The consumer loop: an outage waits (nothing dead-lettered), a poison event is dead-lettered
and does not stall the events behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from parley.composition import Parley
from parley.domain.events import Event
from parley.ports.eventlog import OutgoingRecord
from parley.runtime.consumer import ConsumerRunner
from parley.settings import Settings
from tests.support.events import created_event

TOPIC, DLQ = "t.events", "t.dlq"


class FlakyConsumer:
    """A consumer whose engine can be switched off, and which cannot process "poison"."""

    group = "flaky"
    linger = 0.0

    def __init__(self) -> None:
        self.engine_up = True
        self.handled: list[int] = []

    async def check_engine(self) -> None:
        if not self.engine_up:
            raise ConnectionError("engine down")

    async def handle_batch(self, events: Sequence[Event]) -> None:
        if not self.engine_up:
            raise ConnectionError("engine down")
        if any(e.data["message"]["text"] == "poison" for e in events):
            raise ValueError("cannot process this event")
        self.handled += [e.seq or 0 for e in events]


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_outage_waits_and_poison_goes_to_the_dead_letter_topic(tmp_path: Path) -> None:
    parley = Parley(Settings(data_dir=tmp_path), "tool")
    await parley.start("event_log")
    log = parley.event_log
    await log.ensure_topic(TOPIC, 1)
    await log.ensure_topic(DLQ, 1)
    consumer = FlakyConsumer()
    runner = ConsumerRunner(log, consumer, topic=TOPIC, dead_letter_topic=DLQ, attempts=2)
    runner.start()
    try:
        consumer.engine_up = False
        await log.publish(TOPIC, [OutgoingRecord(b"1", created_event(1, "ok").to_bytes())])
        await asyncio.sleep(1.0)
        assert consumer.handled == []
        consumer.engine_up = True
        await _wait(lambda: consumer.handled == [1])

        await log.publish(
            TOPIC,
            [
                OutgoingRecord(b"1", created_event(2, "poison").to_bytes()),
                OutgoingRecord(b"1", created_event(3, "ok").to_bytes()),
            ],
        )
        await _wait(lambda: consumer.handled == [1, 3])
        dlq = log.consumer(DLQ, "inspect")
        await dlq.start()
        records = await dlq.poll(10, timeout=2)
        await dlq.close()
        assert [Event.from_bytes(r.value).seq for r in records] == [2], "only the poison event, and only once"
        headers = dict(records[0].headers)
        assert b"cannot process this event" in headers["parley-dlq-reason"]
    finally:
        await runner.stop()
        await parley.close()
