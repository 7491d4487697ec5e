"""The event log port: a partitioned, durable, ordered log with consumer groups (Kafka's model).

Guarantees every adapter gives:
- ``publish`` returns only once every record is durable in the log;
- records with the same key land in the same partition and are read in the order published;
- a consumer group reads each partition from its last committed offset, so a record that was
  polled but not committed is delivered again (at-least-once; consumers must be idempotent);
- a failed ``publish`` does not make later ones fail: once it has raised, publishing again (the
  same records or others) succeeds as soon as the log itself is reachable, and what it writes
  comes after anything the failed call may have written. The relay relies on this: after a
  failure it publishes the same outbox rows again, and that retry must get through. The Kafka
  adapter keeps it by replacing its idempotent producer after a failed batch (a batch numbered
  but never written would otherwise make the broker refuse every later one of its partition);
  the embedded log keeps no such state: a failed write rolls back before anything is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())


class LogConsumer(Protocol):
    async def start(self) -> None: ...

    async def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to ``max_records`` records from the partitions this member owns; ``[]`` on timeout."""
        ...

    async def commit(self, records: Sequence[Record]) -> None:
        """Mark everything up to and including these records as processed for the group."""
        ...

    def assignment(self) -> frozenset[int]:
        """The partitions this member currently owns (empty until the group gave it any)."""
        ...

    async def close(self) -> None: ...


class EventLog(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the log cannot be reached."""
        ...

    async def ensure_topic(self, topic: str, partitions: int) -> None: ...

    async def publish(self, topic: str, records: Sequence[OutgoingRecord]) -> None: ...

    def consumer(self, topic: str, group: str, *, fetch_wait: float = 0.0) -> LogConsumer:
        """A member of ``group`` on ``topic``. ``fetch_wait``: how long the log may hold a
        fetch to answer with more records at once (fewer, larger requests for a consumer that
        can wait); 0 answers as soon as anything is there."""
        ...
