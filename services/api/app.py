"""The api service: REST under ``/api/v1`` (OpenAPI at ``/docs``).

Consumes HTTP requests; produces store writes (entity rows + outbox rows, via domain actions)
and relay wake-ups on pub/sub. Reads come from the store, the history cache and the search
index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from parley.composition import Parley
from parley.runtime.http import health_router, install_error_handlers, install_request_ids
from parley.runtime.ratelimit_http import install_edge_limits
from services.api.routes import auth, conversations, messages, search, workspaces
from services.api.schemas import ERROR_RESPONSES

DESCRIPTION = """Parley's REST API. Authenticate with `POST /api/v1/auth/login` and send the
token as `Authorization: Bearer <token>`. Errors are `{"error": {"code", "message"}}`.
Real-time events come over the WebSocket at `/ws` (see docs/protocol.md)."""


def api_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
    for module in (auth, workspaces, conversations, messages, search):
        router.include_router(module.router)
    return router


def configure(app: FastAPI) -> None:
    install_error_handlers(app)
    install_request_ids(app)
    app.include_router(api_router())


def create_app(parley: Parley) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parley.start("store", "pubsub", "search")
        app.state.deps = parley.deps
        try:
            yield
        finally:
            await parley.close()

    app = FastAPI(title="Parley API", description=DESCRIPTION, version="1.0", lifespan=lifespan)
    configure(app)
    install_edge_limits(app, parley.settings)
    app.include_router(health_router(parley.readiness))
    return app
