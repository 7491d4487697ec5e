"""The consumer loop: an outage waits (nothing dead-lettered), a poison event is dead-lettered
and does not stall the events behind it; offsets are committed in the background, and a stop
commits everything handled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parley.composition import Parley
from parley.domain.events import Event
from parley.ports.eventlog import EventLog, LogConsumer, OutgoingRecord, Record
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


class HeldCommits:
    """A log whose consumers' commits wait until ``release`` is set (a slow group coordinator)."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.release = asyncio.Event()
        self.commits: list[list[int]] = []  # offsets of each commit that went through

    def consumer(self, topic: str, group: str, **options: Any) -> LogConsumer:
        inner = self._log.consumer(topic, group, **options)
        outer = self

        class Held:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            async def commit(self, records: Sequence[Record]) -> None:
                await outer.release.wait()
                await inner.commit(records)
                outer.commits.append([r.offset for r in records])

        return Held()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


async def test_handling_goes_on_while_a_commit_waits_and_a_stop_commits_everything_handled(
    tmp_path: Path,
) -> None:
    parley = Parley(Settings(data_dir=tmp_path), "tool")
    await parley.start("event_log")
    try:
        await parley.event_log.ensure_topic(TOPIC, 1)
        await parley.event_log.ensure_topic(DLQ, 1)
        log = HeldCommits(parley.event_log)
        consumer = FlakyConsumer()
        runner = ConsumerRunner(log, consumer, topic=TOPIC, dead_letter_topic=DLQ, commit_interval=0.05)
        runner.start()
        try:
            for seq in range(1, 4):
                await log.publish(TOPIC, [OutgoingRecord(b"1", created_event(seq, "ok").to_bytes())])
                # Each one is handled although the first batch's commit is still waiting.
                await _wait(lambda seq=seq: consumer.handled == list(range(1, seq + 1)))
            assert log.commits == []
            log.release.set()
            # The commit that waited, then one for the two records handled meanwhile.
            await _wait(lambda: log.commits[:2] == [[0], [2]], timeout=5)
            await log.publish(TOPIC, [OutgoingRecord(b"1", created_event(4, "ok").to_bytes())])
            await _wait(lambda: consumer.handled == [1, 2, 3, 4])
        finally:
            log.release.set()
            await runner.stop()
        # A new member of the group starts after the last handled record: nothing replayed or lost.
        await log.publish(TOPIC, [OutgoingRecord(b"1", created_event(5, "ok").to_bytes())])
        again = FlakyConsumer()
        rerun = ConsumerRunner(parley.event_log, again, topic=TOPIC, dead_letter_topic=DLQ)
        rerun.start()
        try:
            await _wait(lambda: again.handled == [5])
            await asyncio.sleep(0.3)
            assert again.handled == [5]
        finally:
            await rerun.stop()
    finally:
        await parley.close()
