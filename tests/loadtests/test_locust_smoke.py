"""The Locust load test works end to end: seeded users log in, hold sockets, send, and every
user's socket reports other users' messages as ``WS deliver`` with their end-to-end latency.

Runs Locust as a child process (it monkey-patches the standard library with gevent, which must
not happen inside pytest's asyncio loop) against an embedded all-in-one served by this test's
event loop, for a few seconds with a handful of users.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loadtests import summary
from loadtests.seed import seed
from tests.support.server import RunningServer, start_server

REPO = Path(__file__).resolve().parents[2]
USERS = 5
RUN_SECONDS = 10
# Looked up, not imported: importing locust would monkey-patch this very process with gevent.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None or importlib.util.find_spec("websocket") is None,
    reason="Locust and websocket-client are not installed (pinned in loadtests/requirements.txt)",
)


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path / "data")
    try:
        yield running
    finally:
        await running.stop()


@pytest.mark.slow
async def test_locust_users_record_end_to_end_deliveries_without_failures(
    embedded: RunningServer, tmp_path: Path
) -> None:
    manifest, _ = await seed(embedded.url, USERS, workspaces=1, channels=3, profile_name="smoke")
    manifest_file = tmp_path / "manifest.json"
    manifest.save(manifest_file)
    report = tmp_path / "report"
    report.mkdir()
    locust = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO / "loadtests" / "locustfile.py"),
        "--headless",
        "--host",
        embedded.url,
        "--users",
        str(USERS),
        "--spawn-rate",
        str(USERS),
        "--run-time",
        f"{RUN_SECONDS}s",
        "--stop-timeout",
        "3",
        "--parley-profile",
        "smoke",
        "--parley-manifest",
        str(manifest_file),
        "--csv",
        str(report / summary.CSV_PREFIX),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    # The server runs in this event loop, so wait for Locust without blocking it.
    output, _ = await asyncio.wait_for(locust.communicate(), timeout=RUN_SECONDS + 30)
    log = output.decode(errors="replace")
    # Exit 2 means an exception escaped a greenlet: its traceback is near the start of the log.
    assert locust.returncode == 0, log[:6000]

    stats = summary.read_stats(report / f"{summary.CSV_PREFIX}_stats.csv")
    deliver = stats.get((summary.WS, summary.DELIVER))
    sends = stats.get((summary.WS, summary.SEND_ACK))
    assert sends is not None and sends.requests > 0, log[-3000:]
    assert deliver is not None and deliver.requests > 0, log[-3000:]
    failures = summary.read_failures(report / f"{summary.CSV_PREFIX}_failures.csv")
    assert deliver.failures == 0 and sends.failures == 0, failures
    assert stats[("", "Aggregated")].failures == 0, failures
    # Every delivery is another user's message: with everyone in one channel, sends fan out.
    assert deliver.requests >= sends.requests - sends.failures
    assert 0 <= deliver.median < 5_000
