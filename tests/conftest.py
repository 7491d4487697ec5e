"""Shared fixtures: a real Parley all-in-one server on a free loopback port (real sockets,
real uvicorn), and small clients for its REST API and WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer, start_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path / "data")
    try:
        yield running
    finally:
        await running.stop()
