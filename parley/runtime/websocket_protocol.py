"""uvicorn's WebSocket protocol plus one thing: several text frames in one socket write.

Why: a realtime node pushes every event to every member's socket, and each socket write is a
system call through the TCP stack — on loopback that includes the receiver's side too; it was
the largest cost of a busy node. Under load a socket's send queue holds several events at once,
and writing them with one ``transport.write`` costs one call instead of one per frame. The
frames on the wire are unchanged (one WebSocket frame per event).

The app uses it through an ASGI message with an extra key,
``{"type": "websocket.send", "text": <first>, "parley.texts": [<first>, <second>, ...]}``, and
only when the connection's scope advertises the ``parley.batch_send`` extension; under any
other server (or a test client) it sends frame by frame. It relies on uvicorn's
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
            scope["extensions"][BATCH_SEND_EXTENSION] = {}

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

    def _open_for_frames(self) -> bool:
        return self.handshake_complete and not self.close_sent and self.initial_response is None
