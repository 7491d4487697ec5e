"""bench.dispatch_cost drives the real ClientConnection/WriteRound path: every event reaches every
socket once (it raises otherwise), so its figure is the cost of complete deliveries."""

from __future__ import annotations

from bench.dispatch_cost import measure


async def test_every_event_reaches_every_socket_and_a_cost_is_measured() -> None:
    assert await measure(sockets=50, events=20) > 0
