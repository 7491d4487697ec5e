"""The realtime service: WebSocket connections at ``/ws``.

Consumes pub/sub (conversation, user and workspace channels) and client frames; produces
WebSocket frames, and messages through the same domain actions as the api service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from parley.composition import Parley
from parley.runtime.http import health_router, install_error_handlers, install_request_ids
from services.realtime.connection import CLOSE_GOING_AWAY
from services.realtime.endpoint import FAST_LANES, router
from services.realtime.hub import RealtimeHub


async def start_realtime(app: FastAPI, parley: Parley) -> RealtimeHub:
    hub = RealtimeHub(parley.deps)
    app.state.hub = hub
    # Called by the process runner on SIGTERM *before* uvicorn closes sockets on its own (1012),
    # so clients get the reconnect frame and a 1001 close.
    app.state.before_exit = lambda: drain(hub)
    await hub.start()
    return hub


async def drain(hub: RealtimeHub) -> None:
    """Graceful shutdown: tell every client to reconnect (to another node) and resume."""
    if hub.stopped:
        return
    conns = hub.connections
    for conn in conns:
        conn.send_frame({"type": "reconnect", "reason": "server shutting down"})
    # All at once: a stalled socket's 2 s drain (and 1 s close) must not hold up the others.
    await asyncio.gather(*(conn.drain_and_stop() for conn in conns))
    await asyncio.gather(
        *(conn.close(CLOSE_GOING_AWAY, "server shutting down: reconnect and resume") for conn in conns)
    )
    await hub.stop()


def create_app(parley: Parley) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parley.start("store", "pubsub", "search")
        app.state.deps = parley.deps
        hub = await start_realtime(app, parley)
        try:
            yield
        finally:
            await drain(hub)
            await parley.close()

    app = FastAPI(title="Parley realtime", lifespan=lifespan)
    install_error_handlers(app)
    install_request_ids(app)
    app.include_router(health_router(parley.readiness))
    app.include_router(router)
    app.state.websocket_lanes = FAST_LANES
    return app
