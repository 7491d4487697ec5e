"""Work that follows the hot path at a distance: done when due, at most once per interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_when_due(
    due: asyncio.Event, work: Callable[[], Awaitable[None]], *, interval: float, what: str
) -> None:
    """Run ``work`` each time ``due`` is set, then rest ``interval``: whatever became due
    meanwhile is done by the next run, together (the relay's marks, the consumers' offset
    commits). A failed run is logged and due again after the rest. Runs until cancelled."""
    while True:
        await due.wait()
        due.clear()
        try:
            await work()
        except Exception as error:  # not CancelledError (a BaseException): that ends the loop
            log.warning("%s failed (%s); retrying", what, error)  # what was due stays due
            due.set()
        await asyncio.sleep(interval)
