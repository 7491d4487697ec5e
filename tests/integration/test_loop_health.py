"""Every service reports how late its event loop runs and what each garbage collection cost
(``parley.runtime.loop_health``): where a tail latency stalled, process by process."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import httpx
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from parley.runtime import metrics
from parley.runtime.loop_health import CollectionTimer, LoopLagProbe
from tests.support.process import ServiceProcess


def _at_least(histogram: Histogram, seconds: float, **labels: str) -> float:
    """How many observations of ``histogram`` (with ``labels``) were above ``seconds``."""
    buckets = {
        float(s.labels["le"]): s.value
        for family in histogram.collect()
        for s in family.samples
        if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in labels.items())
    }
    return buckets[float("inf")] - max(count for bound, count in buckets.items() if bound <= seconds)


async def test_a_callback_that_holds_the_loop_shows_as_lag() -> None:
    probe = LoopLagProbe(interval=0.01)
    probe.start()
    try:
        await asyncio.sleep(0.05)
        before = _at_least(metrics.EVENT_LOOP_LAG, 0.15)
        asyncio.get_running_loop().call_soon(time.sleep, 0.25)  # holds the loop a quarter second
        await asyncio.sleep(0.3)
        assert _at_least(metrics.EVENT_LOOP_LAG, 0.15) == before + 1
        await asyncio.sleep(0.1)  # an idle loop runs its timers on time
        assert _at_least(metrics.EVENT_LOOP_LAG, 0.15) == before + 1
    finally:
        await probe.stop()


def test_each_full_collection_is_timed_and_no_young_one() -> None:
    timer = CollectionTimer()
    count = _count(2)
    young = _count(0)
    timer.install()
    try:
        gc.collect()
        gc.collect()
        gc.collect(0)  # the young generation's are not timed (a thousand a second when busy)
    finally:
        timer.uninstall()
    gc.collect()  # no longer timed
    assert _count(2) == count + 2
    assert _count(0) == young == 0


def _count(generation: int) -> float:
    """Collections of ``generation`` timed so far (0 before the first)."""
    samples = [
        s.value
        for f in metrics.GC_PAUSE.collect()
        for s in f.samples
        if s.name.endswith("_count") and s.labels["generation"] == str(generation)
    ]
    return samples[0] if samples else 0.0


async def test_a_running_service_exports_its_loop_lag_and_collections(tmp_path: Path) -> None:
    service = ServiceProcess("services.allinone", {"PARLEY_DATA_DIR": str(tmp_path / "d")}, tmp_path / "log")
    await service.start()
    try:
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(timeout=10) as http:
            page = (await http.get(f"{service.url}/metrics")).text
    finally:
        service.kill()
    counts = {
        (s.name, s.labels.get("generation")): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name.endswith("_count")
    }
    assert counts[("parley_event_loop_lag_seconds_count", None)] >= 5  # every 50 ms
    assert sum(v for (name, _), v in counts.items() if name == "parley_gc_pause_seconds_count") > 0
