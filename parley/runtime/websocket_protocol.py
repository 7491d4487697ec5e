"""uvicorn's WebSocket protocol plus one thing: several text frames in one socket write.

Why: a realtime node pushes every event to every member's socket, and each socket write is a
system call through the TCP stack — on loopback that includes the receiver's side too; it was
the largest cost of a busy node. Under load a socket's send queue holds several events at once,
and writing them with one ``transport.write`` costs one call instead of one per frame. The
frames on the wire are unchanged (one WebSocket frame per event).

The extension, advertised in the connection's scope as ``parley.batch_send``, offers two ways:
- ``scope["extensions"]["parley.batch_send"]["write_now"](texts) -> bool``: write now, from
  plain (non-async) code, unless the peer is not taking data (flow control): then it returns
  False and writes nothing. A realtime node fans an event out to thousands of sockets; doing it
  without a task switch per socket is most of its speed.
- an ASGI message with an extra key, ``{"type": "websocket.send", "text": <first>,
  "parley.texts": [<first>, <second>, ...]}``, which waits for the peer like any send.
Under any other server (or a test client) the app sends frame by frame. It relies on uvicorn's
``websockets-sansio`` protocol internals (``conn``, ``transport``, the handshake flags), which is
why uvicorn is pinned; ``tests/realtime/test_batched_writes.py`` checks the path is taken.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, State

BATCH_SEND_EXTENSION = "parley.batch_send"
BATCH_TEXTS_KEY = "parley.texts"


class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # asyncio.Queue and asyncio.Event allocate their deques up front (~760 B each, four of
        # them per socket); these hold only what one idle socket needs.
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = FlowEvent()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            # The app task was created but has not run yet: it sees the extension.
            scope["extensions"][BATCH_SEND_EXTENSION] = {"write_now": self.write_now}

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.accept":
            await super().send(message)
            # The handshake's request and response (headers) are not needed again; a realtime
            # node holds thousands of idle sockets, so each one keeps as little as it can.
            self.request = self.response = None  # type: ignore[assignment]
            self._release_handshake_parser()
            return
        texts = cast(dict[str, Any], message).get(BATCH_TEXTS_KEY)
        if texts is None or message["type"] != "websocket.send" or not self._open_for_frames():
            await super().send(message)
            return
        await self.writable.wait()  # the peer's flow control, as for a single frame
        if self.disconnected:
            raise ClientDisconnected()
        try:
            for text in texts:
                self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
        except InvalidState as exc:
            raise ClientDisconnected() from exc

    def handle_parser_exception(self) -> None:
        """A frame broke the rules (too big, say): the close frame with its code (1009) goes
        out and the socket is half-closed, but not closed while the peer may still be sending
        the rejected frame: uvicorn closes it at once, and closing a socket with unread data
        resets the connection, which can destroy the close frame before the peer reads it."""
        if self.close_sent:
            return  # websockets now discards what the peer sends until it closes
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        # Half-close: the peer reads the close frame, then EOF, and is done; what it still sends
        # is read and discarded (no reset) until it closes its side or the timer fires.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.close_sent = True
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def write_now(self, texts: list[str]) -> bool:
        """Write ``texts`` as frames in one socket write if the peer is taking data; False (and
        nothing written) when flow control says wait. Raises ``ClientDisconnected`` when the
        connection is gone or closing."""
        if self.disconnected or not self._open_for_frames():
            raise ClientDisconnected()
        if not self.writable.is_set():
            return False
        if not self.conn.extensions and self.conn.state is State.OPEN:
            # Without compression a server frame is the same bytes for every socket: encode
            # each event once per node (a fan-out sends one text to thousands of sockets).
            self.transport.write(b"".join([text_frame(text) for text in texts]))
            return True
        try:
            for text in texts:
                self.conn.send_text(text.encode())
        except InvalidState as exc:
            raise ClientDisconnected() from exc
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def _open_for_frames(self) -> bool:
        return self.handshake_complete and not self.close_sent and self.initial_response is None

    def _release_handshake_parser(self) -> None:
        """websockets' server parser is one generator for the handshake and then the frames, so
        its frame holds the parsed request (every header) as long as the socket lives. Once the
        101 is out and no byte of a frame has arrived (a client sends frames only after reading
        the 101), a plain frame parser takes over with nothing to carry."""
        if self.conn.state is State.OPEN and not self.conn.reader.buffer:
            self.conn.parser = Protocol.parse(self.conn)
            next(self.conn.parser)


class ReceiveQueue:
    """The part of ``asyncio.Queue`` uvicorn uses for a socket's incoming ASGI messages, with a
    single consumer (the app's ``receive``), and nothing allocated while it is empty."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class FlowEvent:
    """``asyncio.Event`` (set, clear, is_set, wait) without a deque per instance: the peer's
    flow-control flag, which an idle socket never waits on."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


@functools.lru_cache(maxsize=4096)
def text_frame(text: str) -> bytes:
    """A complete unmasked, uncompressed text frame (what a server sends) carrying ``text``;
    the same text object, fanned out, is encoded once."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


WebSocketHandler = Callable[[WebSocket], Awaitable[None]]


class WebSocketFastLane:
    """Serves the WebSocket paths in ``lanes`` (path → handler) ahead of the app's middleware.

    Why: a socket's ASGI task lives as long as the socket, and through the full stack (error
    and exception middleware, request ids, rate limits, FastAPI's dependency machinery) it holds
    a dozen coroutine frames and their state for nothing: those layers act on HTTP requests.
    The handler gets a plain Starlette ``WebSocket`` whose ``app`` is the FastAPI app (for
    ``app.state``); everything else goes to the app as usual.
    """

    def __init__(self, app: ASGIApp, lanes: Mapping[str, WebSocketHandler]) -> None:
        self.app = app
        self.lanes = dict(lanes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.lanes.get(scope["path"]) if scope["type"] == "websocket" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        await handler(WebSocket(scope, receive, send))
