"""``python -m bench.dispatch_cost``: the realtime node's own Python work per delivery.

The fan-out scenario measures a whole node (uvicorn, the kernel's loopback TCP, the harness
reading) on a shared 2-core VM whose speed drifts by tens of percent within an hour. This one
isolates what Parley's code adds per (event, socket): ``ClientConnection.offer`` (seq order,
duplicates), the send queue and the node's ``WriteRound``, with the socket write itself replaced
by a counter. It runs in a second and is stable to a few percent, so it can compare variants of
that code where the end-to-end figure cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from parley.domain.models import User
from parley.runtime.websocket_protocol import BATCH_SEND_EXTENSION
from services.realtime.connection import ClientConnection, Gap, WriteRound

CONVERSATION = 7
TEXT = '{"type":"message.created","conversation_id":"7","seq":1,"data":{}}'


class CountingSocket:
    """What ``ClientConnection`` needs of a Starlette WebSocket on uvicorn's fast path."""

    def __init__(self) -> None:
        self.frames = 0
        self.scope: dict[str, Any] = {"extensions": {BATCH_SEND_EXTENSION: {"write_now": self.write_now}}}

    def write_now(self, texts: list[str]) -> bool:
        self.frames += len(texts)
        return True


async def _no_gap(_user: User, _conversation: int, _after: int) -> Gap:
    return Gap([], resync_to=None)


async def measure(sockets: int, events: int) -> float:
    """CPU µs per delivery for ``events`` events to ``sockets`` sockets of one conversation."""
    user = User(id=1, username="bench", display_name="bench", created_at=datetime.now(UTC))
    write_round = WriteRound()
    counting = [CountingSocket() for _ in range(sockets)]
    conns = [
        ClientConnection(
            socket,  # type: ignore[arg-type]
            user,
            queue_size=1_000,
            fill_gap=_no_gap,
            write_round=write_round,
        )
        for socket in counting
    ]
    for conn in conns:
        conn.send_hello({"type": "hello"})
        conn.follow(CONVERSATION, 0)
    await asyncio.sleep(0)
    started = time.process_time()
    for seq in range(1, events + 1):
        for conn in conns:
            conn.offer(CONVERSATION, seq, TEXT)
        await asyncio.sleep(0)  # the loop iteration ends: the write round runs
    await asyncio.sleep(0)
    elapsed = time.process_time() - started
    delivered = sum(socket.frames for socket in counting) - sockets  # minus the hello frames
    if delivered != sockets * events:
        raise RuntimeError(f"delivered {delivered} of {sockets * events}")
    return elapsed / delivered * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [asyncio.run(measure(args.sockets, args.events)) for _ in range(args.runs)]
    for n, us in enumerate(results, 1):
        print(f"run {n}: {us:.2f} µs of CPU per delivery ({args.sockets:,} sockets × {args.events:,} events)")
    print(f"median: {sorted(results)[len(results) // 2]:.2f} µs per delivery")


if __name__ == "__main__":
    main()
