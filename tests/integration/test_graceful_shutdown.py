"""SIGTERM: clients are told to reconnect (frame + close 1001) before the process exits, and
what they resume finds everything."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.clients import WsClient
from tests.support.process import ServiceProcess
from tests.support.world import make_world


async def test_sigterm_tells_clients_to_reconnect_then_exits(tmp_path: Path) -> None:
    env = {"PARLEY_DATA_DIR": str(tmp_path / "d"), "PARLEY_LOG_LEVEL": "INFO"}
    proc = ServiceProcess("services.allinone", env, tmp_path / "log")
    await proc.start()
    try:
        world = await make_world(proc.url)
        client = await WsClient.connect(proc.ws_url, world.users[0].token)
        await client.wait_for(lambda f: f["type"] == "hello")
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        frame = await client.wait_for(lambda f: f["type"] == "reconnect", timeout=10)
        assert frame["reason"]
        code, _ = await client.wait_closed(timeout=10)
        assert code == 1001
        # uvicorn re-raises the captured SIGTERM once its shutdown is complete.
        assert proc.proc.wait(20) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "log").read_text()
        await world.close()
    finally:
        proc.kill()
