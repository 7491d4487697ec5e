"""The embedded event log: Kafka's model (topics, partitions by key, consumer groups, committed
offsets) kept in one SQLite file of its own, for the embedded mode.

Limit: **one process only.** The file is locked (``flock``) while a log has it open, and each
consumer group has at most one member at a time, which owns every partition of its topic. Run the
real topology (Kafka) to spread a group over processes.

Guarantees (those of :mod:`parley.ports.eventlog`):

- ``publish`` returns once its records are committed to SQLite with ``synchronous=FULL`` (WAL),
  so an acknowledged record survives a crash or power loss of the process;
- a record's partition is Kafka's default one (:mod:`.partitioning`) and offsets in a partition
  increase by one, so records with the same key are read in the order published;
- a member reads from its group's committed offsets; what it polled but did not commit is
  delivered again to the next member of the group (at-least-once).

How it stays fast enough (every record passes once per consumer group):

- *Group commit*: ``publish`` and ``commit`` calls queue their work; one writer task writes
  everything queued in one transaction, so concurrent callers share one fsync. The
  transaction runs on the writer connection's own thread in one hand-off (plain ``sqlite3``),
  not a hop per statement: each hop's return waits for a busy event loop to come round.
- *Recent tail in memory*: after a transaction commits, its records are appended to a bounded
  in-memory tail per partition. Members that keep up read from the tail; only a member that fell
  behind it (or starts after a restart) reads SQLite, a batch per partition with one query. The
  tail holds committed records only, so a reader can never see a record that could be lost.

Retention: :meth:`EmbeddedEventLog.trim` (also run by the writer every ``trim_interval``
seconds) deletes a partition's records that every registered group has committed past *and*
that are older than the newest ``retain_per_partition`` records.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import sqlite3
import struct
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from parley.adapters.eventlog.partitioning import partition_for_key
from parley.ports.eventlog import EventLog, LogConsumer, OutgoingRecord, Record

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS topics (
        topic TEXT PRIMARY KEY,
        partitions INTEGER NOT NULL
    )""",
    # log_start/log_end are kept explicitly (not derived from MIN/MAX of records) so that offsets
    # keep increasing after retention has deleted every record of a partition.
    """CREATE TABLE IF NOT EXISTS partitions (
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        log_start INTEGER NOT NULL,
        log_end INTEGER NOT NULL,
        PRIMARY KEY (topic, partition)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS records (
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        log_offset INTEGER NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        headers BLOB,
        PRIMARY KEY (topic, partition, log_offset)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS group_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (group_id, topic, partition)
    ) WITHOUT ROWID""",
)

_INSERT_RECORD = (
    "INSERT INTO records (topic, partition, log_offset, key, value, headers) VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_OFFSET = (
    "INSERT INTO group_offsets (group_id, topic, partition, next_offset) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
)

# Kafka's partitioner is pure Python here; conversation ids repeat, so remember recent answers.
_partition_of = functools.lru_cache(maxsize=65_536)(partition_for_key)


class EventLogClosedError(RuntimeError):
    """The embedded log was used before ``start()`` or after ``close()``."""


# --- headers, stored as bytes exactly as given ------------------------------------------------

_HEADER_SIZES = struct.Struct(">HI")


def _open_writer(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a transaction is on disk when COMMIT returns, which is what "publish returned"
    # promises; the writer's group commit keeps the fsync count low.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=5000")
    for statement in _SCHEMA:
        connection.execute(statement)
    return connection


def _run_transaction(connection: sqlite3.Connection, statements: list[tuple[str, Sequence[Any]]]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            if rows:
                connection.executemany(sql, rows)
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            connection.execute("ROLLBACK")
        raise


def _encode_headers(headers: tuple[tuple[str, bytes], ...]) -> bytes | None:
    if not headers:
        return None
    parts: list[bytes] = []
    for name, value in headers:
        encoded_name = name.encode()
        parts += (_HEADER_SIZES.pack(len(encoded_name), len(value)), encoded_name, value)
    return b"".join(parts)


def _decode_headers(blob: bytes | None) -> tuple[tuple[str, bytes], ...]:
    if not blob:
        return ()
    headers: list[tuple[str, bytes]] = []
    position = 0
    while position < len(blob):
        name_size, value_size = _HEADER_SIZES.unpack_from(blob, position)
        position += _HEADER_SIZES.size
        name = blob[position : position + name_size].decode()
        position += name_size
        headers.append((name, bytes(blob[position : position + value_size])))
        position += value_size
    return tuple(headers)


def _check_outgoing(record: OutgoingRecord) -> None:
    """Refuse, in the caller, what Kafka's client would refuse: keys and values are bytes."""
    if not isinstance(record.key, bytes) or not isinstance(record.value, bytes):
        raise TypeError("event log keys and values must be bytes (serialize before publishing)")
    for name, value in record.headers:
        if not isinstance(name, str) or not isinstance(value, bytes):
            raise TypeError("event log headers must be (str, bytes) pairs")


# --- in-memory state --------------------------------------------------------------------------


@dataclass(slots=True)
class _Partition:
    """What the process knows of one partition; changed only after the matching SQLite commit.

    Invariant: ``tail_start + len(tail) == log_end`` (the tail is the newest records).
    """

    log_start: int
    log_end: int
    tail_start: int
    tail: list[Record] = field(default_factory=list)

    def append(self, records: list[Record], tail_limit: int) -> None:
        self.tail.extend(records)
        self.log_end += len(records)
        # Cut the tail back to its limit only when it is twice as long: amortised O(1) per record.
        if len(self.tail) > 2 * tail_limit:
            dropped = len(self.tail) - tail_limit
            del self.tail[:dropped]
            self.tail_start += dropped

    def tail_slice(self, start: int, count: int) -> list[Record] | None:
        """Records from offset ``start`` if the tail still has them, else ``None``."""
        if start < self.tail_start:
            return None
        index = start - self.tail_start
        return self.tail[index : index + count]


@dataclass(slots=True)
class _PublishJob:
    topic: str
    records: Sequence[OutgoingRecord]
    done: asyncio.Future[None]


@dataclass(slots=True)
class _CommitJob:
    group: str
    topic: str
    next_offsets: dict[int, int]
    done: asyncio.Future[None]


@dataclass(slots=True)
class _WritePlan:
    """One transaction's worth of queued jobs, with offsets assigned but not yet applied."""

    new_topics: dict[str, int] = field(default_factory=dict)
    record_rows: list[tuple[Any, ...]] = field(default_factory=list)
    appended: dict[tuple[str, int], list[Record]] = field(default_factory=lambda: defaultdict(list))
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)
    offset_rows: list[tuple[str, str, int, int]] = field(default_factory=list)


def _acquire_process_lock(path: Path) -> int:
    """Lock ``path`` for this process, or fail at once if another process has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(
            f"{path}: another process has this embedded event log open; "
            "the embedded log serves one process only (use Kafka for more)"
        ) from None
    return fd


def _release_process_lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class EmbeddedEventLog:
    """Durable, partitioned log with consumer groups in one SQLite file; one process only."""

    def __init__(
        self,
        path: Path,
        default_partitions: int = 8,
        *,
        retain_per_partition: int = 10_000,
        tail_per_partition: int = 2_048,
        trim_interval: float = 30.0,
    ) -> None:
        self.path = path
        self.default_partitions = default_partitions
        self.retain_per_partition = retain_per_partition
        self.tail_per_partition = tail_per_partition
        self.trim_interval = trim_interval
        # The writer is a plain sqlite3 connection used only on its one thread (see _on_writer).
        self._writer: sqlite3.Connection | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._topics: dict[str, list[_Partition]] = {}
        self._new_records: dict[str, asyncio.Event] = {}
        # Every write transaction holds this lock: the writer connection runs one at a time.
        self._write_lock = asyncio.Lock()
        self._jobs: list[_PublishJob | _CommitJob] = []
        self._jobs_waiting = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self._members: set[tuple[str, str]] = set()
        # Bumped by every start(): members of an earlier session are closed with it.
        self.session = 0

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd = await asyncio.to_thread(_acquire_process_lock, lock_path)
        try:
            self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="parley-eventlog-writer")
            self._writer = await self._on_writer(_open_writer, self.path)
            # A second connection for reading behind the tail: WAL lets it read while the
            # writer commits, and it never sees uncommitted rows.
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA query_only=1")
            await self._load_partitions()
        except BaseException:
            await self._close_connections()
            raise
        self._closing = False
        self.session += 1
        self._writer_task = asyncio.create_task(self._write_loop(), name="embedded-eventlog-writer")

    async def close(self) -> None:
        try:
            if self._writer_task is not None:
                # Finish what callers are already waiting for before the connections go.
                self._closing = True
                self._jobs_waiting.set()
                await self._writer_task
        finally:
            self._writer_task = None
            await self._close_connections()
            self._members.clear()
            # Wake waiting consumers so they notice the log is closed; a later start() arms
            # fresh events.
            events, self._new_records = self._new_records, {}
            for event in events.values():
                event.set()

    async def _close_connections(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await self._on_writer(self._writer.close)
        if self._writer_thread is not None:
            self._writer_thread.shutdown(wait=True)
        self._reader = self._writer = self._writer_thread = None
        if self._lock_fd is not None:
            _release_process_lock(self._lock_fd)
            self._lock_fd = None

    async def ping(self) -> None:
        await self._read_connection().execute_fetchall("SELECT 1")

    async def _load_partitions(self) -> None:
        rows = await self._read_connection().execute_fetchall(
            "SELECT topic, partition, log_start, log_end FROM partitions ORDER BY topic, partition"
        )
        self._topics = {}
        for topic, _partition, log_start, log_end in rows:
            self._topics.setdefault(topic, []).append(
                _Partition(log_start=log_start, log_end=log_end, tail_start=log_end)
            )

    def _write_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            raise EventLogClosedError("the embedded event log is not started")
        return self._writer

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the writer connection's thread (sqlite3 objects stay on one thread)."""
        if self._writer_thread is None:
            raise EventLogClosedError("the embedded event log is not started")
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, fn, *args)

    def _read_connection(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise EventLogClosedError("the embedded event log is not started")
        return self._reader

    # --- topics -----------------------------------------------------------------------------

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` partitions; an existing topic is left as it is."""
        if partitions <= 0:
            raise ValueError(f"a topic needs at least one partition, got {partitions}")
        async with self._write_lock:
            if topic in self._topics:
                return
            await self._transaction(self._topic_statements({topic: partitions}))
            self._add_topics_in_memory({topic: partitions})

    def partitions_of(self, topic: str) -> int:
        """How many partitions ``topic`` has (0 if it does not exist yet)."""
        return len(self._topics.get(topic, ()))

    @staticmethod
    def _topic_statements(new_topics: dict[str, int]) -> list[tuple[str, list[tuple[Any, ...]]]]:
        return [
            ("INSERT INTO topics (topic, partitions) VALUES (?, ?)", list(new_topics.items())),
            (
                "INSERT INTO partitions (topic, partition, log_start, log_end) VALUES (?, ?, 0, 0)",
                [(topic, p) for topic, count in new_topics.items() for p in range(count)],
            ),
        ]

    def _add_topics_in_memory(self, new_topics: dict[str, int]) -> None:
        for topic, count in new_topics.items():
            self._topics[topic] = [_Partition(0, 0, 0) for _ in range(count)]

    # --- writing ----------------------------------------------------------------------------

    async def publish(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        """Append ``records`` (a topic that does not exist is created with the default partitions).

        Returns once they are committed; records of one call are contiguous in each partition.
        """
        if not records:
            return
        for record in records:
            _check_outgoing(record)
        await self._enqueue(lambda done: _PublishJob(topic, records, done))

    async def _commit_offsets(self, group: str, topic: str, next_offsets: dict[int, int]) -> None:
        await self._enqueue(lambda done: _CommitJob(group, topic, next_offsets, done))

    async def _enqueue(self, make_job: Callable[[asyncio.Future[None]], _PublishJob | _CommitJob]) -> None:
        if self._writer_task is None or self._closing:
            raise EventLogClosedError("the embedded event log is not started")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.append(make_job(done))
        self._jobs_waiting.set()
        await done

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_trim = loop.time() + self.trim_interval
        while True:
            await self._jobs_waiting.wait()
            self._jobs_waiting.clear()
            jobs, self._jobs = self._jobs, []
            if jobs:
                async with self._write_lock:
                    await self._write_jobs(jobs)
            if self._closing and not self._jobs:
                return
            if loop.time() >= next_trim:
                next_trim = loop.time() + self.trim_interval
                try:
                    await self.trim()
                except Exception:
                    log.exception("trimming the embedded event log failed; will retry")

    async def _write_jobs(self, jobs: list[_PublishJob | _CommitJob]) -> None:
        """Write every queued job in one transaction, then make the records visible."""
        try:
            plan = self._plan(jobs)
            await self._transaction(self._statements(plan))
        except BaseException as error:
            failure = error if isinstance(error, Exception) else EventLogClosedError("writer stopped")
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(failure)
            if not isinstance(error, Exception):
                raise
            return
        # Committed: only now do readers get to see the records.
        self._add_topics_in_memory(plan.new_topics)
        for (topic, p), records in plan.appended.items():
            self._topics[topic][p].append(records, self.tail_per_partition)
        for topic in {topic for topic, _ in plan.appended}:
            self._wake_readers(topic)
        for job in jobs:
            if not job.done.done():
                job.done.set_result(None)

    def _statements(self, plan: _WritePlan) -> list[tuple[str, list[tuple[Any, ...]]]]:
        statements = self._topic_statements(plan.new_topics) if plan.new_topics else []
        statements.append((_INSERT_RECORD, plan.record_rows))
        statements.append(
            (
                "UPDATE partitions SET log_end = ? WHERE topic = ? AND partition = ?",
                [(end, topic, p) for (topic, p), end in plan.next_offset.items()],
            )
        )
        statements.append((_UPSERT_OFFSET, [tuple(row) for row in plan.offset_rows]))
        return statements

    def _plan(self, jobs: list[_PublishJob | _CommitJob]) -> _WritePlan:
        plan = _WritePlan()
        for job in jobs:
            if isinstance(job, _CommitJob):
                plan.offset_rows += [
                    (job.group, job.topic, p, offset) for p, offset in job.next_offsets.items()
                ]
                continue
            partition_count = self.partitions_of(job.topic) or plan.new_topics.get(job.topic, 0)
            if not partition_count:
                partition_count = plan.new_topics[job.topic] = self.default_partitions
            for outgoing in job.records:
                p = _partition_of(outgoing.key, partition_count)
                slot = (job.topic, p)
                offset = plan.next_offset.get(slot)
                if offset is None:
                    offset = self._topics[job.topic][p].log_end if job.topic in self._topics else 0
                plan.next_offset[slot] = offset + 1
                plan.record_rows.append(
                    (job.topic, p, offset, outgoing.key, outgoing.value, _encode_headers(outgoing.headers))
                )
                plan.appended[slot].append(
                    Record(job.topic, p, offset, outgoing.key, outgoing.value, outgoing.headers)
                )
        return plan

    async def _transaction(self, statements: Iterable[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
        """Run ``statements`` (sql, rows) in one IMMEDIATE transaction; the caller holds the lock."""
        await self._on_writer(_run_transaction, self._write_connection(), list(statements))

    def _wake_readers(self, topic: str) -> None:
        # Waiters hold the old event; a fresh one is armed for the next wait.
        event = self._new_records.pop(topic, None)
        if event is not None:
            event.set()

    # --- reading ----------------------------------------------------------------------------

    def _new_records_event(self, topic: str) -> asyncio.Event:
        event = self._new_records.get(topic)
        if event is None:
            event = self._new_records[topic] = asyncio.Event()
        return event

    def _has_unread(self, topic: str, positions: list[int]) -> bool:
        return any(
            max(position, part.log_start) < part.log_end
            for part, position in zip(self._topics[topic], positions, strict=True)
        )

    async def _read(self, topic: str, positions: list[int], max_records: int, first: int) -> list[Record]:
        """Up to ``max_records`` committed records at or after ``positions``, partitions in turn."""
        partitions = self._topics[topic]
        found: list[Record] = []
        for step in range(len(partitions)):
            wanted = max_records - len(found)
            if wanted <= 0:
                break
            p = (first + step) % len(partitions)
            part = partitions[p]
            # Records that retention deleted are skipped, like Kafka's reset to "earliest".
            start = max(positions[p], part.log_start)
            end = part.log_end
            if start >= end:
                continue
            records = part.tail_slice(start, wanted)
            if records is None:
                records = await self._read_stored(topic, p, start, min(end, start + wanted))
            found += records
        return found

    async def _read_stored(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        rows = await self._read_connection().execute_fetchall(
            "SELECT log_offset, key, value, headers FROM records "
            "WHERE topic = ? AND partition = ? AND log_offset >= ? AND log_offset < ? "
            "ORDER BY log_offset",
            (topic, partition, start, end),
        )
        return [
            Record(topic, partition, offset, bytes(key), bytes(value), _decode_headers(headers))
            for offset, key, value, headers in rows
        ]

    # --- consumer groups --------------------------------------------------------------------

    def consumer(self, topic: str, group: str, *, fetch_wait: float = 0.0) -> LogConsumer:
        # fetch_wait is ignored: a poll here is a read of local memory or disk, not a request.
        return EmbeddedLogConsumer(self, topic, group)

    async def _join(self, group: str, topic: str) -> list[int]:
        """Make the caller the group's only member; returns the position to read each partition from.

        A partition the group never committed starts at the log start (Kafka's "earliest"). The
        group is written down at once so retention keeps what it has not read yet.
        """
        if (group, topic) in self._members:
            raise RuntimeError(
                f"consumer group {group!r} already has a member on {topic!r}; the embedded event "
                "log allows one member per group (one process only)"
            )
        self._members.add((group, topic))  # before any await: a concurrent start must fail
        try:
            if topic not in self._topics:
                await self.ensure_topic(topic, self.default_partitions)
            partitions = self._topics[topic]
            async with self._write_lock:
                await self._transaction(
                    [
                        (
                            "INSERT OR IGNORE INTO group_offsets (group_id, topic, partition, next_offset) "
                            "VALUES (?, ?, ?, ?)",
                            [(group, topic, p, part.log_start) for p, part in enumerate(partitions)],
                        )
                    ]
                )
            rows = await self._read_connection().execute_fetchall(
                "SELECT partition, next_offset FROM group_offsets WHERE group_id = ? AND topic = ?",
                (group, topic),
            )
        except BaseException:
            self._members.discard((group, topic))
            raise
        committed = {p: offset for p, offset in rows}
        return [committed.get(p, part.log_start) for p, part in enumerate(partitions)]

    def _leave(self, group: str, topic: str) -> None:
        self._members.discard((group, topic))

    # --- retention --------------------------------------------------------------------------

    async def trim(self) -> int:
        """Delete records every group has committed past, beyond the newest ``retain_per_partition``.

        Returns how many records were deleted.
        """
        async with self._write_lock:
            rows = await self._read_connection().execute_fetchall(
                "SELECT topic, partition, MIN(next_offset) FROM group_offsets GROUP BY topic, partition"
            )
            slowest_group = {(topic, p): offset for topic, p, offset in rows}
            new_starts: dict[tuple[str, int], int] = {}
            for topic, partitions in self._topics.items():
                for p, part in enumerate(partitions):
                    cut = part.log_end - self.retain_per_partition
                    cut = min(cut, slowest_group.get((topic, p), cut))
                    if cut > part.log_start:
                        new_starts[(topic, p)] = cut
            if not new_starts:
                return 0
            await self._transaction(
                [
                    (
                        "DELETE FROM records WHERE topic = ? AND partition = ? AND log_offset < ?",
                        [(topic, p, cut) for (topic, p), cut in new_starts.items()],
                    ),
                    (
                        "UPDATE partitions SET log_start = ? WHERE topic = ? AND partition = ?",
                        [(cut, topic, p) for (topic, p), cut in new_starts.items()],
                    ),
                ]
            )
            deleted = 0
            for (topic, p), cut in new_starts.items():
                part = self._topics[topic][p]
                deleted += cut - part.log_start
                part.log_start = cut
            return deleted


class EmbeddedLogConsumer:
    """The one member of ``group`` on ``topic``; it owns every partition."""

    def __init__(self, log: EmbeddedEventLog, topic: str, group: str) -> None:
        self._log = log
        self.topic = topic
        self.group = group
        self._positions: list[int] | None = None
        self._session = 0
        self._first_partition = 0

    async def start(self) -> None:
        if self._positions is None:
            self._positions = await self._log._join(self.group, self.topic)
            self._session = self._log.session

    def assignment(self) -> frozenset[int]:
        return frozenset(range(len(self._positions))) if self._positions is not None else frozenset()

    async def poll(self, max_records: int, timeout: float) -> list[Record]:
        positions = self._joined_positions()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            records = await self._log._read(self.topic, positions, max_records, self._first_partition)
            if records:
                # Start the next poll at another partition so a busy one cannot starve the rest.
                self._first_partition = (self._first_partition + 1) % len(positions)
                for record in records:
                    positions[record.partition] = record.offset + 1
                return records
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            # No await between this check and the wait: a publish cannot slip in unnoticed.
            event = self._log._new_records_event(self.topic)
            if self._log._has_unread(self.topic, positions):
                continue
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                return []
            positions = self._joined_positions()  # raises if the consumer or log was closed

    async def commit(self, records: Sequence[Record]) -> None:
        self._joined_positions()
        next_offsets: dict[int, int] = {}
        for record in records:
            if record.topic != self.topic:
                raise ValueError(f"record of topic {record.topic!r} committed on {self.topic!r}")
            next_offsets[record.partition] = max(next_offsets.get(record.partition, 0), record.offset + 1)
        if next_offsets:
            await self._log._commit_offsets(self.group, self.topic, next_offsets)

    async def close(self) -> None:
        # Like Kafka with auto-commit off: closing commits nothing, the next member re-reads.
        if self._positions is not None:
            self._positions = None
            if self._session == self._log.session:
                self._log._leave(self.group, self.topic)

    def _joined_positions(self) -> list[int]:
        if self._positions is None:
            raise RuntimeError(f"consumer of group {self.group!r} is not started (or was closed)")
        if self._log._writer is None or self._session != self._log.session:
            raise EventLogClosedError("the embedded event log was closed since this consumer started")
        return self._positions


# The port is a Protocol: make mypy check that the adapter satisfies it.
_check_log: type[EventLog] = EmbeddedEventLog
_check_consumer: type[LogConsumer] = EmbeddedLogConsumer
