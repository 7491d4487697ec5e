"""The relay service: outbox → event log.

Consumes committed outbox rows: announced by the writers on ``relay:wakeup`` (pub/sub), read
from the store's outbox table when an announcement is missing or out of turn, and on a poll as
the safety net; produces records on ``parley.conversation-events.v1`` keyed by conversation
id. See ``parley.runtime.relay.OutboxRelay`` for the ordering and delivery guarantees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from parley.composition import Parley
from parley.runtime.http import health_router
from parley.runtime.relay import OutboxRelay


def build_relay(parley: Parley, *, follow_commits: bool = False) -> OutboxRelay:
    """``follow_commits``: the relay shares its process with every writer of the store (the
    all-in-one), so it may publish from the store's commit feed (see ``OutboxRelay``)."""
    s = parley.settings
    return OutboxRelay(
        parley.store,
        parley.event_log,
        parley.pubsub,
        topic=s.events_topic,
        batch_size=s.relay_batch_size,
        poll_interval=s.relay_poll_interval,
        retention=timedelta(hours=s.outbox_retention_hours),
        feed=parley.store.commit_feed() if follow_commits else None,
        follow_announcements=s.relay_announcements,
    )


def create_app(parley: Parley) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parley.start("store", "event_log", "pubsub")
        relay = build_relay(parley)
        relay.start()
        try:
            yield
        finally:
            await relay.stop()
            await parley.close()

    app = FastAPI(title="Parley relay", lifespan=lifespan)
    app.include_router(health_router(parley.readiness))
    return app
