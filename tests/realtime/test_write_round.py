"""The realtime node's write round (services/realtime/connection.py): an idle node writes a
socket's frames at the end of the loop iteration; a busy one (the last round took over 1 ms)
waits as long as that round took, capped, so that frames arriving meanwhile share one write."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from parley.domain.models import User
from services.realtime.connection import ClientConnection, Gap, WriteRound


class Socket:
    """Stands in for a ``ClientConnection``: what the round asks of it is ``flush()``, which
    writes everything queued for the socket in one write (here: records it)."""

    def __init__(self, write_seconds: float = 0.0) -> None:
        self.queued: list[str] = []
        self.writes: list[list[str]] = []
        self.write_seconds = write_seconds  # a slow write makes the round look busy
        self.written = asyncio.Event()

    def send(self, round_: WriteRound, text: str) -> None:
        if not self.queued:
            round_.add(cast(ClientConnection, self))
        self.queued.append(text)

    def flush(self) -> int:
        if self.write_seconds:
            time.sleep(self.write_seconds)
        frames, self.queued = self.queued, []
        self.writes.append(frames)
        self.written.set()
        return len(frames)


async def _busy_round(round_: WriteRound, seconds: float) -> None:
    slow = Socket(write_seconds=seconds)
    slow.send(round_, "busy")
    await asyncio.sleep(0)
    assert slow.writes == [["busy"]]


async def test_an_idle_node_writes_at_the_end_of_the_iteration() -> None:
    round_ = WriteRound(max_defer=0.010)
    socket = Socket()
    socket.send(round_, "a")
    socket.send(round_, "b")
    await asyncio.sleep(0)
    assert socket.writes == [["a", "b"]]


async def test_a_busy_node_waits_and_frames_arriving_meanwhile_share_one_write() -> None:
    round_ = WriteRound(max_defer=0.050)
    await _busy_round(round_, 0.005)
    socket = Socket()
    socket.send(round_, "a")
    await asyncio.sleep(0)
    assert socket.writes == [], "a busy node should not write at once"
    await asyncio.sleep(0.001)
    socket.send(round_, "b")
    await asyncio.wait_for(socket.written.wait(), timeout=1)
    assert socket.writes == [["a", "b"]]


async def test_the_wait_is_capped_by_the_setting() -> None:
    round_ = WriteRound(max_defer=0.003)
    await _busy_round(round_, 0.100)  # a 100 ms round, but the node waits at most 3 ms
    socket = Socket()
    started = time.perf_counter()
    socket.send(round_, "a")
    await asyncio.wait_for(socket.written.wait(), timeout=1)
    assert time.perf_counter() - started < 0.050


@pytest.mark.parametrize(
    ("max_defer", "pause"),
    [(0.010, 0.020), (0.0, 0.0)],
    ids=["after a pause longer than the longest wait, idle again", "never waits when turned off"],
)
async def test_a_busy_round_without_a_wait(max_defer: float, pause: float) -> None:
    round_ = WriteRound(max_defer=max_defer)
    await _busy_round(round_, 0.005)
    await asyncio.sleep(pause)
    socket = Socket()
    socket.send(round_, "a")
    await asyncio.sleep(0)
    assert socket.writes == [["a"]]


class FakeWebSocket:
    """What a ``ClientConnection`` writes through when the server offers no batched writes."""

    scope: dict[str, object] = {}

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)


async def _no_gap(user: User, conversation_id: int, after_seq: int) -> Gap:
    return Gap([], resync_to=None)


async def _iterations(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_reply_does_not_wait_and_takes_what_waits_for_its_socket_along() -> None:
    round_ = WriteRound(max_defer=0.050)
    await _busy_round(round_, 0.060)  # the next round waits 50 ms
    ws = FakeWebSocket()
    conn = ClientConnection(
        ws,  # type: ignore[arg-type]
        cast(User, None),
        queue_size=100,
        fill_gap=_no_gap,
        write_round=round_,
    )
    conn.send_hello({"type": "hello"})
    await _iterations(3)
    assert ws.sent == ['{"type":"hello"}'], "the hello is the connection's own frame: not held"
    conn.send_text('{"type":"message.created"}')
    await _iterations(3)
    assert ws.sent == ['{"type":"hello"}'], "an event waits for the round"
    conn.send_frame({"type": "ack", "id": "1"})
    await _iterations(3)
    assert ws.sent[1:] == ['{"type":"message.created"}', '{"type":"ack","id":"1"}']
