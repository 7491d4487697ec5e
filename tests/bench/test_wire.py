"""The harness's own WebSocket client (bench/wire.py): it must read what a real server sends
exactly as a library client would, or every benchmark figure built on it is wrong."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.clients import Account, open_socket, send_many
from bench.wire import GUID, WireSocket
from tests.support.server import start_server
from tests.support.world import make_world

KEY = base64.b64encode(b"0123456789abcdef")


class RecordingTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _handshake_response() -> bytes:
    accept = base64.b64encode(hashlib.sha1(KEY + GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: "
        + accept
        + b"\r\n\r\n"
    )


def _server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", first, len(payload)) + payload
    if len(payload) < 1 << 16:
        return struct.pack("!BBH", first, 126, len(payload)) + payload
    return struct.pack("!BBQ", first, 127, len(payload)) + payload


def _unmask(frame: bytes) -> tuple[int, bytes]:
    opcode, length = frame[0] & 0x0F, frame[1] & 0x7F
    assert frame[1] & 0x80, "a client frame must be masked"
    mask, payload = frame[2:6], frame[6 : 6 + length]
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _socket() -> tuple[WireSocket, RecordingTransport, list[str]]:
    socket = WireSocket(KEY, compression=False)
    transport = RecordingTransport()
    socket.connection_made(transport)  # type: ignore[arg-type]
    received: list[str] = []
    socket.set_handler(lambda text, _now: received.append(text))
    return socket, transport, received


async def test_frames_split_anywhere_across_reads_arrive_whole_and_in_order() -> None:
    socket, _, received = await _socket()
    texts = ["short", "m" * 300, "é" * 40_000]  # 7-bit, 16-bit and 64-bit length headers
    stream = _handshake_response() + b"".join(_server_frame(0x1, t.encode()) for t in texts)
    for i in range(0, len(stream), 7):  # every boundary, including inside headers
        socket.data_received(stream[i : i + 7])
    assert socket.handshake.done() and socket.handshake.exception() is None
    assert received == texts


async def test_fragments_are_joined_and_pings_answered_with_a_masked_pong() -> None:
    socket, transport, received = await _socket()
    socket.data_received(
        _handshake_response()
        + _server_frame(0x1, b"hel", fin=False)
        + _server_frame(0x9, b"are you there")  # a control frame may come between fragments
        + _server_frame(0x0, b"lo", fin=True)
    )
    assert received == ["hello"]
    assert _unmask(transport.written[-1]) == (0xA, b"are you there")


async def test_a_close_frame_is_answered_and_ends_the_socket() -> None:
    socket, transport, _ = await _socket()
    socket.data_received(_handshake_response() + _server_frame(0x8, struct.pack("!H", 1008) + b"policy"))
    assert await asyncio.wait_for(socket.closed, 1) == 1008
    assert _unmask(transport.written[-1]) == (0x8, struct.pack("!H", 1008))
    assert transport.closed


async def test_a_wrong_accept_key_fails_the_handshake() -> None:
    socket, transport, _ = await _socket()
    socket.data_received(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: forged\r\n\r\n")
    with pytest.raises(Exception, match="refused"):
        await socket.handshake
    assert transport.closed


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
async def test_against_parley_hello_first_then_every_message_in_order(
    tmp_path: Path, compression: bool
) -> None:
    server = await start_server(tmp_path, ws_compression=compression)
    try:
        world = await make_world(server.url)
        alice, bob = (Account(u.id, u.username, u.token) for u in world.users)
        sender = await open_socket(server.ws_url, alice, compression=compression)
        listener = await open_socket(server.ws_url, bob, compression=compression)
        created: list[dict[str, Any]] = []

        def on_text(text: str, _now: int) -> None:
            frame = orjson.loads(text)
            if frame["type"] == "message.created":
                created.append(frame["data"]["message"])

        listener.set_handler(on_text)
        texts = [f"wire {n} " + "é" * (n * 9_000) for n in range(4)]  # the last frame > 64 KiB
        await send_many([sender], world.channel_id, texts, tag="wire", window=2)
        for _ in range(200):
            if len(created) == len(texts):
                break
            await asyncio.sleep(0.02)
        assert [m["text"] for m in created] == texts
        assert [m["seq"] for m in created] == sorted(m["seq"] for m in created)
        await sender.close()
        await listener.close()
        assert listener.closed.done()
        await world.close()
    finally:
        await server.stop()
