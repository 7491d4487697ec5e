"""SIGTERM: clients are told to reconnect (frame + close 1001) before the process exits, and
what they resume finds everything; the group commit answers every send it still holds."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from parley.composition import Parley
from parley.domain.actions import conversations, workspaces
from parley.domain.errors import Unavailable
from parley.domain.message_writer import SendRequest
from parley.domain.models import User
from parley.settings import Settings
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


async def test_closing_the_message_writer_answers_every_send_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parley = Parley(Settings(data_dir=tmp_path), "tool")
    await parley.start("store")
    deps = parley.deps
    alice = User(id=deps.ids.next_id(), username="alice", display_name="Alice", created_at=datetime.now(UTC))
    async with parley.store.write() as tx:
        await tx.create_user_txn(alice, "not a real hash")
    workspace = await workspaces.create_workspace(deps, alice, "W", "shutdown")
    channel = await conversations.create_channel(deps, alice, workspace.id, "general")
    writer = parley.message_writer
    writing = asyncio.Event()

    async def a_write_that_never_ends(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(writer, "_write_batch", a_write_that_never_ends)

    def send(n: int) -> asyncio.Task[Any]:
        request = SendRequest(
            message_id=deps.ids.next_id(),
            user_id=alice.id,
            conversation_id=channel.id,
            text=f"m{n}",
            client_msg_id=f"c{n}",
            thread_root_id=None,
            created_at=datetime.now(UTC),
        )
        return asyncio.create_task(writer.submit(request))

    in_flight = send(1)
    await writing.wait()
    queued = send(2)  # waits behind the batch in flight
    await asyncio.sleep(0.05)
    await writer.close()
    async with asyncio.timeout(2):  # every sender gets an answer, none waits forever
        results = await asyncio.gather(in_flight, queued, return_exceptions=True)
    assert [type(r) for r in results] == [Unavailable, Unavailable]
    assert [r.code for r in results if isinstance(r, Unavailable)] == ["shutting_down", "shutting_down"]
    await parley.close()
