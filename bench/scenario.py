"""What every scenario shares: its options, its figures, progress lines, the server it drives."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import load_average
from bench.server import Deployment, EngineUrls, Mode, ParleyServer

# Sends are not what these benchmarks limit: lift the per-user token bucket out of the way.
UNLIMITED_RATE = {"PARLEY_RATE_LIMIT_PER_SECOND": "1000000", "PARLEY_RATE_LIMIT_BURST": "1000000"}


@dataclass(frozen=True)
class Options:
    """Everything a run may be told on the command line (see ``python -m bench.run --help``)."""

    urls: EngineUrls = field(default_factory=EngineUrls)
    deployment: Deployment = field(default_factory=Deployment)  # --url, cluster options
    compression: bool = False
    # send-deliver
    senders: int = 50
    listeners: int = 10  # per conversation
    rooms: int = 1
    window: int = 4
    warmup: float = 2.0
    duration: float = 10.0
    load_fraction: float = 0.5
    paced_rate: float | None = None  # phase B's fixed rate, if not load_fraction × saturation
    load_curve: tuple[float, ...] = ()  # after phase B, a paced phase at each fraction of saturation
    profile_dir: Path | None = None
    # history
    history_messages: int = 10_000
    history_requests: int = 400
    history_limit: int = 20
    # indexer
    index_messages: int = 5_000
    # fanout-1000 / idle-connections
    fanout_sockets: int = 1_000
    fanout_messages: int = 400
    fanout_window: int = 4
    idle_counts: tuple[int, ...] = (1_000, 10_000)
    # history-1m (seeds once per mode, keeps the data for ``runs`` runs, then removes it)
    runs: int = 3
    bulk_messages: int = 1_000_000
    bulk_channels: int = 100
    bulk_history_requests: int = 300
    bulk_searches: int = 100


@dataclass(frozen=True)
class Figure:
    """One column of a scenario's table: the key in a run's result and its label with unit."""

    key: str
    label: str


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    figures: list[Figure]
    run_once: Callable[[Options, Mode], Awaitable[dict[str, float]]]
    modes: tuple[Mode, ...] = ("embedded", "engines")
    # A second table from the runs' figures, printed under the first (None: nothing to add).
    extra_table: Callable[[list[dict[str, float]]], str | None] | None = None


_t0 = time.monotonic()


def progress(message: str) -> None:
    """A progress line on stdout, with seconds since the harness started."""
    print(f"[{time.monotonic() - _t0:7.1f}s] {message}", flush=True)


@asynccontextmanager
async def running_server(
    options: Options, mode: Mode, settings: dict[str, str] | None = None, module: str = "services.allinone"
) -> AsyncIterator[ParleyServer]:
    """A fresh server for one run; always stopped (and its data removed) afterwards."""
    server = ParleyServer(
        mode,
        settings={**UNLIMITED_RATE, **(settings or {})},
        urls=options.urls,
        module=module,
        repo=options.deployment.server_repo,
    )
    progress(f"starting {module} ({mode}) on port {server.port}; load average {load_average()}")
    await server.start()
    try:
        yield server
    except BaseException:
        progress(f"run failed; server log tail:\n{server.log_tail(1500)}")
        raise
    finally:
        await server.stop()


def deadline_after(seconds: float) -> int:
    """A ``time.perf_counter_ns`` deadline ``seconds`` from now."""
    return time.perf_counter_ns() + int(seconds * 1e9)
