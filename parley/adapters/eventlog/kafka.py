"""The event log on Apache Kafka, through aiokafka.

Guarantees (those of :mod:`parley.ports.eventlog`) and how Kafka gives them:

- ``publish`` is durable on return: the producer is idempotent with ``acks="all"``, and
  ``publish`` awaits the delivery of every record of the batch before it returns;
- a failed ``publish`` leaves nothing behind and does not poison the next one: it waits until
  every record it handed to the producer is either written or failed, then replaces the producer
  (see :meth:`KafkaEventLog.publish` for why an idempotent producer must not outlive a failure);
- order per key: records go to Kafka's default partition for their key (murmur2, the same
  function as the embedded log) and are appended in call order; idempotence (sequence numbers
  per partition) keeps that order through retries;
- at-least-once: consumers never auto-commit; ``commit`` stores ``offset + 1`` of the records
  handed in. After a rebalance, a partition's new owner restarts from its last committed offset,
  so a commit that fails because the partition moved is logged, not raised: the records are
  processed again by the new owner, and every consumer is idempotent.

Every call that talks to the cluster has a bounded timeout, so a broker that is down gives a clear
:class:`EventLogUnavailableError` rather than a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from parley.ports.eventlog import EventLog, LogConsumer, OutgoingRecord, Record

log = logging.getLogger(__name__)


class EventLogUnavailableError(ConnectionError):
    """Kafka could not be reached (or did not answer) within the configured timeout."""


async def _start_bounded(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    what: str,
    bootstrap: str,
    seconds: float,
) -> None:
    """Start an aiokafka client within ``seconds``, or stop it and raise a clear error."""
    try:
        async with asyncio.timeout(seconds):
            await start()
    except (KafkaError, OSError, TimeoutError) as error:
        with contextlib.suppress(Exception):
            await stop()
        raise EventLogUnavailableError(
            f"Kafka {what} could not connect to {bootstrap} within {seconds:g}s: {error!r}"
        ) from error


class KafkaEventLog:
    """Kafka-backed event log: one idempotent producer and one admin client per process."""

    def __init__(
        self,
        bootstrap: str,
        *,
        replication_factor: int = 1,
        client_id: str = "parley",
        linger_ms: int = 0,
        request_timeout: float = 15.0,
        connect_timeout: float = 15.0,
        ping_timeout: float = 3.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.replication_factor = replication_factor
        self.client_id = client_id
        self.linger_ms = linger_ms
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.ping_timeout = ping_timeout
        self._producer: Any = None
        self._admin: Any = None
        # Held while a producer is started or retired, so that no publish starts on a new producer
        # before the failed one has stopped (see ``publish``).
        self._producer_lock = asyncio.Lock()

    async def start(self) -> None:
        producer = await self._start_producer()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=int(self.request_timeout * 1000),
        )
        try:
            await _start_bounded(admin.start, admin.close, "admin", self.bootstrap, self.connect_timeout)
        except BaseException:
            await producer.stop()
            raise
        self._producer, self._admin = producer, admin

    async def _start_producer(self) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            # Records handed to send() together share a produce request anyway; lingering
            # (PARLEY_KAFKA_LINGER_MS) only helps many small concurrent publishes.
            linger_ms=self.linger_ms,
            request_timeout_ms=int(self.request_timeout * 1000),
        )
        await _start_bounded(producer.start, producer.stop, "producer", self.bootstrap, self.connect_timeout)
        return producer

    async def close(self) -> None:
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            await producer.stop()  # flushes what is still buffered
        if admin is not None:
            await admin.close()

    async def ping(self) -> None:
        admin = self._started(self._admin)
        try:
            async with asyncio.timeout(self.ping_timeout):
                await admin.describe_cluster()
        except (KafkaError, OSError, TimeoutError) as error:
            raise EventLogUnavailableError(
                f"Kafka at {self.bootstrap} did not answer a metadata request within "
                f"{self.ping_timeout:g}s: {error!r}"
            ) from error

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic``; an existing topic is left as it is (its partition count included)."""
        admin = self._started(self._admin)
        # With replicas, acks="all" is only as strong as the in-sync replicas it waits for.
        configs = {"min.insync.replicas": str(max(1, min(2, self.replication_factor - 1)))}
        new_topic = NewTopic(topic, partitions, self.replication_factor, topic_configs=configs)
        async with asyncio.timeout(self.request_timeout + 5):
            response = await admin.create_topics([new_topic], timeout_ms=int(self.request_timeout * 1000))
        for error in response.topic_errors:
            name, code = error[0], error[1]
            if code in (0, TopicAlreadyExistsError.errno):
                continue
            message = error[2] if len(error) > 2 else None
            raise for_code(code)(f"creating topic {name!r}: {message or 'failed'}")

    async def publish(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        """Send the batch and wait until Kafka acknowledged every record (acks=all).

        On failure, the producer is replaced before the error is raised: the caller (the relay)
        publishes the same records again, and that retry must be able to succeed.

        Why: the idempotent producer numbers the batches of each partition, and the broker only
        appends the batch whose number follows the last one it wrote. A batch that fails on the
        client side has used its numbers without being written: typically a batch buffered while
        the broker shuts down (its partitions have no leader, ``leader = -1``) and still
        unwritten when the request timeout expires. aiokafka (0.14) does not renumber after such
        a failure (the Java client bumps the producer epoch), so every later batch of that
        partition is refused with OUT_OF_ORDER_SEQUENCE_NUMBER, a non-retriable error, for as
        long as the producer lives: the relay retried the same rows forever and their
        conversations stopped reaching Kafka (the soak's search gap after the broker restart,
        docs/reliability.md). A new producer gets a new producer id whose numbering starts
        afresh.

        Order: the failed producer is stopped, which waits until each record still in its hands
        is written or failed, before a new one is started, so no record of the failed attempt
        can land after the records of the retry.
        """
        producer = await self._current_producer()
        deliveries: list[asyncio.Future[Any]] = []
        failure: BaseException | None = None
        try:
            # ``send`` only appends to the producer's buffer (in call order, hence in key
            # order); the returned futures resolve when the broker has acknowledged the record.
            for record in records:
                deliveries.append(
                    await producer.send(
                        topic, value=record.value, key=record.key, headers=list(record.headers) or None
                    )
                )
        except Exception as error:  # e.g. the buffer stayed full for the whole request timeout
            failure = error
        # Every record handed over is settled (written or failed) before this returns or raises.
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        failure = failure or next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            await self._retire_producer(producer, failure)
            raise failure

    async def _current_producer(self) -> Any:
        """The live producer; a new one if the last one was retired (bounded start)."""
        self._started(self._admin)  # started, and not closed
        async with self._producer_lock:
            if self._producer is None:
                self._producer = await self._start_producer()
            return self._producer

    async def _retire_producer(self, producer: Any, failure: BaseException) -> None:
        async with self._producer_lock:
            if self._producer is not producer:
                return  # a concurrent publish already retired it
            self._producer = None
            log.warning("publish failed (%r): replacing the Kafka producer", failure)
            # stop() waits for what other publishes still have in flight on it; a new producer
            # is started only after that (the lock), by the next publish.
            try:
                await producer.stop()
            except Exception:
                log.warning("the retired Kafka producer did not stop cleanly", exc_info=True)

    def consumer(self, topic: str, group: str, *, fetch_wait: float = 0.0) -> LogConsumer:
        return KafkaLogConsumer(
            self.bootstrap,
            topic,
            group,
            client_id=self.client_id,
            request_timeout=self.request_timeout,
            connect_timeout=self.connect_timeout,
            fetch_wait=fetch_wait,
        )

    def _started(self, client: Any) -> Any:
        if client is None:
            raise RuntimeError("KafkaEventLog is not started")
        return client


class KafkaLogConsumer:
    """A member of consumer group ``group`` on ``topic``; Kafka assigns its partitions."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        client_id: str,
        request_timeout: float,
        connect_timeout: float,
        fetch_wait: float = 0.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.fetch_wait = fetch_wait
        self._consumer: Any = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-{self.group}",
            group_id=self.group,
            # Offsets are committed only by ``commit``, after the work is durable.
            enable_auto_commit=False,
            # A group with no committed offset reads the whole retained log.
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            request_timeout_ms=int(self.request_timeout * 1000),
            **self._fetch_options(),
        )
        what = f"consumer of group {self.group!r}"
        await _start_bounded(consumer.start, consumer.stop, what, self.bootstrap, self.connect_timeout)
        self._consumer = consumer

    def _fetch_options(self) -> dict[str, int]:
        if self.fetch_wait <= 0:
            return {}  # aiokafka's defaults: a fetch is answered as soon as one byte is there
        # The broker holds each fetch until a MiB is there or fetch_wait has passed: under load
        # a few large fetches instead of one per produce request (a busy broker's CPU).
        return {"fetch_max_wait_ms": max(1, round(self.fetch_wait * 1000)), "fetch_min_bytes": 1 << 20}

    def assignment(self) -> frozenset[int]:
        if self._consumer is None:
            return frozenset()
        return frozenset(tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic)

    async def poll(self, max_records: int, timeout: float) -> list[Record]:
        consumer = self._started()
        batches = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        return [
            Record(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key or b"",
                value=message.value or b"",
                headers=tuple((name, bytes(value)) for name, value in message.headers or ()),
            )
            for partition in sorted(batches, key=lambda tp: tp.partition)
            for message in batches[partition]
        ]

    async def commit(self, records: Sequence[Record]) -> None:
        consumer = self._started()
        next_offsets: dict[Any, int] = {}
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            next_offsets[partition] = max(next_offsets.get(partition, 0), record.offset + 1)
        if not next_offsets:
            return
        try:
            await consumer.commit(next_offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group rebalanced and (some of) these partitions moved: their new owner reads
            # from the last committed offset and processes these records again (idempotently).
            log.warning(
                "commit of %s for group %r failed after a rebalance; the new owner will re-process: %s",
                {f"{tp.topic}[{tp.partition}]": offset for tp, offset in next_offsets.items()},
                self.group,
                error,
            )

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()  # leaves the group, so its partitions are reassigned at once

    def _started(self) -> Any:
        if self._consumer is None:
            raise RuntimeError(f"consumer of group {self.group!r} is not started (or was closed)")
        return self._consumer


# The port is a Protocol: make mypy check that the adapters satisfy it.
_check_log: type[EventLog] = KafkaEventLog
_check_consumer: type[LogConsumer] = KafkaLogConsumer
