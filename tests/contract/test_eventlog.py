"""Contract of the event log port: the same tests against the embedded log and against Kafka.

Each test uses its own topic and group names, so tests against a shared Kafka cluster do not see
each other's records; the Kafka topics are deleted afterwards. Waits are bounded: a Kafka member
may need a few seconds to join its group, so reads poll until the expected records arrived or a
deadline passed.

Where a test needs a publish to fail, each adapter fails the way it really does (no mock): Kafka's
broker refuses a batch, SQLite cannot get its write lock; the test itself is the same for both.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from parley.adapters.eventlog.embedded import EmbeddedEventLog
from parley.adapters.eventlog.kafka import EventLogUnavailableError, KafkaEventLog
from parley.adapters.eventlog.partitioning import murmur2, partition_for_key, to_signed_32
from parley.domain.events import Event
from parley.ports.eventlog import EventLog, LogConsumer, OutgoingRecord, Record
from parley.runtime.consumer import ConsumerRunner
from tests.engines import engine_url
from tests.support.events import created_event
from tests.support.kafka import delete_topics, kafka_admin
from tests.support.wait import eventually

PARTITIONS = 4
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]  # where ``parley`` is importable from
T = TypeVar("T")
DEADLINE = 30.0  # seconds; generous for a Kafka group join, never reached when things work


async def _embedded(tmp_path: Path) -> EventLog:
    return EmbeddedEventLog(tmp_path / "eventlog.sqlite3", default_partitions=PARTITIONS)


async def _kafka(tmp_path: Path) -> EventLog:
    return KafkaEventLog(engine_url("kafka"), connect_timeout=10.0)


FACTORIES: dict[str, Callable[[Path], Awaitable[EventLog]]] = {"embedded": _embedded, "kafka": _kafka}


@pytest.fixture(params=sorted(FACTORIES))
async def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventLog]:
    log = await FACTORIES[request.param](tmp_path)
    await log.start()
    try:
        yield log
    finally:
        await log.close()


@pytest.fixture
async def topic(event_log: EventLog) -> AsyncIterator[str]:
    name = f"parley.test-{uuid.uuid4().hex[:12]}.contract"
    await event_log.ensure_topic(name, PARTITIONS)
    yield name
    if isinstance(event_log, KafkaEventLog):
        await delete_topics(event_log.bootstrap, [name])


def unique_group(purpose: str) -> str:
    return f"{purpose}-{uuid.uuid4().hex[:12]}"


async def started(consumer: LogConsumer) -> LogConsumer:
    await consumer.start()
    return consumer


async def poll_until(consumer: LogConsumer, count: int, deadline: float = DEADLINE) -> list[Record]:
    """Records polled until at least ``count`` arrived (fails the test at the deadline)."""
    received: list[Record] = []
    give_up = time.monotonic() + deadline
    while len(received) < count:
        assert time.monotonic() < give_up, f"got {len(received)} of {count} records in {deadline}s"
        received += await consumer.poll(max_records=500, timeout=0.5)
    return received


async def assert_nothing_more(consumer: LogConsumer) -> None:
    assert await consumer.poll(max_records=500, timeout=1.0) == []


def records(key: bytes, count: int, prefix: str = "") -> list[OutgoingRecord]:
    return [OutgoingRecord(key=key, value=f"{prefix}{key.decode()}-{i}".encode()) for i in range(count)]


def values(received: list[Record]) -> list[bytes]:
    return [record.value for record in received]


# --- the contract -----------------------------------------------------------------------------


async def test_records_of_one_key_are_read_in_the_order_published(event_log: EventLog, topic: str) -> None:
    for batch in range(3):
        await event_log.publish(
            topic, records(b"conv-a", 5, f"b{batch}-") + records(b"conv-b", 5, f"b{batch}-")
        )
    consumer = await started(event_log.consumer(topic, unique_group("order")))
    try:
        received = await poll_until(consumer, 30)
    finally:
        await consumer.close()
    for key in (b"conv-a", b"conv-b"):
        expected = [f"b{batch}-{key.decode()}-{i}".encode() for batch in range(3) for i in range(5)]
        assert [r.value for r in received if r.key == key] == expected
        offsets = [r.offset for r in received if r.key == key]
        assert offsets == sorted(offsets)


async def test_one_key_goes_to_one_partition_the_one_kafka_picks(event_log: EventLog, topic: str) -> None:
    await event_log.publish(topic, records(b"conversation-42", 10))
    consumer = await started(event_log.consumer(topic, unique_group("partition")))
    try:
        received = await poll_until(consumer, 10)
    finally:
        await consumer.close()
    assert {r.partition for r in received} == {partition_for_key(b"conversation-42", PARTITIONS)}


async def test_different_keys_spread_over_partitions(event_log: EventLog, topic: str) -> None:
    keys = [f"conversation-{i}".encode() for i in range(64)]
    await event_log.publish(topic, [OutgoingRecord(key=key, value=b"x") for key in keys])
    consumer = await started(event_log.consumer(topic, unique_group("spread")))
    try:
        received = await poll_until(consumer, 64)
    finally:
        await consumer.close()
    assert {r.partition for r in received} == set(range(PARTITIONS))
    assert all(r.partition == partition_for_key(r.key, PARTITIONS) for r in received)


async def test_poll_with_nothing_new_returns_an_empty_list_after_its_timeout(
    event_log: EventLog, topic: str
) -> None:
    await event_log.publish(topic, records(b"k", 1))
    consumer = await started(event_log.consumer(topic, unique_group("timeout")))
    try:
        await poll_until(consumer, 1)  # joined the group and read everything
        began = time.monotonic()
        assert await consumer.poll(max_records=10, timeout=0.3) == []
        elapsed = time.monotonic() - began
    finally:
        await consumer.close()
    assert 0.2 <= elapsed < 2.0


async def test_a_waiting_poll_returns_as_soon_as_a_record_is_published(
    event_log: EventLog, topic: str
) -> None:
    await event_log.publish(topic, records(b"k", 1))
    consumer = await started(event_log.consumer(topic, unique_group("wake")))
    try:
        await poll_until(consumer, 1)
        later = asyncio.get_running_loop().call_later(
            0.2, lambda: asyncio.ensure_future(event_log.publish(topic, records(b"k", 1, "late-")))
        )
        began = time.monotonic()
        received = await consumer.poll(max_records=10, timeout=10.0)
        elapsed = time.monotonic() - began
        later.cancel()
    finally:
        await consumer.close()
    assert values(received) == [b"late-k-0"]
    assert elapsed < 5.0


async def test_a_new_member_resumes_after_the_committed_offset(event_log: EventLog, topic: str) -> None:
    group = unique_group("resume")
    await event_log.publish(topic, records(b"k", 10))
    first = await started(event_log.consumer(topic, group))
    try:
        received = await poll_until(first, 10)
        await first.commit(received[:6])
    finally:
        await first.close()

    second = await started(event_log.consumer(topic, group))
    try:
        again = await poll_until(second, 4)
        await assert_nothing_more(second)
    finally:
        await second.close()
    assert values(again) == [f"k-{i}".encode() for i in range(6, 10)]
    assert again[0].offset == received[5].offset + 1


async def test_records_not_committed_are_delivered_again(event_log: EventLog, topic: str) -> None:
    group = unique_group("redeliver")
    await event_log.publish(topic, records(b"k", 5))
    first = await started(event_log.consumer(topic, group))
    try:
        received = await poll_until(first, 5)
    finally:
        await first.close()  # crashed or stopped before committing

    second = await started(event_log.consumer(topic, group))
    try:
        again = await poll_until(second, 5)
    finally:
        await second.close()
    assert values(again) == values(received) == [f"k-{i}".encode() for i in range(5)]


async def test_every_group_gets_every_record(event_log: EventLog, topic: str) -> None:
    published = records(b"a", 5) + records(b"b", 5)
    await event_log.publish(topic, published)
    fanout = await started(event_log.consumer(topic, unique_group("fanout")))
    indexer = await started(event_log.consumer(topic, unique_group("indexer")))
    try:
        by_fanout = await poll_until(fanout, 10)
        await fanout.commit(by_fanout)
        by_indexer = await poll_until(indexer, 10)
    finally:
        await fanout.close()
        await indexer.close()
    assert sorted(values(by_fanout)) == sorted(values(by_indexer)) == sorted(r.value for r in published)


async def test_headers_keys_and_binary_values_round_trip(event_log: EventLog, topic: str) -> None:
    sent = [
        OutgoingRecord(key=b"k", value=bytes(range(256)), headers=(("event-type", b"message.created"),)),
        OutgoingRecord(key=b"k", value=b"", headers=(("a", b"\x00\xff"), ("a", b""), ("\u00e9", b"2"))),
        OutgoingRecord(key=b"k", value=b"{}"),
    ]
    await event_log.publish(topic, sent)
    consumer = await started(event_log.consumer(topic, unique_group("headers")))
    try:
        received = await poll_until(consumer, 3)
    finally:
        await consumer.close()
    assert [(r.key, r.value, r.headers) for r in received] == [(s.key, s.value, s.headers) for s in sent]


async def test_commit_of_nothing_changes_nothing(event_log: EventLog, topic: str) -> None:
    group = unique_group("empty-commit")
    await event_log.publish(topic, records(b"k", 2))
    consumer = await started(event_log.consumer(topic, group))
    try:
        await poll_until(consumer, 2)
        await consumer.commit([])
    finally:
        await consumer.close()
    consumer = await started(event_log.consumer(topic, group))
    try:
        assert len(await poll_until(consumer, 2)) == 2
    finally:
        await consumer.close()


async def test_ping_answers_when_the_log_is_up(event_log: EventLog) -> None:
    await event_log.ping()


async def test_a_failed_publish_does_not_make_later_publishes_fail(event_log: EventLog, topic: str) -> None:
    """What the relay relies on: it publishes the same rows again after a failure, and that retry
    (and everything after it) must get through, in order behind what was there before."""
    await event_log.publish(topic, [OutgoingRecord(b"k", b"before")])
    async with REFUSALS[type(event_log)](event_log, topic) as (refused, error):
        with pytest.raises(error):
            await asyncio.wait_for(event_log.publish(topic, refused), timeout=DEADLINE)
    for value in (b"after-1", b"after-2"):
        await asyncio.wait_for(event_log.publish(topic, [OutgoingRecord(b"k", value)]), timeout=DEADLINE)
    consumer = await started(event_log.consumer(topic, unique_group("after-failure")))
    try:
        received = await poll_until(consumer, 3)
        await assert_nothing_more(consumer)  # the refused record was not written either
    finally:
        await consumer.close()
    assert values(received) == [b"before", b"after-1", b"after-2"]
    # Nothing of the failed attempt holds a place in the partition either.
    assert [r.offset for r in received] == [received[0].offset + i for i in range(3)]


# A context in which publishing the records it gives fails with the error it gives.
Refusal = Callable[[Any, str], AbstractAsyncContextManager[tuple[list[OutgoingRecord], type[Exception]]]]
KAFKA_SIZE_LIMIT = 2000  # bytes; the topic's max.message.bytes while the refusal lasts


@asynccontextmanager
async def _kafka_refuses(
    event_log: KafkaEventLog, topic: str
) -> AsyncIterator[tuple[list[OutgoingRecord], type[Exception]]]:
    """The broker refuses a batch above the topic's size limit: the producer has numbered it but
    it is never written, the gap that used to make an idempotent producer fail every later batch
    of that partition (see ``KafkaEventLog.publish``)."""
    limit = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(KAFKA_SIZE_LIMIT)})
    async with kafka_admin(event_log.bootstrap) as admin:
        await admin.alter_configs([limit])
        # The change is asynchronous on the broker: wait until it reports the new limit.
        await eventually(
            lambda: _topic_config(admin, topic, "max.message.bytes"),
            lambda value: value == str(KAFKA_SIZE_LIMIT),
            timeout=DEADLINE,
        )
    yield [OutgoingRecord(b"k", b"x" * (2 * KAFKA_SIZE_LIMIT))], KafkaError


async def _topic_config(admin: Any, topic: str, name: str) -> str | None:
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    for _code, _message, _type, _name, entries in response.resources:
        for entry in entries:
            if entry[0] == name:
                return str(entry[1])
    return None


@asynccontextmanager
async def _embedded_refuses(
    event_log: EmbeddedEventLog, topic: str
) -> AsyncIterator[tuple[list[OutgoingRecord], type[Exception]]]:
    """Another connection holds SQLite's write lock for longer than the log's busy timeout (a
    few seconds), so the transaction that would write the batch cannot begin."""
    holder = sqlite3.connect(event_log.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield [OutgoingRecord(b"k", b"refused")], sqlite3.OperationalError
    finally:
        holder.close()  # rolls the held transaction back


REFUSALS: dict[type, Refusal] = {KafkaEventLog: _kafka_refuses, EmbeddedEventLog: _embedded_refuses}


# --- embedded only ----------------------------------------------------------------------------


async def test_embedded_log_keeps_records_and_committed_offsets_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "eventlog.sqlite3"
    log = EmbeddedEventLog(path, default_partitions=PARTITIONS)
    await log.start()
    await log.publish("events", records(b"k", 5) + records(b"other", 3))
    consumer = await started(log.consumer("events", "fanout"))
    received = await poll_until(consumer, 8)
    await consumer.commit([r for r in received if r.key == b"k"][:3])
    await consumer.close()
    await log.close()

    reopened = EmbeddedEventLog(path, default_partitions=PARTITIONS)
    await reopened.start()
    try:
        consumer = await started(reopened.consumer("events", "fanout"))
        again = await poll_until(consumer, 5)
        await assert_nothing_more(consumer)
        # Offsets go on from where they were, not from 0.
        await reopened.publish("events", records(b"k", 1, "new-"))
        newest = await poll_until(consumer, 1)
        await consumer.close()
        fresh_group = await started(reopened.consumer("events", "indexer"))
        everything = await poll_until(fresh_group, 9)
        await fresh_group.close()
    finally:
        await reopened.close()
    assert sorted(values(again)) == sorted([b"k-3", b"k-4", b"other-0", b"other-1", b"other-2"])
    assert newest[0].value == b"new-k-0" and newest[0].offset == 5
    assert len(everything) == 9


_PUBLISH_UNTIL_KILLED = """
import asyncio, sys
from pathlib import Path
from parley.adapters.eventlog.embedded import EmbeddedEventLog
from parley.ports.eventlog import OutgoingRecord

async def main() -> None:
    log = EmbeddedEventLog(Path(sys.argv[1]), default_partitions=4)
    await log.start()
    for batch in range(100_000):
        await log.publish("events", [OutgoingRecord(key=b"k%d" % i, value=b"%d" % batch) for i in range(10)])
        print(batch, flush=True)  # acknowledged

asyncio.run(main())
"""


async def test_embedded_log_loses_no_acknowledged_record_when_the_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "eventlog.sqlite3"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PUBLISH_UNTIL_KILLED,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPOSITORY_ROOT,
    )
    assert process.stdout is not None
    acknowledged = -1
    try:
        async with asyncio.timeout(DEADLINE):
            while acknowledged < 50:
                acknowledged = int(await process.stdout.readline())
    finally:
        process.kill()  # SIGKILL: no close(), no flush, mid-transaction
        await process.wait()

    log = EmbeddedEventLog(path, default_partitions=PARTITIONS)
    await log.start()
    try:
        consumer = await started(log.consumer("events", "check"))
        stored = await poll_until(consumer, (acknowledged + 1) * 10)
        await consumer.close()
    finally:
        await log.close()
    batches = {int(r.value) for r in stored}
    assert set(range(acknowledged + 1)) <= batches


class BatchRecorder:
    """An event consumer that remembers the seqs of each batch it was handed."""

    def __init__(self, purpose: str, linger: float) -> None:
        self.group = unique_group(purpose)
        self.linger = linger
        self.batches: list[list[int]] = []

    async def check_engine(self) -> None:
        return None

    async def handle_batch(self, events: Sequence[Event]) -> None:
        self.batches.append([e.seq or 0 for e in events])


def _created(seq: int) -> OutgoingRecord:
    return OutgoingRecord(b"1", created_event(seq, f"m{seq}").to_bytes())


async def test_a_lingering_consumer_gets_records_published_close_together_in_one_batch(
    event_log: EventLog, topic: str
) -> None:
    """The indexer lingers (larger bulk writes), the fanout does not: the eager consumer gets
    the first record alone before the second is even published; the lingering one, started
    alongside, gets both in one batch."""
    eager, lingering = BatchRecorder("eager", 0.0), BatchRecorder("lingering", 1.0)
    runners = [
        ConsumerRunner(event_log, c, topic=topic, dead_letter_topic=f"{topic}.dlq")
        for c in (eager, lingering)
    ]
    for runner in runners:
        runner.start()
    try:
        await eventually(_async_value(lambda: all(r.assigned() for r in runners)), bool, timeout=DEADLINE)
        await event_log.publish(topic, [_created(1)])
        await eventually(_async_value(lambda: eager.batches), lambda b: b == [[1]], timeout=DEADLINE)
        await event_log.publish(topic, [_created(2)])
        await eventually(_async_value(lambda: lingering.batches), lambda b: b == [[1, 2]], timeout=DEADLINE)
        assert eager.batches == [[1], [2]]
    finally:
        for runner in runners:
            await runner.stop()


def _async_value(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def probe() -> T:
        return read()

    return probe


async def test_embedded_log_refuses_a_second_process_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "eventlog.sqlite3"
    first = EmbeddedEventLog(path)
    await first.start()
    try:
        with pytest.raises(RuntimeError, match="one process"):
            await EmbeddedEventLog(path).start()
    finally:
        await first.close()


async def test_embedded_group_has_one_member_at_a_time(tmp_path: Path) -> None:
    log = EmbeddedEventLog(tmp_path / "eventlog.sqlite3")
    await log.start()
    try:
        member = await started(log.consumer("events", "fanout"))
        with pytest.raises(RuntimeError, match="one member per group"):
            await log.consumer("events", "fanout").start()
        await member.close()
        await (await started(log.consumer("events", "fanout"))).close()  # free again once closed
    finally:
        await log.close()


async def test_embedded_trim_keeps_what_a_group_has_not_committed(tmp_path: Path) -> None:
    log = EmbeddedEventLog(tmp_path / "eventlog.sqlite3", default_partitions=1, retain_per_partition=2)
    await log.start()
    try:
        slow = await started(log.consumer("events", "slow"))
        fast = await started(log.consumer("events", "fast"))
        await log.publish("events", records(b"k", 10))
        await fast.commit(await poll_until(fast, 10))
        slow_batch = await poll_until(slow, 10)
        await slow.commit(slow_batch[:4])
        assert await log.trim() == 4  # the slow group still needs offsets 4..9
        await slow.commit(slow_batch)
        assert await log.trim() == 4  # everyone is done; the newest 2 are retained
        await slow.close()
        late = await started(log.consumer("events", "late"))
        assert values(await poll_until(late, 2)) == [b"k-8", b"k-9"]  # starts at the earliest kept
        await late.close()
    finally:
        await log.close()


async def test_embedded_concurrent_publishers_lose_nothing_and_keep_per_key_order(tmp_path: Path) -> None:
    log = EmbeddedEventLog(
        tmp_path / "eventlog.sqlite3", default_partitions=PARTITIONS, tail_per_partition=16
    )
    await log.start()
    try:

        async def publisher(key: bytes) -> None:
            for i in range(20):
                await log.publish("events", [OutgoingRecord(key=key, value=f"{i}".encode())])

        keys = [f"conv-{n}".encode() for n in range(10)]
        await asyncio.gather(*(publisher(key) for key in keys))
        consumer = await started(log.consumer("events", "fanout"))
        received = await poll_until(consumer, 200)  # mostly beyond the small tail: read from SQLite
        await consumer.close()
    finally:
        await log.close()
    for key in keys:
        assert [int(r.value) for r in received if r.key == key] == list(range(20))


# --- Kafka only -------------------------------------------------------------------------------


async def test_kafka_log_that_cannot_connect_fails_fast_with_a_clear_error() -> None:
    log = KafkaEventLog("127.0.0.1:1", connect_timeout=3.0)
    began = time.monotonic()
    with pytest.raises(EventLogUnavailableError, match=r"127\.0\.0\.1:1"):
        await log.start()
    assert time.monotonic() - began < 10.0


# --- the partitioner --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "java_value"),
    [
        # From Kafka's own tests (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafkas_java_client(data: bytes, java_value: int) -> None:
    assert to_signed_32(murmur2(data)) == java_value
