"""Several relays, one publisher: the lease keeps one active and hands over when it dies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parley.composition import Parley
from parley.runtime.relay import OutboxRelay
from parley.settings import Settings
from tests.support.engines import engine_overrides


def _relay(parley: Parley) -> OutboxRelay:
    s = parley.settings
    return OutboxRelay(
        parley.store, parley.event_log, parley.pubsub, topic=s.events_topic, poll_interval=0.05
    )


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_only_one_relay_publishes_and_a_standby_takes_over(tmp_path: Path) -> None:
    with engine_overrides() as overrides:
        parleys = [Parley(Settings(data_dir=tmp_path / str(i), **overrides), "relay") for i in range(2)]
        for p in parleys:
            await p.start("store", "event_log", "pubsub")
        relays = [_relay(p) for p in parleys]
        try:
            for r in relays:
                r.start()
            await _wait(lambda: any(r.active for r in relays))
            await asyncio.sleep(1.5)
            assert [r.active for r in relays].count(True) == 1, "exactly one active relay"
            active = next(r for r in relays if r.active)
            standby = next(r for r in relays if not r.active)
            await active.stop()  # releases the lease, as the server does when a holder dies
            await _wait(lambda: standby.active, timeout=5)
        finally:
            for r in relays:
                await r.stop()
            for p in parleys:
                await p.close()
