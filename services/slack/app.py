"""The slack service: Slack's Web API at ``/api/<method>`` and Socket Mode at
``/slack/socket``, plus ``/slack/tokens`` and ``/slack/bots`` to get tokens.

Consumes HTTP requests, Socket Mode sockets and pub/sub (``conv:<id>``, ``user:<bot id>``);
produces store writes through the same domain actions as the api service (so everything posted
here is stored, streamed, indexed and cached like any other message) and Socket Mode envelopes.
``slack_router()`` is what the all-in-one includes; ``create_app`` runs it as its own process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from parley.composition import Parley
from parley.runtime.http import health_router, install_error_handlers, install_request_ids
from services.slack import socket_mode, tokens, webapi


def slack_router() -> APIRouter:
    """Every route of the facade; its lifespan runs the Socket Mode hub (inside the app's own
    lifespan, which must set ``app.state.deps`` first)."""
    router = APIRouter(lifespan=socket_mode.socket_mode_lifespan)
    router.include_router(webapi.router)
    router.include_router(socket_mode.router)
    router.include_router(tokens.router)
    return router


def create_app(parley: Parley) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parley.start("store", "pubsub", "search")
        app.state.deps = parley.deps
        try:
            yield
        finally:
            await parley.close()

    app = FastAPI(title="Parley Slack-compatible API", lifespan=lifespan)
    install_error_handlers(app)
    install_request_ids(app)
    app.include_router(health_router(parley.readiness))
    app.include_router(slack_router())
    return app
