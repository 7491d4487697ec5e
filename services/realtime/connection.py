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


class ClientConnection:
    def __init__(self, websocket: WebSocket, user: User, *, queue_size: int, fill_gap: GapFiller) -> None:
        self.ws = websocket
        self.user = user
        self.streams: dict[int, Stream] = {}
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_size)
        self._fill_gap = fill_gap
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.request_id = ""
        self.frames_seen = 0
        # Events that arrive while the socket is being registered wait for the hello frame:
        # a client can count on hello being the first frame.
        self._before_hello: list[str] | None = []
        self.close_code: int | None = None

    # -- outbound ------------------------------------------------------------------------
    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer:{self.user.id}")

    def send_frame(self, frame: dict[str, object]) -> None:
        self.send_text(orjson.dumps(frame).decode())

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
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            # A client that stops reading must not hold memory or slow the node: drop it; it
            # reconnects and resumes from its last seq.
            metrics.SLOW_CLOSES.inc()
            log.info("closing slow consumer user=%s", self.user.id)
            asyncio.get_running_loop().create_task(
                self.close(CLOSE_SLOW_CONSUMER, "send queue overflow: reconnect and resume")
            )

    async def _write_loop(self) -> None:
        batched = BATCH_SEND_EXTENSION in self.ws.scope.get("extensions", {})
        try:
            while True:
                texts = [await self._queue.get()]
                # Everything queued goes out in one socket write (see websocket_protocol.py).
                while batched and not self._queue.empty() and texts[-1] is not None:
                    texts.append(self._queue.get_nowait())
                stop = texts[-1] is None
                frames = [t for t in texts if t is not None]
                if len(frames) == 1:
                    await self.ws.send_text(frames[0])
                elif frames:
                    await self.ws.send({"type": "websocket.send", "text": frames[0], BATCH_TEXTS_KEY: frames})
                metrics.DELIVERED.inc(len(frames))
                metrics.SOCKET_WRITES.inc()
                if stop:
                    return
        except Exception:
            self._closed = True  # the socket is gone; the reader loop notices and cleans up

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        if self._writer:
            self._writer.cancel()
        try:
            # A peer that stopped reading cannot take the close frame either: don't wait long.
            await asyncio.wait_for(self.ws.close(code=code, reason=reason[:120]), timeout=1.0)
        except Exception:
            log.debug("close failed", exc_info=True)
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()

    async def drain_and_stop(self) -> None:
        """Flush what is queued (used before a graceful close)."""
        if self._writer and not self._writer.done():
            try:
                self._queue.put_nowait(None)
                await asyncio.wait_for(self._writer, timeout=2)
            except (asyncio.QueueFull, TimeoutError):
                self._writer.cancel()

    # -- conversation streams ------------------------------------------------------------
    def follow(self, conversation_id: int, last_seq: int) -> None:
        if conversation_id not in self.streams:
            self.streams[conversation_id] = Stream(last_seq)

    def unfollow(self, conversation_id: int) -> None:
        self.streams.pop(conversation_id, None)

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
        if stream is None or last_seq >= stream.last_seq or stream.filling:
            return
        stream.last_seq = last_seq
        stream.filling = True
        asyncio.get_running_loop().create_task(self._fill(conversation_id, stream))

    async def _fill(self, conversation_id: int, stream: Stream) -> None:
        metrics.GAP_FILLS.inc()
        try:
            for attempt in range(40):
                gap = await self._fill_gap(self.user, conversation_id, stream.last_seq)
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
