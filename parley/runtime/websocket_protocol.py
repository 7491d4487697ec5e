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
from websockets.protocol import State

BATCH_SEND_EXTENSION = "parley.batch_send"
BATCH_TEXTS_KEY = "parley.texts"


class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
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
