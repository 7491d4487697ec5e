"""A consumer-group worker process as a small ASGI app (health, readiness, metrics)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from parley.composition import Parley
from parley.runtime.consumer import EventConsumer
from parley.runtime.http import health_router


def consumer_app(parley: Parley, consumer: EventConsumer, *engines: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parley.start("event_log", *engines)
        runner = parley.consumer_runner(consumer)
        runner.start()
        try:
            yield
        finally:
            await runner.stop()
            await parley.close()

    app = FastAPI(title=f"Parley {consumer.group}", lifespan=lifespan)
    app.include_router(health_router(parley.readiness))
    return app
