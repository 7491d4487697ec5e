"""Committed outbox rows, told to the relay over pub/sub so it need not read them back.

Each writing process (api, realtime, slack nodes) hears its store's commits (``Store.on_commit``)
and publishes their outbox rows on ``RELAY_WAKEUP_CHANNEL``; the active relay publishes them
to the event log from there (``OutboxRelay``), saving the outbox read — a MySQL round trip on
every message's way from the commit to the sockets.

Why this cannot lose or reorder anything: an announcement is only a hint. The outbox table stays
the record: the relay publishes an announced row only when it is the next seq of its
conversation after what the relay itself published, and reads the table whenever one is not (a
gap: another node's commit announced later than a newer one, a lost announcement) — and, as a
safety net, on a timer. Pub/sub is at-most-once; a dropped announcement delays its row until
the next table read, no more.

The wire format is msgpack: ``[[conversation_id, seq, payload, request_id, created_at_epoch],
…]`` (payloads are the events' JSON bytes, carried as they are). A bare ``b"1"`` (or anything
that does not decode) is a plain wake-up: read the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import msgpack

from parley.ports.pubsub import RELAY_WAKEUP_CHANNEL, PubSub
from parley.ports.store import CommittedEvent

log = logging.getLogger(__name__)
PLAIN_WAKEUP = b"1"
# Rows held for one announcement at most: past it they are dropped (the relay finds them in the
# table, told by the gap or by a plain wake-up), so a process that commits without announcing
# cannot grow without bound.
MAX_HELD_ROWS = 10_000


def encode(rows: Sequence[CommittedEvent]) -> bytes:
    packed: bytes = msgpack.packb(
        [[r.conversation_id, r.seq, r.payload, r.request_id, r.created_at.timestamp()] for r in rows],
        use_bin_type=True,
    )
    return packed


def decode(message: bytes) -> list[CommittedEvent] | None:
    """The rows of an announcement; ``None`` for a plain wake-up or anything malformed."""
    if message == PLAIN_WAKEUP:
        return None
    try:
        items = msgpack.unpackb(message, raw=False)
        return [
            CommittedEvent(int(c), int(s), bytes(p), r, datetime.fromtimestamp(float(ts), UTC))
            for c, s, p, r, ts in items
        ]
    except Exception:  # a hint, not a record: the table read covers it
        log.warning("malformed relay announcement (%d bytes); reading the table instead", len(message))
        return None


class CommitAnnouncer:
    """Collects a process's committed outbox rows and publishes them, one publish in flight.

    One at a time keeps this process's announcements in commit order on the channel (two
    concurrent publishes may take two connections and arrive swapped, which the relay would
    read as a gap). Rows committed while a publish is on its way go out together in the next.
    Failures are logged and dropped: the relay's table reads are the safety net.
    """

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._rows: list[CommittedEvent] = []
        self._sending: asyncio.Task[None] | None = None

    def committed(self, rows: Sequence[CommittedEvent]) -> None:
        """``Store.on_commit`` listener: hold the rows for the next announcement."""
        self._rows.extend(rows)
        if len(self._rows) > MAX_HELD_ROWS:
            self._rows = []

    def announce(self) -> None:
        """Publish what was committed since the last announcement (a plain wake-up if nothing
        was collected); coalesced with a publish already under way."""
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while True:
                rows, self._rows = self._rows, []
                try:
                    await self._pubsub.publish(RELAY_WAKEUP_CHANNEL, encode(rows) if rows else PLAIN_WAKEUP)
                except Exception:  # the relay's table reads are the safety net
                    log.debug("relay announcement not sent", exc_info=True)
                if not self._rows:
                    return
        finally:
            self._sending = None
