"""Shared fixtures.

``server`` is a real Parley all-in-one on a free loopback port (real uvicorn, real sockets),
run once per mode: ``embedded`` (SQLite, in-process log, memory pub/sub, FTS5) and ``engines``
(MariaDB/MySQL, Kafka, Redis, Elasticsearch from ``PARLEY_TEST_*`` URLs). The same tests, the
same assertions, in both modes.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# argon2 at its shipped cost is ~0.2 s of CPU per sign-up or login, and the suite does thousands
# (half its CPU time on a 2-core box). Tests run at the cheapest cost, as Synapse's test config
# sets bcrypt_rounds; the shipped default and prod's minimum have their own tests
# (tests/security/test_abuse_limits.py). Servers the tests start as processes inherit this.
os.environ.setdefault("PARLEY_PASSWORD_HASH_TIME_COST", "1")
os.environ.setdefault("PARLEY_PASSWORD_HASH_MEMORY_KIB", "64")

from tests.support.engines import engine_overrides
from tests.support.server import RunningServer, start_server, wait_until_flowing


@pytest.fixture(params=["embedded", "engines"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningServer]:
    if request.param == "embedded":
        running = await start_server(tmp_path / "data")
        try:
            yield running
        finally:
            await running.stop()
        return
    with engine_overrides() as overrides:
        running = await start_server(tmp_path / "data", **overrides)
        try:
            await wait_until_flowing(running)
            yield running
        finally:
            await running.stop()
            await _drop_search_index(running)


async def _drop_search_index(running: RunningServer) -> None:
    search = running.parley.search
    drop = getattr(search, "drop", None)
    if drop is not None:
        await search.start()
        try:
            await drop()
        finally:
            await search.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    from tests.engines import ENGINE_VARS, engines_required

    lines = []
    for engine, var in ENGINE_VARS.items():
        url = os.environ.get(var.replace("PARLEY_", "PARLEY_TEST_"))
        lines.append(f"  {engine:<13} {'→ ' + _redact(url) if url else 'not configured (embedded only)'}")
    required = "required (a missing engine fails)" if engines_required() else "optional (missing → skip)"
    return [f"parley engines: {required}", *lines]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.engines import ENGINE_VARS

    used = [e for e, var in ENGINE_VARS.items() if os.environ.get(var.replace("PARLEY_", "PARLEY_TEST_"))]
    terminalreporter.write_line(
        "parley engines used: embedded (SQLite, in-process log, memory pub/sub, FTS5)"
        + (f" + real {', '.join(used)}" if used else " only")
    )


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
