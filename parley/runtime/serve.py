"""Running a service process: ``--help``, settings, logging, uvicorn, signals.

Every service is an ASGI app (workers too: they serve ``/healthz``, ``/readyz``, ``/metrics``),
so one runner serves them all; uvicorn turns SIGTERM into a lifespan shutdown, where each
service drains (sockets told to reconnect, batches committed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from parley.runtime.logging import configure_logging
from parley.runtime.loop_health import CollectionTimer, LoopLagProbe
from parley.runtime.websocket_protocol import BatchingWebSocketProtocol, WebSocketFastLane
from parley.settings import Settings, get_settings


def run(service: str, description: str, build: Callable[[Settings], FastAPI]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service}",
        description=description,
        epilog="Settings come from PARLEY_* environment variables (see docs/operations.md).",
    )
    parser.add_argument("--host", help="listen address (PARLEY_HOST)")
    parser.add_argument("--port", type=int, help="listen port (PARLEY_PORT)")
    args = parser.parse_args()
    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    configure_logging(service, settings.log_level, settings.log_format)
    lower_priority(settings.nice)
    app = build(settings)
    print(f"parley {service}: http://{host}:{port}/  (data: {settings.data_dir.resolve()})", flush=True)
    config = server_config(app, settings, host, port)
    DrainingServer(config, app).run()


def lower_priority(increment: int) -> None:
    """Yield the CPU to the processes users wait on (``PARLEY_NICE``): on a shared machine a
    background consumer's burst (the indexer's bulk writes) otherwise delays every hop of a
    delivery that waits for a core behind it (measured: docs/benchmarks.md, session 9)."""
    if increment:
        niceness = os.nice(increment)
        logging.getLogger(__name__).info("running at nice %d (PARLEY_NICE)", niceness)


def server_config(app: FastAPI, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """How every Parley process serves (the test server uses it too)."""
    lanes = getattr(app.state, "websocket_lanes", None)
    return uvicorn.Config(
        WebSocketFastLane(app, lanes) if lanes else app,
        host=host,
        port=port,
        log_config=None,
        ws=BatchingWebSocketProtocol,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=10,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT, run the app's ``state.before_exit`` (e.g. realtime telling
    clients to reconnect) and only then let uvicorn shut down; a second signal exits at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._draining = False
        self._lag_probe = LoopLagProbe()
        self._collections = CollectionTimer()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built so far (modules, classes, the app, pools) lives as long as the
        # process: out of the collector's sight, a full collection walks only what came after
        # — measured under load: full collections of 100-180 ms, each a stall of every socket.
        gc.freeze()
        self._lag_probe.start()
        self._collections.install()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._lag_probe.stop()
        self._collections.uninstall()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        before_exit = getattr(self._app.state, "before_exit", None)
        if self._draining or before_exit is None:
            super().handle_exit(sig, frame)
            return
        self._draining = True

        async def drain_then_exit() -> None:
            try:
                await asyncio.wait_for(before_exit(), timeout=10)
            except Exception:
                logging.getLogger(__name__).warning("drain before exit failed", exc_info=True)
            finally:
                uvicorn.Server.handle_exit(self, sig, frame)

        # Signal handlers may run between any two bytecodes: hand the work to the loop.
        loop = asyncio.get_running_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_exit()))
