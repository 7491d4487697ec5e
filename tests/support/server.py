"""Run the all-in-one app under a real uvicorn server inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from parley.composition import Parley
from parley.runtime.serve import server_config
from parley.settings import Settings
from services.allinone.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    ws_url: str
    parley: Parley
    app: Any
    server: uvicorn.Server
    task: asyncio.Task[None]
    data_dir: Path

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, timeout=20)


async def start_server(data_dir: Path, **overrides: Any) -> RunningServer:
    settings = Settings(data_dir=data_dir, **overrides)
    parley = Parley(settings, "allinone")
    app = create_app(parley)
    port = free_port()
    config = server_config(app, settings, "127.0.0.1", port)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("server did not start")
    return RunningServer(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", parley, app, server, task, data_dir
    )


async def wait_until_flowing(running: RunningServer, timeout: float = 30.0) -> None:
    """Wait until every consumer group has joined and been given partitions (Kafka assigns
    them a moment after start): until then an event would sit in the log, not be lost."""
    runners = running.app.state.runners
    deadline = asyncio.get_running_loop().time() + timeout
    for runner in runners:
        while not runner.assigned():
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("consumers did not get partitions in time")
            await asyncio.sleep(0.05)
