"""The harness's WebSocket client: frames are read where they land, with no task per frame.

Why not ``websockets``' asyncio client, as before: it wakes a reader task for every frame (the
parser generator, a Frame object, a queue, ``recv()``), about 7 µs of the harness's CPU per
frame. The harness shares the machine's two cores with the server and reads ~100,000 frames/s
at saturation, so that cost was CPU taken from the server and delay added to every latency it
measured. Here a socket is an ``asyncio.Protocol``: each TCP read is cut into frames in one loop
and every text frame is handed to a plain callback with its arrival time.

What it speaks (RFC 6455, client side): the upgrade handshake (the server's
``Sec-WebSocket-Accept`` checked), masked text frames out, unmasked frames in (continuations
joined), ping answered with pong, close answered and the transport closed; permessage-deflate
(RFC 7692) when asked for, inflating the server's compressed messages (the client's own frames
go out uncompressed, which the extension allows).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import os
import struct
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFLATE_TAIL = b"\x00\x00\xff\xff"
# (text, arrival time in perf_counter_ns)
TextHandler = Callable[[str, int], None]


class HandshakeFailed(Exception):
    pass


class Closed(Exception):
    """The socket is closed (by either side); ``code`` is the peer's close code, if any."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"socket closed (code {code})")
        self.code = code


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set, masked, as clients must send)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    # XOR the payload with the repeated mask in one big-integer operation (no per-byte loop).
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
    return header + mask + masked


class WireSocket(asyncio.Protocol):
    """One client socket. Text frames go to the handler set by ``set_handler`` (frames that
    arrive before there is one are kept, in order, and handed over when it is set) or, without
    a handler, wait for ``recv()``."""

    def __init__(self, key: bytes, *, compression: bool) -> None:
        self._key = key
        self._compression_asked = compression
        self._inflater: zlib._Decompress | None = None
        self._inflate_each_message = False  # server_no_context_takeover
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._open = False
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._handler: TextHandler | None = None
        self._waiting: collections.deque[tuple[str, int]] = collections.deque()
        self._frame_ready: asyncio.Event = asyncio.Event()
        self._fragments: list[bytes] = []
        self._fragment_compressed = False
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        self._buffer += data
        if not self._open and not self._read_handshake():
            return
        self._read_frames(now)

    def connection_lost(self, exc: Exception | None) -> None:
        self._open = False
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeFailed(f"connection lost during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        self._frame_ready.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- handshake ------------------------------------------------------------------------
    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self._key + GUID).digest()).decode()
        if not head[0].startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != expected:
            self.handshake.set_exception(HandshakeFailed(f"refused: {head[0]!r}"))
            self._abort()
            return False
        extensions = headers.get("sec-websocket-extensions", "")
        if "permessage-deflate" in extensions:
            self._inflate_each_message = "server_no_context_takeover" in extensions
            self._inflater = zlib.decompressobj(wbits=-15)
        self._open = True
        self.handshake.set_result(None)
        return True

    # -- frames in ------------------------------------------------------------------------
    def _read_frames(self, now: int) -> None:
        buf = self._buffer
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if b1 & 0x80:
                self._fail(1002, "the server masked a frame")
                return
            end = start + length
            if end > size:
                break
            payload = bytes(buf[start:end])
            pos = end
            self._frame(b0, payload, now)
            if not self._open:
                return
        del buf[:pos]

    def _frame(self, b0: int, payload: bytes, now: int) -> None:
        opcode, fin, rsv1 = b0 & 0x0F, b0 & 0x80, b0 & 0x40
        if opcode in (OP_TEXT, OP_BINARY):
            if fin:
                self._message(opcode, payload, bool(rsv1), now)
            else:
                self._fragments, self._fragment_compressed = [payload], bool(rsv1)
        elif opcode == OP_CONTINUATION:
            self._fragments.append(payload)
            if fin:
                whole, self._fragments = b"".join(self._fragments), []
                self._message(OP_TEXT, whole, self._fragment_compressed, now)
        elif opcode == OP_PING:
            self._write(masked_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            self._write(masked_frame(OP_CLOSE, payload[:2]))
            self._finish(code)

    def _message(self, opcode: int, payload: bytes, compressed: bool, now: int) -> None:
        if compressed:
            if self._inflater is None:
                self._fail(1002, "a compressed frame without permessage-deflate")
                return
            payload = self._inflater.decompress(payload + DEFLATE_TAIL)
            if self._inflate_each_message:
                self._inflater = zlib.decompressobj(wbits=-15)
        if opcode != OP_TEXT:
            return  # Parley speaks text frames only
        text = payload.decode()
        if self._handler is not None:
            self._handler(text, now)
        else:
            self._waiting.append((text, now))
            self._frame_ready.set()

    # -- the caller's side ------------------------------------------------------------------
    def set_handler(self, handler: TextHandler) -> None:
        """Every text frame from now on (and those waiting) goes to ``handler``."""
        self._handler = handler
        while self._waiting:
            handler(*self._waiting.popleft())

    async def recv(self, timeout: float = 30.0) -> str:
        """The next text frame (for a socket without a handler)."""
        deadline = time.monotonic() + timeout
        while not self._waiting:
            if self.closed.done():
                raise Closed(self.closed.result())
            self._frame_ready.clear()
            await asyncio.wait_for(self._frame_ready.wait(), max(0.0, deadline - time.monotonic()))
        return self._waiting.popleft()[0]

    async def send(self, text: str) -> None:
        if not self._open:
            raise Closed(self.closed.result() if self.closed.done() else None)
        self._write(masked_frame(OP_TEXT, text.encode()))
        if not self._writable.is_set():
            await self._writable.wait()  # the server's flow control, like any client

    async def close(self, code: int = 1000) -> None:
        if self._open:
            self._write(masked_frame(OP_CLOSE, struct.pack("!H", code)))
            self._open = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), 5)
        self._abort()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _fail(self, code: int, reason: str) -> None:
        self._write(masked_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:100]))
        self._finish(None)

    def _finish(self, code: int | None) -> None:
        self._open = False
        if not self.closed.done():
            self.closed.set_result(code)
        self._frame_ready.set()
        self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def connect(url: str, *, compression: bool = False, timeout: float = 30.0) -> WireSocket:
    """Open ``url`` (``ws://host:port/path?query``) and complete the handshake."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"only ws:// URLs are supported, got {url!r}")
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    key = base64.b64encode(os.urandom(16))
    loop = asyncio.get_running_loop()
    transport, socket = await asyncio.wait_for(
        loop.create_connection(lambda: WireSocket(key, compression=compression), parts.hostname, port),
        timeout,
    )
    request = [
        f"GET {target} HTTP/1.1",
        f"Host: {parts.hostname}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if compression:
        request.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    transport.write(("\r\n".join(request) + "\r\n\r\n").encode())
    try:
        await asyncio.wait_for(asyncio.shield(socket.handshake), timeout)
    except BaseException:
        transport.close()
        raise
    return socket
