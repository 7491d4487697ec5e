"""With ``PARLEY_WS_COMPRESSION`` on, permessage-deflate is negotiated and frames flow both ways
compressed: the send path and the fan-out path (which skips the encode-once cache then)."""

from __future__ import annotations

from pathlib import Path

from tests.support.clients import WsClient
from tests.support.server import start_server
from tests.support.world import make_world


async def test_compressed_sockets_send_and_receive(tmp_path: Path) -> None:
    server = await start_server(tmp_path, ws_compression=True)
    try:
        world = await make_world(server.url)
        alice, bob = world.users
        sender = await WsClient.connect(server.ws_url, alice.token, compression="deflate")
        listener = await WsClient.connect(server.ws_url, bob.token, compression="deflate")
        for client in (sender, listener):
            await client.wait_for(lambda f: f["type"] == "hello")
            assert client.ws.protocol.extensions, "permessage-deflate was not negotiated"
        for n in range(3):
            await sender.send(
                {
                    "type": "send",
                    "id": n,
                    "conversation_id": world.channel_id,
                    "text": f"squeezed {n} " * 50,
                    "client_msg_id": f"z{n}",
                }
            )
            ack = await sender.wait_for(lambda f, n=n: f["type"] == "ack" and f["id"] == n)
            assert ack["message"]["text"] == f"squeezed {n} " * 50
        await listener.wait_for(
            lambda f: f["type"] == "message.created" and f["data"]["message"]["client_msg_id"] == "z2"
        )
        created = [f for f in listener.of_type("message.created") if f["conversation_id"] == world.channel_id]
        assert [f["data"]["message"]["client_msg_id"] for f in created] == ["z0", "z1", "z2"]
        await sender.close()
        await listener.close()
        await world.close()
    finally:
        await server.stop()
