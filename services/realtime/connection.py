"""One client socket: its bounded send queue and, per conversation, the seq it has been sent.

Why per-connection sequencing: pub/sub is at-most-once and the event log at-least-once, so a
node may see an event twice, late, or not at all. Each connection therefore delivers a
conversation's events strictly in ``seq`` order: duplicates (seq already sent) are dropped,
and a gap (seq jumps ahead) is filled from the store's event stream before the newer event
goes out. The client sees every event once, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from starlette.websockets import WebSocket

from parley.domain.models import User
from parley.runtime import metrics
from parley.runtime.websocket_protocol import BATCH_SEND_EXTENSION, BATCH_TEXTS_KEY

log = logging.getLogger(__name__)

# Close codes (RFC 6455 + private range), documented in docs/protocol.md.
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN = 1013
CLOSE_SLOW_CONSUMER = 4008


@dataclass(frozen=True, slots=True)
class Gap:
    """The missing events of a conversation, in order; or, when the stored stream no longer
    reaches that far back, ``resync_to``: the client refetches history and the stream carries on
    from that seq."""

    events: list[tuple[int, str]]
    resync_to: int | None


# (user, conversation id, seq after which events are missing) → the gap's events.
GapFiller = Callable[[User, int, int], Awaitable[Gap]]


@dataclass
class Stream:
    """Delivery state of one conversation for one connection."""

    last_seq: int
    filling: bool = False
    pending: dict[int, str] = field(default_factory=dict)
    # A resume that came while a fill was in flight: the fill starts over from here.
    rewind_to: int | None = None


class WriteRound:
    """The sockets with frames waiting, written together at the end of the loop iteration.

    One callback per iteration for the whole node, not one per socket: an event fanned out to
    a thousand sockets used to schedule a thousand callbacks; and the delivery counters move
    once per round, not once per socket (each ``inc`` takes a lock).

    A busy node defers: when the last round took longer than ``BUSY_SECONDS`` (a socket write
    is a system call that, on loopback, also does the receiver's side: ~10 µs), the next round
    waits as long as the last one took, up to ``max_defer`` seconds. Writing then takes at most
    about half of the loop, the stages upstream (reading sends, commits, the relay, consumers)
    keep pace, and the events that arrive meanwhile go out together: one socket write carries
    several frames. An idle node's rounds take microseconds and never wait. A reply to the
    client's own frame (ack, error, pong) does not wait either (``hurry``): the client is
    waiting for it, and a sender that gets its acks later sends less."""

    BUSY_SECONDS = 0.001

    def __init__(self, max_defer: float = 0.0) -> None:
        self._due: list[ClientConnection] = []
        self._max_defer = max_defer
        self._last_cost = 0.0
        self._last_end = 0.0
        self._waiting = False  # the next round is scheduled after a wait

    def add(self, conn: ClientConnection) -> None:
        if not self._due:
            loop = asyncio.get_running_loop()
            wait = min(self._last_cost, self._max_defer)
            # After a pause (no round for as long as the longest wait) the node is no longer busy.
            recent = time.perf_counter() - self._last_end < self._max_defer
            self._waiting = self._last_cost > self.BUSY_SECONDS and recent
            if self._waiting:
                loop.call_later(wait, self._write)
            else:
                loop.call_soon(self._write)
        self._due.append(conn)

    def hurry(self, conn: ClientConnection) -> None:
        """Write this socket at the end of the iteration even if the round waits."""
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._write_one, conn)

    def _write_one(self, conn: ClientConnection) -> None:
        if frames := conn.flush():  # it stays due: the round finds nothing more, or what came since
            metrics.DELIVERED.inc(frames)
            metrics.SOCKET_WRITES.inc()

    def _write(self) -> None:
        self._waiting = False
        started = time.perf_counter()
        try:
            self._write_due()
        finally:
            self._last_end = time.perf_counter()
            self._last_cost = self._last_end - started

    def _write_due(self) -> None:
        due, self._due = self._due, []
        frames = writes = 0
        for conn in due:
            written = conn.flush()
            if written:
                frames += written
                writes += 1
        if writes:
            metrics.DELIVERED.inc(frames)
            metrics.SOCKET_WRITES.inc(writes)


class ClientConnection:
    def __init__(
        self,
        websocket: WebSocket,
        user: User,
        *,
        queue_size: int,
        fill_gap: GapFiller,
        write_round: WriteRound | None = None,
    ) -> None:
        self.ws = websocket
        self.user = user
        self.streams: dict[int, Stream] = {}
        self._fill_gap = fill_gap
        self._closed = False
        self.reader: asyncio.Task[None] | None = None
        self.request_id = ""
        self.frames_seen = 0
        self.close_code: int | None = None
        # While registering: conversation id -> seq of the latest join/leave of this user seen live.
        self.membership_changes: dict[int, int] | None = None
        # Events that arrive while the socket is being registered wait for the hello frame:
        # a client can count on hello being the first frame.
        self._before_hello: list[str] | None = []
        # Outbound frames not yet written, at most queue_size of them (see send_text).
        self._outbox: list[str] = []
        self._queue_size = queue_size
        self._flush_scheduled = False
        self._write_round = write_round or WriteRound()
        self._drainer: asyncio.Task[None] | None = None
        batch_send = websocket.scope.get("extensions", {}).get(BATCH_SEND_EXTENSION)
        self._write_now: Callable[[list[str]], bool] | None = (
            batch_send.get("write_now") if batch_send else None
        )
        self._batched = batch_send is not None

    # -- outbound ------------------------------------------------------------------------
    # Frames wait in ``_outbox`` until the end of the current loop iteration, then go out in one
    # socket write (``flush``, called by the node's ``WriteRound``): everything an iteration
    # produced for this socket (say, a burst of events) costs one write and no task switch. Only
    # a peer that stops taking data gets a task (``_drain``), which waits for it; while it
    # waits, frames pile up in the outbox, and past ``queue_size`` the socket is closed as a slow
    # consumer.

    def send_frame(self, frame: dict[str, object]) -> None:
        """A frame of the connection's own (a reply: ack, error, pong; hello; resync): written at
        the end of the iteration even when a busy node's write round waits."""
        self.send_text(orjson.dumps(frame).decode())
        if self._flush_scheduled:
            self._write_round.hurry(self)

    def send_hello(self, hello: dict[str, object]) -> None:
        held, self._before_hello = self._before_hello or [], None
        self.send_frame(hello)
        for text in held:
            self.send_text(text)

    def send_text(self, text: str) -> None:
        if self._closed:
            return
        if self._before_hello is not None:
            self._before_hello.append(text)
            return
        if len(self._outbox) >= self._queue_size:
            # A client that stops reading must not hold memory or slow the node: drop it; it
            # reconnects and resumes from its last seq.
            metrics.SLOW_CLOSES.inc()
            log.info("closing slow consumer user=%s", self.user.id)
            self._closed = True
            asyncio.get_running_loop().create_task(
                self._close_now(CLOSE_SLOW_CONSUMER, "send queue overflow: reconnect and resume")
            )
            return
        self._outbox.append(text)
        if not self._flush_scheduled and self._drainer is None:
            self._flush_scheduled = True
            self._write_round.add(self)

    def flush(self) -> int:
        """Write what waits, now if the peer takes it (returns the frames written), else
        leave it to a task that waits for the peer (returns 0)."""
        self._flush_scheduled = False
        if self._closed or not self._outbox or self._drainer is not None:
            return 0
        if self._write_now is not None:
            try:
                written = self._write_now(self._outbox)
            except Exception:
                self._closed = True  # the socket is gone; the reader loop notices and cleans up
                return 0
            if written:
                frames = len(self._outbox)
                self._outbox = []
                return frames
        # The peer is not taking data (or no fast path under this server): wait for it.
        self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return 0

    async def _drain(self) -> None:
        try:
            while self._outbox and not self._closed:
                texts, self._outbox = self._outbox, []
                if len(texts) > 1 and self._batched:
                    await self.ws.send({"type": "websocket.send", "text": texts[0], BATCH_TEXTS_KEY: texts})
                else:
                    for text in texts:
                        await self.ws.send_text(text)
                self._count_written(len(texts))
        except Exception:
            self._closed = True
        finally:
            self._drainer = None

    @staticmethod
    def _count_written(frames: int) -> None:
        metrics.DELIVERED.inc(frames)
        metrics.SOCKET_WRITES.inc()

    async def close(self, code: int, reason: str) -> None:
        if self._closed and self.close_code is not None:
            return
        self._closed = True
        await self._close_now(code, reason)

    async def _close_now(self, code: int, reason: str) -> None:
        self.close_code = code
        if self._drainer is not None:
            self._drainer.cancel()
        try:
            # A peer that stopped reading cannot take the close frame either: don't wait long.
            await asyncio.wait_for(self.ws.close(code=code, reason=reason[:120]), timeout=1.0)
        except Exception:
            log.debug("close failed", exc_info=True)
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()

    async def drain_and_stop(self) -> None:
        """Write what is waiting (before a graceful close), for up to 2 s."""
        if frames := self.flush():
            self._count_written(frames)
        if self._drainer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._drainer), timeout=2)
            except TimeoutError:
                self._drainer.cancel()

    # -- conversation streams ------------------------------------------------------------
    def follow(self, conversation_id: int, last_seq: int) -> None:
        if conversation_id not in self.streams:
            self.streams[conversation_id] = Stream(last_seq)

    def unfollow(self, conversation_id: int) -> None:
        self.streams.pop(conversation_id, None)

    def leave(self, conversation_id: int, seq: int, text: str) -> None:
        """The user left: tell this socket (even while a fill is in flight, which stops: the
        store no longer lets this user read the conversation), then stop following it."""
        stream = self.streams.pop(conversation_id, None)
        if stream is not None and seq > stream.last_seq:
            stream.pending.clear()
            self.send_text(text)

    def offer(self, conversation_id: int, seq: int, text: str) -> None:
        """Deliver a persisted event of a followed conversation, in seq order, once."""
        stream = self.streams.get(conversation_id)
        if stream is None or seq <= stream.last_seq:
            return
        if stream.filling or seq > stream.last_seq + 1:
            stream.pending[seq] = text
            if not stream.filling:
                stream.filling = True
                asyncio.get_running_loop().create_task(self._fill(conversation_id, stream))
            return
        stream.last_seq = seq
        self.send_text(text)

    def catch_up(self, conversation_id: int) -> None:
        """The store is ahead of what this socket was sent (a pub/sub message was lost at the
        tail of a conversation, where no later event would reveal the gap): fill it now."""
        stream = self.streams.get(conversation_id)
        if stream is None or stream.filling:
            return
        stream.filling = True
        asyncio.get_running_loop().create_task(self._fill(conversation_id, stream))

    def rewind(self, conversation_id: int, last_seq: int) -> None:
        """The client (resuming) has seen only up to ``last_seq``: replay from there."""
        stream = self.streams.get(conversation_id)
        if stream is None or last_seq >= stream.last_seq:
            return
        if stream.filling:  # the fill in flight starts over from the cursor
            stream.rewind_to = min(last_seq, stream.rewind_to if stream.rewind_to is not None else last_seq)
            return
        stream.last_seq = last_seq
        stream.filling = True
        asyncio.get_running_loop().create_task(self._fill(conversation_id, stream))

    async def _fill(self, conversation_id: int, stream: Stream) -> None:
        metrics.GAP_FILLS.inc()
        try:
            for attempt in range(40):
                gap = await self._fill_gap(self.user, conversation_id, stream.last_seq)
                if self.streams.get(conversation_id) is not stream:
                    return  # unfollowed (left, maybe rejoined) meanwhile: this stream is over
                if stream.rewind_to is not None:
                    stream.last_seq, stream.rewind_to = stream.rewind_to, None
                    continue  # resumed from further back meanwhile: read again from there
                missing = gap.events
                if gap.resync_to is not None or attempt == 39:
                    self.send_frame({"type": "resync", "conversation_id": str(conversation_id)})
                    # The refetched history covers everything up to now: carry on from there.
                    target = gap.resync_to if gap.resync_to is not None else max(stream.pending, default=0)
                    stream.last_seq = max(stream.last_seq, target)
                    missing = []
                for seq, text in missing:
                    if seq == stream.last_seq + 1:
                        stream.last_seq = seq
                        self.send_text(text)
                        stream.pending.pop(seq, None)
                while stream.last_seq + 1 in stream.pending:
                    stream.last_seq += 1
                    self.send_text(stream.pending.pop(stream.last_seq))
                for seq in [s for s in stream.pending if s <= stream.last_seq]:
                    stream.pending.pop(seq)
                if not stream.pending:
                    return
                # Still a hole below the pending events: the store may not show the commit yet.
                await asyncio.sleep(0.05)
        except Exception:
            log.exception("gap fill failed for conversation %s", conversation_id)
        finally:
            stream.filling = False
            # A resume that came as the fill ended (its last wait, a failure) is still owed.
            owed, stream.rewind_to = stream.rewind_to, None
            if owed is not None and self.streams.get(conversation_id) is stream:
                self.rewind(conversation_id, owed)
