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

from typing import Any, cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

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

    def write_now(self, texts: list[str]) -> bool:
        """Write ``texts`` as frames in one socket write if the peer is taking data; False (and
        nothing written) when flow control says wait. Raises ``ClientDisconnected`` when the
        connection is gone or closing."""
        if self.disconnected or not self._open_for_frames():
            raise ClientDisconnected()
        if not self.writable.is_set():
            return False
        try:
            for text in texts:
                self.conn.send_text(text.encode())
        except InvalidState as exc:
            raise ClientDisconnected() from exc
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def _open_for_frames(self) -> bool:
        return self.handshake_complete and not self.close_sent and self.initial_response is None
