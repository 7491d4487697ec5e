"""The all-in-one process: the embedded default (every service in one event loop).

Runs api + realtime + relay + fanout + indexer + cache consumers + the web page, with whatever
adapters the settings choose (embedded by default). Every hop is the same code as in the
multi-process topology: the relay still publishes to the log, consumers still poll it, the
fanout still goes through pub/sub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from parley.composition import Parley
from parley.runtime.consumer import EventConsumer
from parley.runtime.http import health_router
from parley.runtime.ratelimit_http import install_edge_limits
from services.api.app import DESCRIPTION
from services.api.app import configure as configure_api
from services.cache.consumer import HistoryCacheConsumer
from services.fanout.consumer import FanoutConsumer
from services.indexer.consumer import IndexerConsumer
from services.realtime.app import drain, start_realtime
from services.realtime.endpoint import FAST_LANES
from services.realtime.endpoint import router as realtime_router
from services.relay.app import build_relay
from services.slack.app import slack_router

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def create_app(parley: Parley) -> FastAPI:
    settings = parley.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parley.start("store", "event_log", "pubsub", "search")
        app.state.deps = parley.deps
        consumers: list[EventConsumer] = [
            FanoutConsumer(parley.pubsub),
            IndexerConsumer(parley.search, linger=settings.indexer_linger_ms / 1000),
            HistoryCacheConsumer(parley.history_cache, keep=settings.history_cache_size),
        ]
        runners = [parley.consumer_runner(c) for c in consumers]
        for runner in runners:
            runner.start()
        # Every writer of the store lives in this process: the relay follows its commits.
        relay = build_relay(parley, follow_commits=True)
        relay.start()
        parley.local_relay = relay.wake_if_active
        hub = await start_realtime(app, parley)
        app.state.runners = runners
        app.state.relay = relay
        try:
            yield
        finally:
            await drain(hub)
            await relay.stop()
            for runner in runners:
                await runner.stop()
            await parley.close()

    app = FastAPI(title="Parley", description=DESCRIPTION, version="1.0", lifespan=lifespan)
    configure_api(app)
    install_edge_limits(app, parley.settings)
    app.include_router(realtime_router)
    app.state.websocket_lanes = FAST_LANES
    app.include_router(slack_router())
    app.include_router(health_router(parley.readiness))
    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")

    return app
