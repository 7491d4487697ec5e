"""A burst of events reaches a socket in fewer socket writes than frames (several frames per
write, see parley/runtime/websocket_protocol.py), and the client still sees one well-formed
frame per event, in order, once."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from tests.support.clients import WsClient
from tests.support.server import RunningServer
from tests.support.wait import eventually
from tests.support.world import make_world

BURST = 60


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_burst_is_written_in_fewer_writes_than_frames(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    listener = await WsClient.connect(server.ws_url, bob.token)
    await listener.wait_for(lambda f: f["type"] == "hello")
    frames_before = _counter("parley_ws_events_delivered_total")
    writes_before = _counter("parley_ws_socket_writes_total")

    path = f"/api/v1/conversations/{world.channel_id}/messages"
    # Concurrent sends share a write batch, so their events reach the node together.
    answers = await asyncio.gather(*(alice.http.post(path, json={"text": f"b{n}"}) for n in range(BURST)))
    assert {r.status_code for r in answers} == {201}

    async def created() -> list[dict[str, object]]:
        return [f for f in listener.of_type("message.created") if f["conversation_id"] == world.channel_id]

    received = await eventually(created, lambda got: len(got) >= BURST, timeout=15)
    seqs = [int(str(f["seq"])) for f in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) == BURST, "in order, once"
    texts = sorted(str(f["data"]["message"]["text"]) for f in received)  # type: ignore[index]
    assert texts == sorted(f"b{n}" for n in range(BURST))
    frames = _counter("parley_ws_events_delivered_total") - frames_before
    writes = _counter("parley_ws_socket_writes_total") - writes_before
    assert frames >= BURST
    assert writes < frames, f"{frames:.0f} frames in {writes:.0f} writes: nothing was batched"
    await listener.close()
    await world.close()
