"""How late a service's event loop runs, and how much of it the garbage collector takes.

Why: a delivery waits for several event loops in turn (the realtime node that takes the send, the
relay, the fanout, the realtime nodes that push it), and its tail latency is one of them running
late. ``parley_event_loop_lag_seconds`` says which: every 50 ms a timer notes how late it ran —
what any callback ready at that moment waited, whether the loop was busy, a callback ran long,
the collector ran, or the process had no core. ``parley_gc_pause_seconds{generation}`` times the
collections of generations 1 and 2, so a lag can be told apart from the collector's part in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

from parley.runtime import metrics

LAG_INTERVAL = 0.05  # 20 wake-ups a second: ~0.5 ms of CPU per second, a stall of 50+ ms is seen


class LoopLagProbe:
    """A task that observes the running loop's lag every ``interval`` seconds."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            metrics.EVENT_LOOP_LAG.observe(max(0.0, loop.time() - due))


class CollectionTimer:
    """Times the older generations' garbage collections (``gc.callbacks``).

    Not generation 0: a busy realtime node runs a thousand of those a second, each over at most
    ~700 young objects, and timing one cost ~20 µs (a probe here) — a few percent of a core for
    pauses too short to matter."""

    def __init__(self) -> None:
        self._started = 0.0
        self._by_generation = {g: metrics.GC_PAUSE.labels(str(g)) for g in (1, 2)}

    def install(self) -> None:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        histogram = self._by_generation.get(info["generation"])
        if histogram is None:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            histogram.observe(time.perf_counter() - self._started)
